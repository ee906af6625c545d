// The command line of the Node benchmark (`npm run bench:node`, bench/node.mjs, or the bundle
// that scripts/gpu-pack.mjs makes for a machine without node_modules): options, progress on
// stderr, the table on stdout, the results files. `main(suite)` takes bench/node_suite.ts's module.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { adapterSlug, sourceVersion } from './results_files.mjs';

export const USAGE = `The benchmark in Node through Dawn, no browser (issue 12, item 7): checks every kernel form
against the float64 reference on small shapes, measures the adapter's roofs, tunes the kernel
form per shape, times the attention shapes in every form (fraction of the roof next to
GFLOP/s) and the decode layer, prints a table and writes <date>-<adapter>-node.{json,md}.
Picks a real GPU when Dawn finds one (src/node.ts); SwiftShader otherwise.

  npm run bench:node -- --out DIR              every shape (GPU-sized; minutes on a GPU)
  npm run bench:node -- --quick --out DIR      four small shapes, short roofs and layer run

Options: --out DIR (where the results go; default: print only), --quick, --shapes a,b (names or
groups of bench/shapes.ts plus prefill-4096, d128-2048, decode-gqa-32768; backward or
backward:NAME: the backward section of bench/backward.ts, ours fused and composed; sparse or a
case's name (window-256-L16384, blocks-10%-L4096, ...): the sparse section of bench/sparse.ts
against the dense mask and full attention; both also part of a full run), --repeats N,
--row-budget-s N, --tune-budget-s N, --no-layer, --no-peers (onnxruntime-web's WebGPU
MultiHeadAttention, timed on each attention shape next to our forms unless this is given).`;

/** Runs the benchmark with the process's arguments; resolves to the exit code. */
export async function main(suite) {
  const { values: args } = parseArgs({
    options: {
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      shapes: { type: 'string', default: '' },
      repeats: { type: 'string' },
      'row-budget-s': { type: 'string' },
      'tune-budget-s': { type: 'string' },
      'no-layer': { type: 'boolean', default: false },
      'no-peers': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const number = (name, fallback) => {
    if (args[name] === undefined) return fallback;
    const n = Number(args[name]);
    if (!(n > 0)) {
      throw new Error(`--${name} must be a positive number, received ${args[name]}`);
    }
    return n;
  };
  const options = {
    quick: args.quick,
    shapes: args.shapes,
    repeats: Math.round(number('repeats', args.quick ? 3 : 10)),
    rowBudgetS: number('row-budget-s', args.quick ? 5 : 10),
    tuneBudgetMs: 1000 * number('tune-budget-s', args.quick ? 20 : 20),
    noLayer: args['no-layer'],
    noPeers: args['no-peers'],
  };

  const progress = (message) => {
    const t = new Date().toISOString().slice(11, 19);
    if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K\x1b[2m${t} ${message}\x1b[0m`);
    else process.stderr.write(`${t} ${message}\n`);
  };
  const clear = () => process.stderr.isTTY && process.stderr.write('\r\x1b[2K');

  let exitCode = 0;
  try {
    let header = true;
    const report = await suite.runNodeBench(options, progress, (line) => {
      clear();
      if (header && line.startsWith('roofs')) {
        console.log(line);
        console.log(`\n${suite.nodeHeaderLine()}`);
        header = false;
        return;
      }
      console.log(line);
    });
    clear();
    for (const t of suite.nodeTargets(report)) {
      const v = t.value === undefined ? 'not measured' : `${(100 * t.value).toFixed(1)}%`;
      console.log(`target: ${t.target}: ${v} (goal ${100 * t.goal}%)`);
    }
    const chosen = Object.entries(report.tuning.choices).map(([c, x]) => `${c} -> ${x.kernel}`);
    console.log(`tuning: ${chosen.join('; ') || 'nothing tuned'}`);
    for (const { shape: s, reason } of report.tuning.skipped) {
      console.log(`not tuned: Lq ${s.Lq} Lk ${s.Lk} D ${s.D}${s.causal ? ' causal' : ''}: ${reason}`);
    }
    console.log(`${report.seconds.toFixed(0)} s`);
    if (report.checks.some((c) => !c.ok)) exitCode = 1;
    if (args.out) {
      const slug = adapterSlug(report.adapter);
      const stem = join(args.out, `${report.date.slice(0, 10)}-${slug}-node${args.quick ? '-quick' : ''}`);
      const sources = sourceVersion(['src', 'shaders', 'bench/*.ts']);
      await mkdir(args.out, { recursive: true });
      await writeFile(`${stem}.json`, `${JSON.stringify({ ...report, sources }, null, 2)}\n`);
      await writeFile(`${stem}.md`, suite.nodeMarkdown(report, sources));
      console.log(`saved ${stem}.json, .md`);
    }
  } catch (e) {
    clear();
    console.error(`bench:node: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    exitCode = 1;
  }
  return exitCode;
}
