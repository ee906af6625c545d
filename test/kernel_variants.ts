// The variant space of every op, run on tiny inputs, and the compilation messages of the shader
// modules that creates (used by kernels.browser.test.ts and kernels_null.node.test.ts).
import {
  type AttentionOptions,
  attention,
  attentionBackward,
  type Context,
  createBlockMask,
  createContext,
  KVCache,
  linear,
  matmul,
  planAttentionBackward,
  rope,
  softmax,
  type Tensor,
} from '../src';
import { decodeAttention } from '../src/ops/attention';

/**
 * Runs `fn` on `ctx` and returns the compilation messages of every kernel's shader module it
 * created. Not the modules that check a scoreMod / maskMod snippet on its own ('attention:snippet',
 * src/ops/score_snippets.ts, which reads and reports their messages itself): in headless Chromium
 * a second getCompilationInfo of one of them was seen never to resolve.
 */
export async function messagesOf(
  ctx: Context,
  fn: () => Promise<unknown>,
): Promise<{ count: number; messages: string[] }> {
  const modules: GPUShaderModule[] = [];
  const { device } = ctx;
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (descriptor) => {
    const module = create(descriptor);
    if (descriptor.label !== 'attention:snippet') modules.push(module);
    return module;
  };
  try {
    await fn();
  } finally {
    device.createShaderModule = create;
  }
  const messages: string[] = [];
  for (const m of modules) {
    for (const msg of (await m.getCompilationInfo()).messages) {
      messages.push(`${m.label}: ${msg.type} at ${msg.lineNum}:${msg.linePos}: ${msg.message}`);
    }
  }
  return { count: modules.length, messages };
}

/**
/**
 * Every attention variant: element storage x kernel form x mask kind x outputs x path, and dropout
 * (f32, without a mask: its code does not depend on either) on each path and in the backward. With
 * `flashOnly`, the flash kernel's alone (for the 'tiled' form, whose other passes are the
 * 'workgroup' form's).
 */
