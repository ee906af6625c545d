import { resolve } from 'node:path';
import { defineConfig } from 'vite';
import { wgslMinify } from './scripts/wgsl-minify.mjs';

// Library build: dist/index.js (browser and Node), dist/reference.js, dist/node.js; WGSL inlined
// without comments and indentation (the tests and the bench page use vitest.config.ts and
// bench/vite.config.mjs, which read the shaders as they are).
export default defineConfig({
  plugins: [wgslMinify()],
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
