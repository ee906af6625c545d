// Entry of the Node benchmark bundled into one file (scripts/gpu-pack.mjs): bench/node_suite.ts
// with the library's sources and WGSL, run where only the `webgpu` package is installed.
import { main } from './node_cli.mjs';
import * as suite from './node_suite.ts';

process.exit(await main(suite));
