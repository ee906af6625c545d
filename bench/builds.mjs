// Two builds of the library side by side in one Node process on one device (Dawn): the figures a
// refactor must not make worse. Per shape, the builds take turns (A B B A ...) and the median of
// five rounds is printed: ms per call, GFLOP/s, and B/A; then the CPU ms per call of the process
// (all threads: JS, Dawn and, on SwiftShader, the kernels), which other processes on a shared
// machine disturb far less than the wall clock; and the host ms per call (the main thread's time
// from calling attention to its promise, i.e. what bounds a small call on a real GPU).
// Usage: npm run build; cp -r dist /tmp/after; (check out the other commit) npm run build;
//        node bench/builds.mjs dist /tmp/after [shapes whose label starts with this, e.g. decode]
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dirs, only] = [process.argv.slice(2, 4), process.argv[4]];
if (dirs.length !== 2) {
  console.log('usage: node bench/builds.mjs <dist of build A> <dist of build B> [label prefix]');
  process.exit(1);
}
const { nodeGpu } = await import(pathToFileURL(resolve(dirs[0], 'node.js')).href);
const libs = await Promise.all(dirs.map((d) => import(pathToFileURL(resolve(d, 'index.js')).href)));
const gpu = await nodeGpu();
const ctxs = await Promise.all(libs.map((lib) => lib.createContext({ gpu })));
console.log(`adapter: ${ctxs[0].adapterInfo.vendor} ${ctxs[0].adapterInfo.architecture}`);

// Deterministic inputs (the same for both builds).
const inputs = (n) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

/**
 * [wall ms, CPU ms, host ms] per attention call of `shape` on build `i`, over `reps` calls, after three
 * warm-up calls.
 */
async function msPerCall(i, shape, reps) {
  const [lib, ctx] = [libs[i], ctxs[i]];
  const { B, Hq, Hkv, Lq, Lk, D, causal } = shape;
  const q = ctx.tensor(inputs(B * Hq * Lq * D), [B, Hq, Lq, D]);
  const k = ctx.tensor(inputs(B * Hkv * Lk * D), [B, Hkv, Lk, D]);
  const v = ctx.tensor(inputs(B * Hkv * Lk * D), [B, Hkv, Lk, D]);
  for (let r = 0; r < 3; r++) (await lib.attention(q, k, v, { causal })).output.destroy();
  await ctx.sync();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let host = 0;
  for (let r = 0; r < reps; r++) {
    const h0 = performance.now();
    const { output } = await lib.attention(q, k, v, { causal });
    host += performance.now() - h0;
    output.destroy();
  }
  await ctx.sync();
  const ms = (performance.now() - t0) / reps;
  const cpu = process.cpuUsage(cpu0);
  for (const t of [q, k, v]) t.destroy();
  return [ms, (cpu.user + cpu.system) / 1e3 / reps, host / reps];
}

const SHAPES = [
  ['tiny decode step (per-call overhead)', { B: 1, Hq: 2, Hkv: 2, Lq: 1, Lk: 16, D: 8 }, 500],
  ['decode-2048', { B: 1, Hq: 8, Hkv: 2, Lq: 1, Lk: 2048, D: 64 }, 40],
  ['decode-8192', { B: 1, Hq: 8, Hkv: 2, Lq: 1, Lk: 8192, D: 64 }, 10],
  ['prefill-512', { B: 1, Hq: 8, Hkv: 8, Lq: 512, Lk: 512, D: 64 }, 3],
  ['gqa-512', { B: 1, Hq: 8, Hkv: 2, Lq: 512, Lk: 512, D: 64 }, 3],
  ['causal-1024', { B: 1, Hq: 8, Hkv: 8, Lq: 1024, Lk: 1024, D: 64, causal: true }, 2],
];
for (const [label, shape, reps] of SHAPES.filter(([label]) => !only || label.startsWith(only))) {
  const runs = [[], []];
  for (let round = 0; round < 5; round++) {
    for (const i of round % 2 ? [1, 0] : [0, 1]) runs[i].push(await msPerCall(i, shape, reps));
  }
  const median = (i, j) => runs[i].map((r) => r[j]).sort((x, y) => x - y)[2];
  const [wall, cpu, host] = [0, 1, 2].map((j) => [median(0, j), median(1, j)]);
  const { B, Hq, Lq, Lk, D, causal } = shape;
  const gflop = (4 * B * Hq * Lq * Lk * D * (causal ? 0.5 : 1)) / 1e9;
  const cell = (i) => `${wall[i].toFixed(3)} ms (${(gflop / (wall[i] / 1e3)).toFixed(2)} GFLOP/s)`;
  console.log(
    `${label}: A ${cell(0)}, B ${cell(1)}, B/A ${(wall[1] / wall[0]).toFixed(3)}; ` +
      `CPU ms A ${cpu[0].toFixed(3)}, B ${cpu[1].toFixed(3)}, B/A ${(cpu[1] / cpu[0]).toFixed(3)}; ` +
      `host ms A ${host[0].toFixed(3)}, B ${host[1].toFixed(3)}, B/A ${(host[1] / host[0]).toFixed(3)}`,
  );
}
for (const ctx of ctxs) ctx.destroy();
process.exit(0);