export async function attentionVariants(ctx: Context, flashOnly = false): Promise<void> {
  const made: Tensor[] = [];
  const t = (shape: number[], dtype: 'f32' | 'f16' | 'bool' = 'f32') => {
    const x = ctx.zeros(shape, dtype);
    made.push(x);
    return x;
  };
  const keep = (r: { output: Tensor; lse?: Tensor; weights?: Tensor }) => {
    made.push(r.output, ...(r.lse ? [r.lse] : []), ...(r.weights ? [r.weights] : []));
  };
  for (const dtype of ['f32', 'f16'] as const) {
    // D 8 runs the registers form where the context has it, D 6 always the workgroup form
    for (const [D, Lq] of [
      [8, 5],
      [6, 5],
      [8, 1],
    ]) {
      // the tiled kernel compiles the same for any Lq (D 8: vec4 reads, D 6: element reads)
      if (flashOnly && Lq !== 5) continue;
      // 300 keys send the workgroup and registers forms' short calls to decode; the tiled form's
      // would decode too (with the workgroup form's passes), so its calls take 40
      const Lk = flashOnly ? 40 : 300;
      const q = t([1, 2, Lq, D], dtype);
      const kv = t([1, 1, Lk, D], dtype);
      const masks = [undefined, t([1, 1, Lq, Lk], 'bool'), t([Lq, Lk])];
      for (const mask of masks) {
        for (const returnLse of [false, true]) {
          keep(await attention(q, kv, kv, { mask, returnLse, causal: true }));
          if (!flashOnly) keep(await decodeAttention(q, kv, kv, { mask, returnLse }));
        }
        if (!flashOnly) keep(await attention(q, kv, kv, { mask, returnWeights: true }));
      }
      // few row blocks against 300 keys, not decoded: the workgroup form splits the keys
      if (!flashOnly && Lq === 5) keep(await attention(t([1, 2, 20, D], dtype), kv, kv, { returnLse: true }));
      if (dtype === 'f32') {
        const dropout = { p: 0.5, seed: 1 };
        keep(await attention(q, kv, kv, { dropout, causal: true }));
        if (flashOnly) continue;
        keep(await decodeAttention(q, kv, kv, { dropout }));
        if (D === 6) keep(await attention(q, kv, kv, { dropout, returnWeights: true }));
      }
    }
    if (flashOnly) {
      // few row blocks against 600 keys: split over keys, partials and their merge
      const kv = t([1, 1, 600, 8], dtype);
      keep(await attention(t([1, 2, 20, 8], dtype), kv, kv, { returnLse: true, causal: true }));
      continue;
    }
    // the backward's passes (delta, dK/dV, dQ; dsinks with sinks), in the context's form
    const x = t([1, 2, 5, 8], dtype);
    for (const mask of [undefined, t([1, 1, 5, 5], 'bool')]) {
      const f = await attention(x, x, x, { mask, returnLse: true, causal: true });
      keep(f);
      const g = await attentionBackward(x, x, x, f.output, f.output, { mask, causal: true, lse: f.lse });
      made.push(g.dq, g.dk, g.dv);
    }
    if (dtype === 'f32') {
      const dropout = { p: 0.5, seed: 1 };
      const fd = await attention(x, x, x, { dropout, returnLse: true });
      keep(fd);
      const gd = await attentionBackward(x, x, x, fd.output, fd.output, { dropout, lse: fd.lse });
      made.push(gd.dq, gd.dk, gd.dv);
    }
    const f = await attention(x, x, x, { sinks: [0, 1], returnLse: true });
    keep(f);
    const g = await attentionBackward(x, x, x, f.output, f.output, { sinks: [0, 1], lse: f.lse });
    made.push(g.dq, g.dk, g.dv, g.dsinks!);
    if (dtype === 'f32') {
      // modData's gradients: the dQ pass with DATA_GRAD (atomic adds)
      const mods = {
        scoreMod: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + w(j); }',
        modData: { w: [0.5, 0.25] },
      };
      const fm = await attention(x, x, x, { ...mods, returnLse: true });
      keep(fm);
      const gm = await attentionBackward(x, x, x, fm.output, fm.output, {
        ...mods,
        lse: fm.lse,
        scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }',
        modDataGrad: 'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { w_grad(j, ds); }',
      });
      made.push(gm.dq, gm.dk, gm.dv, gm.dModData!.w!);
    }
  }
  for (const x of made) x.destroy();
}

/**
 * The 'matrix' form's flash kernel (on a context forced to it): with `all`, f32 and f16 storage x
 * mask kinds x lse, and the rule constants (softcap, ALiBi, a block mask); else one variant (the
 * code is the same: compiling each is seconds on SwiftShader).
 */
export async function matrixVariants(ctx: Context, all: boolean): Promise<void> {
  const made: Tensor[] = [];
  const t = (shape: number[], dtype: 'f32' | 'f16' | 'bool' = 'f32') => {
    const x = ctx.zeros(shape, dtype);
    made.push(x);
    return x;
  };
  const run = async (q: Tensor, options: AttentionOptions) => {
    const r = await attention(q, q, q, options);
    made.push(r.output, ...(r.lse ? [r.lse] : []));
  };
  for (const dtype of all ? (['f32', 'f16'] as const) : (['f32'] as const)) {
    const q = t([1, 2, 40, 8], dtype);
    for (const mask of all ? [undefined, t([40, 40], 'bool'), t([40, 40])] : [undefined]) {
      for (const returnLse of all ? [false, true] : [true]) await run(q, { mask, returnLse, causal: true });
    }
  }
  if (all) {
    const q = t([1, 2, 40, 8]);
    const blockMask = await createBlockMask(ctx, { Lq: 40, Lk: 40, causal: true, blockSize: 16 });
    await run(q, { softcap: 5, alibiSlopes: [0.5, 0.25], blockMask, sinks: [0, 1] });
    blockMask.states.destroy();
  }
  for (const x of made) x.destroy();
}

