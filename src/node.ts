// Node entry: a context on Dawn (the `webgpu` package), with a software fallback for machines
// without a GPU driver.
import { type Context, type ContextOptions, createContext } from './context';

/** Chromium's SwiftShader Vulkan driver, as Debian's `chromium` package installs it. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Environment variables with which the user chose the Vulkan drivers themselves. */
const VULKAN_DRIVER_VARIABLES = [
  'VK_ICD_FILENAMES',
  'VK_DRIVER_FILES',
  'VK_ADD_DRIVER_FILES',
  'VK_LOADER_DRIVERS_SELECT',
  'VK_LOADER_DRIVERS_DISABLE',
];

/**
 * The `GPU` object of the `webgpu` package (Dawn). Where Dawn finds no adapter (no GPU driver)
 * and Chromium's SwiftShader is installed, uses SwiftShader so that code runs (slowly) anywhere.
 *
 * The probe is quiet: on Linux it hides `XDG_RUNTIME_DIR` warnings of the Wayland client (by
 * pointing the variable at an empty temporary directory while Dawn looks for adapters, then
 * restoring it), and on a Linux machine without GPU device nodes (`/dev/dri/renderD*`,
 * `/dev/nvidia*`, `/dev/dxg`, `/dev/kfd`) it goes straight to SwiftShader rather than letting
 * Dawn print why it rejected the drivers it found. Set `VK_ICD_FILENAMES` (or another Vulkan
 * loader driver variable) to choose the driver yourself; then nothing is probed or replaced.
 * On SwiftShader (the fallback, or `VK_ICD_FILENAMES` naming it) Dawn also gets a toggle that
 * makes kernels with large workgroup tiles compile several times faster (SWIFTSHADER_TOGGLE).
 *
 * `flags` go to Dawn's `create` (the `webgpu` package), e.g.
 * `['enable-dawn-features=allow_unsafe_apis']`, without which Dawn's adapters do not list
 * experimental features such as `chromium-experimental-subgroup-matrix` (the `'matrix'` kernel
 * form's builtins).
 */
export async function nodeGpu(flags: readonly string[] = []): Promise<GPU> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const fs = await import('node:fs');
  const userChoseDriver = VULKAN_DRIVER_VARIABLES.some((name) => process.env[name]);
  const fallback = process.platform === 'linux' && !userChoseDriver && fs.existsSync(SWIFTSHADER_ICD);
  return quietly(async () => {
    if (fallback && !hasGpuDeviceNode(fs)) return swiftShader(create, flags);
    // a driver the user chose may be SwiftShader too
    const gpu = create(
      process.env.VK_ICD_FILENAMES === SWIFTSHADER_ICD ? swiftShaderFlags(flags) : [...flags],
    );
    if ((await gpu.requestAdapter()) || !fallback) return gpu;
    return swiftShader(create, flags);
  });
}

/** {@link createContext} on Node's WebGPU (see {@link nodeGpu}). */
export async function createNodeContext(options: Omit<ContextOptions, 'gpu'> = {}): Promise<Context> {
  return createContext({ ...options, gpu: await nodeGpu() });
}

type Fs = typeof import('node:fs');

/**
 * Dawn's toggle that SwiftShader wants off: with it, Dawn leaves the zero-initialisation of
 * workgroup memory to the driver's Vulkan extension, and SwiftShader compiles that as one store
 * per element (seconds per pipeline for kernels with large shared tiles, 5-10x the rest of the
 * compile); without it, the WGSL compiler writes the same zeros as a loop. Same semantics.
 * scripts/chromium.mjs passes the same toggle to the tests' and the benchmark's Chromium.
 */
const SWIFTSHADER_TOGGLE = 'use_vulkan_zero_initialize_workgroup_memory_extension';

/**
 * @internal `flags` with SWIFTSHADER_TOGGLE added to their `disable-dawn-features` list (made if
 * absent; unchanged if it lists the toggle already).
 */
export function swiftShaderFlags(flags: readonly string[]): string[] {
  const key = 'disable-dawn-features=';
  const at = flags.findIndex((f) => f.startsWith(key));
  if (at < 0) return [...flags, key + SWIFTSHADER_TOGGLE];
  const listed = flags[at].slice(key.length).split(',').filter(Boolean);
  if (listed.includes(SWIFTSHADER_TOGGLE)) return [...flags];
  return flags.map((f, i) => (i === at ? key + [...listed, SWIFTSHADER_TOGGLE].join(',') : f));
}

async function swiftShader(create: (flags: string[]) => GPU, flags: readonly string[]): Promise<GPU> {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  const gpu = create(swiftShaderFlags(flags));
  await gpu.requestAdapter(); // Dawn looks for adapters once per instance: do it while quiet.
  return gpu;
}

/** Whether a Linux machine exposes a GPU to user space (DRM render node, NVIDIA, WSL, ROCm). */
function hasGpuDeviceNode(fs: Fs): boolean {
  if (process.platform !== 'linux') return true;
  const names = (dir: string) => {
    try {
      return fs.readdirSync(dir);
    } catch {
      return [];
    }
  };
  return (
    names('/dev/dri').some((n) => n.startsWith('renderD')) ||
    names('/dev').some((n) => /^nvidia\d+$/.test(n) || n === 'dxg' || n === 'kfd')
  );
}

/**
 * Runs `probe` with `XDG_RUNTIME_DIR` set to an empty temporary directory where it is unset
 * (Linux only), then restores the environment: the Wayland client that Dawn's Vulkan loader
 * initialises otherwise prints "XDG_RUNTIME_DIR is invalid or not set" for every driver.
 */
async function quietly<T>(probe: () => Promise<T>): Promise<T> {
  if (process.platform !== 'linux' || process.env.XDG_RUNTIME_DIR) return probe();
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'webgpu-attention-'));
  process.env.XDG_RUNTIME_DIR = dir;
  try {
    return await probe();
  } finally {
    delete process.env.XDG_RUNTIME_DIR;
    rmSync(dir, { recursive: true, force: true });
  }
}
