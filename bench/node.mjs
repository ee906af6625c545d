#!/usr/bin/env node
// The benchmark in Node through Dawn, no browser (issue 12, item 7): checks every kernel form
// against the float64 reference on small shapes, measures the adapter's roofs, tunes the kernel
// form per shape, times the attention shapes in every form (fraction of the roof next to
// GFLOP/s) and the decode layer, prints a table and writes <date>-<adapter>-node.{json,md}.
// Picks a real GPU when Dawn finds one (src/node.ts); SwiftShader otherwise.
//
//   npm run bench:node -- --out DIR              every shape (GPU-sized; minutes on a GPU)
//   npm run bench:node -- --quick --out DIR      four small shapes, short roofs and layer run
//
// Options: --out DIR (where the results go; default: print only), --quick, --shapes a,b (names or
// groups of bench/shapes.ts plus prefill-4096, d128-2048, decode-gqa-32768; backward or
// backward:NAME: the backward section of bench/backward.ts, ours fused and composed, also part of a
// full run), --repeats N,
// --row-budget-s N, --tune-budget-s N, --no-layer, --no-peers (no onnxruntime-web rows).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'vite';
import { main } from './node_cli.mjs';

// Vite loads the TypeScript sources and their WGSL (?raw) in Node.
const server = await createServer({
  configFile: join(fileURLToPath(new URL('.', import.meta.url)), 'vite.config.mjs'),
  logLevel: 'warn',
  server: { middlewareMode: true, hmr: false, watch: null },
});
let exitCode = 1;
try {
  exitCode = await main(await server.ssrLoadModule('/bench/node_suite.ts'));
} catch (e) {
  console.error(`bench:node: ${e instanceof Error ? e.message : String(e)}`);
} finally {
  await server.close();
}
process.exit(exitCode);