/**
 * The split-K decode pass on `ctx` alone (f32 and f16, head dims read as chunks or as elements,
 * with and without a mask and lse): for a context without subgroups, whose 'workgroup' pass sums
 * its lanes in workgroup memory only.
 */
export async function decodeVariants(ctx: Context): Promise<void> {
  const made: Tensor[] = [];
  for (const dtype of ['f32', 'f16'] as const) {
    for (const D of [8, 6]) {
      const q = ctx.zeros([1, 2, 1, D], dtype);
      const kv = ctx.zeros([1, 1, 300, D], dtype);
      const mask = ctx.zeros([300], 'bool');
      made.push(q, kv, mask);
      for (const options of [{}, { mask, returnLse: true }]) {
        const r = await decodeAttention(q, kv, kv, options);
        made.push(r.output, ...(r.lse ? [r.lse] : []));
      }
    }
  }
  for (const x of made) x.destroy();
}

/**
 * The backward of calls split to fit 1 KiB bindings (passes adding to f32 sums, the store pass),
 * f32 and f16, with a mask and sinks, in the context's form; and a split forward whose slices are
 * not whole words.
 */
export async function backwardSplitVariants(ctx: Context): Promise<void> {
  const small = await createContext({
    device: ctx.device,
    limits: { maxStorageBufferBindingSize: 1024 },
    attentionKernel: ctx.attentionKernel,
  });
  for (const dtype of ['f32', 'f16'] as const) {
    const x = small.zeros([1, 2, 40, 8], dtype);
    const mask = small.zeros([40, 40], 'bool');
    const options = { mask, sinks: [0, 1], causal: true };
    const f = await attention(x, x, x, { ...options, returnLse: true });
    const backward = { ...options, lse: f.lse };
    const { path } = planAttentionBackward(x, x, x, f.output, f.output, backward);
    if (path === 'whole') throw new Error(`backwardSplitVariants: ${dtype} call not split`);
    const g = await attentionBackward(x, x, x, f.output, f.output, backward);
    for (const t of [x, mask, f.output, f.lse, g.dq, g.dk, g.dv, g.dsinks]) t?.destroy();
  }
  // f16 rows of 5 halves and mask rows of 41 bytes: slices copied by the byte-copy kernel
  const [q, k, mask] = [
    small.zeros([1, 1, 40, 5], 'f16'),
    small.zeros([1, 1, 41, 5], 'f16'),
    small.zeros([40, 41], 'bool'),
  ];
  const { output } = await attention(q, k, k, { mask });
  for (const t of [q, k, mask, output]) t.destroy();
  small.destroy();
}

/** The other ops' variants. */
export async function opVariants(ctx: Context): Promise<void> {
  const made: Tensor[] = [];
  const t = (shape: number[], dtype: 'f32' | 'f16' = 'f32') => {
    const x = ctx.zeros(shape, dtype);
    made.push(x);
    return x;
  };
  for (const [M, K, N] of [
    [4, 8, 8],
    [3, 5, 7],
    [20, 8, 24],
  ]) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const a = t(transposeA ? [K, M] : [M, K]);
        const b = t(transposeB ? [N, K] : [K, N]);
        made.push(await matmul(a, b, { transposeA, transposeB }));
      }
    }
  }
  for (const n of [7, 2000]) made.push(await softmax(t([2, n]), { causal: n < 10 }));
  for (const dtype of ['f32', 'f16'] as const) {
    for (const K of [8, 6]) {
      const x = t([1, 2, K], dtype);
      const w = t([4, K], dtype);
      made.push(await linear(x, w));
      made.push(
        await linear(x, w, { bias: t([4], dtype), activation: 'gelu', residual: t([1, 2, 4], dtype) }),
      );
      made.push(await linear(x, w, { activation: 'relu', heads: 2 }));
    }
    for (const style of ['half', 'interleaved'] as const)
      made.push(await rope(t([1, 1, 3, 8], dtype), { style }));
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 4, capacity: 4, dtype });
    await cache.append(t([1, 1, 2, 4], dtype), t([1, 1, 2, 4], dtype));
    cache.destroy();
  }
  for (const x of made) x.destroy();
}
