import { playwright } from '@vitest/browser-playwright';
import { defineConfig } from 'vitest/config';
import { chromiumArgs, findChromium } from './scripts/chromium.mjs';

// One set of specs, two projects: Node on Dawn (the `webgpu` package) and headless Chromium.
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.browser.test.ts'],
          setupFiles: ['test/setup.node.ts'],
          environment: 'node',
        },
      },
      {
        extends: true,
        // Pre-bundled up front: discovered during a run, Vite would reload the page mid-spec.
        // (onnxruntime-web still finds its .wasm: the interop spec sets ort.env.wasm.wasmPaths.)
        optimizeDeps: {
          include: ['onnxruntime-web/webgpu', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgpu'],
        },
        test: {
          name: 'browser',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.node.test.ts'],
          browser: {
            enabled: true,
            headless: true,
            screenshotFailures: false,
            provider: playwright({
              launchOptions: { executablePath: findChromium(), args: chromiumArgs() },
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
