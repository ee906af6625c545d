// Vite dev server for the benchmark page (bench/index.html), used by `npm run bench:page` and by
// the headless runner (bench/run.mjs). The root is the repository so that the page imports the
// library's sources and onnxruntime-web's .wasm files come from node_modules (no network).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root,
  clearScreen: false,
  server: {
    host: '127.0.0.1',
    fs: { allow: [root] },
  },
  // onnxruntime-web finds its .wasm next to its own module; pre-bundling would move the module.
  // The page's other dependencies are pre-bundled up front: discovering them at run time would
  // make Vite reload the page in the middle of a run.
  optimizeDeps: {
    entries: ['bench/index.html'],
    include: [
      '@tensorflow/tfjs-core',
      '@tensorflow/tfjs-core/dist/register_all_gradients',
      '@tensorflow/tfjs-backend-webgpu',
      'wgpu-matrix',
    ],
    exclude: ['onnxruntime-web'],
  },
  plugins: [
    {
      name: 'bench-index',
      configureServer(server) {
        server.middlewares.use((req, res, next) => {
          if (req.url === '/' || req.url === '/index.html') {
            res.writeHead(302, { Location: '/bench/' });
            res.end();
          } else {
            next();
          }
        });
      },
    },
  ],
});
