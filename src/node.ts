// Node entry: a context on Dawn (the `webgpu` package), with a software fallback for machines
// without a GPU driver.
import { type Context, type ContextOptions, createContext } from './context';

/** Chromium's SwiftShader Vulkan driver, as Debian's `chromium` package installs it. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/**
 * The `GPU` object of the `webgpu` package. When Dawn finds no adapter (no GPU driver) and
 * SwiftShader is installed, retries on SwiftShader so that code runs (slowly) anywhere.
 */
export async function nodeGpu(): Promise<GPU> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  if (await gpu.requestAdapter()) return gpu;
  const { existsSync } = await import('node:fs');
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    return create([]);
  }
  return gpu;
}

/** {@link createContext} on Node's WebGPU (see {@link nodeGpu}). */
export async function createNodeContext(options: Omit<ContextOptions, 'gpu'> = {}): Promise<Context> {
  return createContext({ ...options, gpu: await nodeGpu() });
}
