// Where the system Chromium is, and the flags that give it WebGPU on SwiftShader when there is no
// GPU. Shared by the browser tests and the benchmark runner.
import { existsSync } from 'node:fs';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** Path of a Chromium binary: $CHROMIUM_PATH, the system's, or undefined. */
export function findChromium() {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  return CANDIDATES.find((p) => existsSync(p));
}

/** WebGPU on: the real GPU when there is one, else SwiftShader (set WEBGPU_ADAPTER=gpu to skip it). */
export function chromiumArgs() {
  const args = [
    '--no-sandbox',
    '--enable-unsafe-webgpu',
    '--enable-features=Vulkan',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ];
  if (process.env.WEBGPU_ADAPTER !== 'gpu') {
    args.push(
      '--use-angle=swiftshader',
      '--use-webgpu-adapter=swiftshader',
      '--enable-unsafe-swiftshader',
      // Dawn zero-initialises workgroup memory itself (a loop) rather than through SwiftShader's
      // Vulkan extension, which compiles one store per element: kernels with large shared tiles
      // compile several times faster (src/node.ts sets the same toggle for Node's SwiftShader)
      '--disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
    );
  }
  return args;
}
