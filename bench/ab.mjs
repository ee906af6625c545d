#!/usr/bin/env node
// A/B of two source trees' attention on one adapter, in one Node process (Dawn): both libraries
// are loaded side by side (Vite, each tree's own src and shaders), their calls interleaved in
// alternating order, and each pair's time ratio taken, so that the machine's drift and other load
// cancel out of the comparison. Times are process CPU time (every thread, SwiftShader's included:
// steady on a shared CPU) and wall time to onSubmittedWorkDone (the one that matters on a GPU).
// Outputs of the two trees are compared too.
//
//   git worktree add /tmp/base <commit>; ln -s "$PWD/node_modules" /tmp/base/node_modules
//   node bench/ab.mjs /tmp/base [--shapes prefill-512,decode-8192] [--pairs 16] [--form registers]
//
// --shapes: names or groups of bench/shapes.ts (default: all); --pairs: timed pairs per shape
// (after one untimed pair, which compiles); --form: the kernel form both contexts use (default:
// each tree's rule); --dtype: f32 (default) or f16 storage of q, k and v. Prints, per shape, this tree's time over the other's: the median of the
// pairs' ratios with the quartiles, for CPU and for wall time; below 1: this tree is faster.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createServer } from 'vite';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    shapes: { type: 'string' },
    pairs: { type: 'string', default: '16' },
    form: { type: 'string' },
    dtype: { type: 'string', default: 'f32' },
  },
});
if (positionals.length !== 1) {
  console.error('usage: node bench/ab.mjs OTHER_TREE [--shapes a,b] [--pairs N] [--form F] [--dtype f16]');
  process.exit(2);
}
const pairs = Number(values.pairs);
if (!Number.isInteger(pairs) || pairs < 1) {
  console.error(`bench/ab.mjs: --pairs must be a positive integer, received ${values.pairs}`);
  process.exit(2);
}
if (values.dtype !== 'f32' && values.dtype !== 'f16') {
  console.error(`bench/ab.mjs: --dtype must be f32 or f16, received ${values.dtype}`);
  process.exit(2);
}
const here = fileURLToPath(new URL('..', import.meta.url));

async function load(root) {
  const server = await createServer({
    root,
    configFile: false,
    logLevel: 'error',
    server: { middlewareMode: true, hmr: false, watch: null, ws: false },
    optimizeDeps: { noDiscovery: true },
  });
  return { server, load: (path) => server.ssrLoadModule(path) };
}

const [mine, other] = [await load(here), await load(positionals[0])];
try {
  const { nodeGpu } = await mine.load('/src/node.ts');
  const gpu = await nodeGpu(process.env.WEBGPU_ATTENTION_DAWN_FLAGS?.split(',').filter(Boolean) ?? []);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  const { selectShapes, SHAPES } = await mine.load('/bench/shapes.ts');
  const shapes = values.shapes ? selectShapes(values.shapes) : SHAPES;
  // index 0: the other tree, 1: this one
  const libs = [await other.load('/src/index.ts'), await mine.load('/src/index.ts')];
  const options = values.form ? { attentionKernel: values.form } : {};
  const ctxs = await Promise.all(libs.map((lib) => lib.createContext(options)));
  const { vendor, architecture } = ctxs[1].adapterInfo;
  console.log(
    `adapter ${vendor} / ${architecture}; forms: other ${ctxs[0].attentionKernel}, this ${ctxs[1].attentionKernel}`,
  );
  console.log(`this tree's time / ${positionals[0]}'s, ${values.dtype}, ${pairs} pairs: median [quartiles]`);
  for (const s of shapes) console.log(await compare(s));
  for (const ctx of ctxs) ctx.destroy();

  async function compare(s) {
    const { randomUniform, seededRandom } = libs[1];
    const random = seededRandom(1);
    const q = randomUniform(random, s.B * s.Hq * s.Lq * s.D);
    const kv = [0, 1].map(() => randomUniform(random, s.B * s.Hkv * s.Lk * s.D));
    const dtype = { dtype: values.dtype };
    const inputs = ctxs.map((ctx) => [
      ctx.tensor(q, [s.B, s.Hq, s.Lq, s.D], dtype),
      ...kv.map((x) => ctx.tensor(x, [s.B, s.Hkv, s.Lk, s.D], dtype)),
    ]);
    const ratios = { cpu: [], wall: [] };
    const outputs = [];
    for (let n = 0; n <= pairs; n++) {
      const cpu = [0, 0];
      const wall = [0, 0];
      for (const x of n % 2 ? [1, 0] : [0, 1]) {
        const [c0, w0] = [process.cpuUsage(), performance.now()];
        const r = await libs[x].attention(...inputs[x], { causal: s.causal });
        await ctxs[x].device.queue.onSubmittedWorkDone();
        const c = process.cpuUsage(c0);
        [cpu[x], wall[x]] = [c.user + c.system, performance.now() - w0];
        if (n === pairs) outputs[x] = await r.output.read();
        r.output.destroy();
      }
      if (n > 0) {
        ratios.cpu.push(cpu[1] / cpu[0]);
        ratios.wall.push(wall[1] / wall[0]);
      }
    }
    for (const t of inputs.flat()) t.destroy();
    let diff = 0;
    for (let i = 0; i < outputs[0].length; i++)
      diff = Math.max(diff, Math.abs(outputs[0][i] - outputs[1][i]));
    const summary = (r) => {
      r.sort((a, b) => a - b);
      const at = (f) => r[Math.round(f * (r.length - 1))].toFixed(3);
      return `${at(0.5)} [${at(0.25)}, ${at(0.75)}]`;
    };
    return `${s.name.padEnd(14)} cpu ${summary(ratios.cpu)}  wall ${summary(ratios.wall)}  max |difference| ${diff.toExponential(1)}`;
  }
} finally {
  await Promise.all([mine.server.close(), other.server.close()]);
}
process.exit(0);
