import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// Library build: dist/index.js (browser and Node), dist/reference.js, dist/node.js; WGSL inlined.
export default defineConfig({
  build: {
    target: 'es2022',
    sourcemap: true,
    lib: {
      entry: {
        index: resolve(import.meta.dirname, 'src/index.ts'),
        reference: resolve(import.meta.dirname, 'src/reference/index.ts'),
        node: resolve(import.meta.dirname, 'src/node.ts'),
      },
      formats: ['es'],
    },
    rolldownOptions: {
      external: ['webgpu', /^node:/],
    },
  },
});
