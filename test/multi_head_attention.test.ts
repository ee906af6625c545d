import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionOptions,
  type Context,
  fromF16Bits,
  KVCache,
  MultiHeadAttention,
  type PyTorchAttentionWeights,
  type SeparateAttentionWeights,
  type Tensor,
  toF16Bits,
} from '../src';
import {
  type AttentionCpuOptions,
  type HostTensor,
  type MultiHeadAttentionCpuWeights,
  multiHeadAttentionCpu,
} from '../src/reference';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, randomMask, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

interface Case {
  B: number;
  L: number;
  E: number;
  H: number;
  Hkv?: number;
  /** cross-attention: memory length and feature dims of key and value */
  S?: number;
  kdim?: number;
  vdim?: number;
  bias?: boolean;
  causal?: boolean;
  mask?: number[];
  rope?: { style: 'half' | 'interleaved'; dims?: number; base?: number };
  dtype?: 'f32' | 'f16';
  /** load through loadPyTorch (packed in_proj_weight) rather than loadSeparate */
  packed?: boolean;
  weights?: boolean;
  /** add x to the output (skip connection) */
  residual?: boolean;
  seed?: number;
  /** sparse options passed to the layer's attention (the same values as the reference's) */
  scoring?: {
    window?: [number, number];
    softcap?: number;
    alibiSlopes?: number[];
    sinks?: number[];
    sequsedK?: number[];
    cacheLeftpad?: number[];
  };
  /** snippets (with their modData) for the layer, and their JS twins for the reference */
  mods?: {
    gpu: Pick<AttentionOptions, 'scoreMod' | 'maskMod' | 'modData'>;
    cpu: Pick<AttentionCpuOptions, 'scoreMod' | 'maskMod'>;
  };
}

/** Rounds to the halves an f16 layer stores, so that the reference sees what the GPU reads. */
function stored(data: Float32Array, dtype: 'f32' | 'f16' | undefined): Float32Array {
  return dtype === 'f16' ? Float32Array.from(data, (x) => fromF16Bits(toF16Bits(x))) : data;
}

/** Random weights in PyTorch's layout (uniform in ±1/sqrt(fan in), like its initialisation). */
function randomWeights(c: Case, random: () => number): MultiHeadAttentionCpuWeights {
  const Dh = c.E / c.H;
  const Ekv = (c.Hkv ?? c.H) * Dh;
  const w = (n: number, k: number): HostTensor => ({
    data: stored(randomArray(random, n * k, 1 / Math.sqrt(k)), c.dtype),
    shape: [n, k],
  });
  const b = (n: number): HostTensor | undefined =>
    c.bias === false ? undefined : { data: stored(randomArray(random, n, 0.5), c.dtype), shape: [n] };
  return {
    q: w(c.E, c.E),
    k: w(Ekv, c.kdim ?? c.E),
    v: w(Ekv, c.vdim ?? c.E),
    out: w(c.E, c.E),
    qBias: b(c.E),
    kBias: b(Ekv),
    vBias: b(Ekv),
    outBias: b(c.E),
  };
}

function load(mha: MultiHeadAttention, w: MultiHeadAttentionCpuWeights, packed: boolean | undefined) {
  const data = (t: HostTensor | undefined) => t?.data as Float32Array | undefined;
  const cat = (...ts: (HostTensor | undefined)[]) =>
    ts[0] ? Float32Array.from(ts.flatMap((t) => Array.from(data(t)!))) : undefined;
  if (packed) {
    mha.loadPyTorch({
      in_proj_weight: cat(w.q, w.k, w.v)!,
      in_proj_bias: cat(w.qBias, w.kBias, w.vBias),
      'out_proj.weight': data(w.out)!,
      'out_proj.bias': data(w.outBias),
    });
  } else {
    mha.loadSeparate({
      q_proj_weight: data(w.q)!,
      k_proj_weight: data(w.k)!,
      v_proj_weight: data(w.v)!,
      q_proj_bias: data(w.qBias),
      k_proj_bias: data(w.kBias),
      v_proj_bias: data(w.vBias),
      'out_proj.weight': data(w.out)!,
      'out_proj.bias': data(w.outBias),
    });
  }
}

async function check(c: Case) {
  const random = rng(c.seed ?? 3);
  const weights = randomWeights(c, random);
  const x: HostTensor = {
    data: stored(randomArray(random, c.B * c.L * c.E), c.dtype),
    shape: [c.B, c.L, c.E],
  };
  const S = c.S ?? c.L;
  const cross = c.S !== undefined;
  const key: HostTensor = {
    data: stored(randomArray(random, c.B * S * (c.kdim ?? c.E)), c.dtype),
    shape: [c.B, S, c.kdim ?? c.E],
  };
  const value: HostTensor = {
    data: stored(randomArray(random, c.B * S * (c.vdim ?? c.E)), c.dtype),
    shape: [c.B, S, c.vdim ?? c.E],
  };
  const mask: HostTensor | undefined = c.mask && {
    data: randomMask(
      random,
      c.mask.reduce((a, b) => a * b, 1),
      0.7,
    ),
    shape: c.mask,
    dtype: 'bool',
  };
  const ref = multiHeadAttentionCpu(x, weights, {
    numHeads: c.H,
    numKvHeads: c.Hkv,
    memory: cross ? { key, value } : undefined,
    causal: c.causal,
    mask,
    rope: c.rope,
    ...c.scoring,
    ...c.mods?.cpu,
  });
  if (c.residual) for (let i = 0; i < x.data.length; i++) ref.output.data[i] += Number(x.data[i]);

  const mha = new MultiHeadAttention(ctx, {
    embedDim: c.E,
    numHeads: c.H,
    numKvHeads: c.Hkv,
    kdim: c.kdim,
    vdim: c.vdim,
    bias: c.bias,
    rope: c.rope,
    dtype: c.dtype,
  });
  load(mha, weights, c.packed);
  const made: Tensor[] = [];
  const up = (h: HostTensor) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: h.dtype === 'bool' ? 'bool' : c.dtype });
    made.push(t);
    return t;
  };
  await checked(ctx, async () => {
    const xt = up(x);
    const result = await mha.forward(xt, {
      residual: c.residual ? xt : undefined,
      memory: cross ? { key: up(key), value: up(value) } : undefined,
      causal: c.causal,
      mask: mask && up(mask),
      returnWeights: c.weights,
      ...c.scoring,
      ...c.mods?.gpu,
    });
    const tol = c.dtype === 'f16' ? F16_TOL : F32_TOL;
    expect(result.output.shape).toEqual([c.B, c.L, c.E]);
    expectClose(await result.output.read(), ref.output.data, tol, `${JSON.stringify(c)} output`);
    if (c.weights)
      expectClose(await result.weights!.read(), ref.weights.data, tol, `${JSON.stringify(c)} weights`);
    result.output.destroy();
    result.weights?.destroy();
  });
  for (const t of made) t.destroy();
  mha.destroy();
}

describe('MultiHeadAttention', () => {
  it('self-attention from a PyTorch state dict, with weights', () =>
    check({ B: 2, L: 5, E: 16, H: 4, packed: true, weights: true }));
  it('causal, one head, odd sizes, no bias', () =>
    check({ B: 1, L: 7, E: 6, H: 1, causal: true, bias: false, residual: true }));
  it('cross-attention with kdim and vdim', () =>
    check({ B: 2, L: 3, S: 9, E: 8, H: 2, kdim: 12, vdim: 5, weights: true }));
  it('grouped-query and multi-query heads', async () => {
    await check({ B: 1, L: 6, E: 16, H: 4, Hkv: 2, causal: true });
    await check({ B: 2, L: 4, E: 12, H: 3, Hkv: 1, weights: true });
  });
  it('bool mask broadcast over heads', () => check({ B: 2, L: 5, E: 8, H: 2, mask: [2, 1, 5, 5] }));
  it('RoPE, half-split and interleaved', async () => {
    await check({ B: 1, L: 6, E: 16, H: 2, causal: true, rope: { style: 'half' } });
    await check({ B: 2, L: 5, E: 16, H: 4, Hkv: 2, rope: { style: 'interleaved', dims: 2, base: 100 } });
  });
  it('sparse options (window, softcap, ALiBi, sinks) with GQA and causal', () =>
    check({
      B: 2,
      L: 9,
      E: 16,
      H: 4,
      Hkv: 2,
      causal: true,
      weights: true,
      scoring: {
        window: [3, 0],
        softcap: 1.5,
        alibiSlopes: [0.5, 0.25, 0.125, 0.0625],
        sinks: [0, 1, -1, 0.5],
      },
    }));
  it('keys in use per batch item: cacheLeftpad and sequsedK', () =>
    check({
      B: 3,
      L: 7,
      E: 16,
      H: 4,
      Hkv: 2,
      causal: true,
      scoring: { cacheLeftpad: [2, 0, 7], sequsedK: [7, 5, 7] },
    }));
  it('scoreMod and maskMod reading modData (a bias per head, a key filter)', () => {
    const bias = [0.5, -0.25, 1, 0];
    const keep = Int32Array.of(1, 1, 0, 1, 0, 1, 1);
    return check({
      B: 2,
      L: 7,
      E: 16,
      H: 4,
      Hkv: 2,
      causal: true,
      weights: true,
      mods: {
        gpu: {
          scoreMod:
            'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + bias(h) * f32(b + 1u); }',
          maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return keep(j) != 0 || i == j; }',
          modData: { bias, keep },
        },
        cpu: {
          scoreMod: (s, b, h) => s + bias[h]! * (b + 1),
          maskMod: (_b, _h, i, j) => keep[j] !== 0 || i === j,
        },
      },
    });
  });
  it('f16 storage', () =>
    check({ B: 2, L: 5, E: 16, H: 4, causal: true, rope: { style: 'half' }, dtype: 'f16', residual: true }));

  it('decoding through a KV cache equals one causal call over the whole sequence', async () => {
    // a 3-position prompt, then single steps: RoPE positions continue across calls
    for (const c of [
      { B: 2, L: 7, E: 16, H: 4, Hkv: 2, rope: { style: 'half' as const } },
      { B: 1, L: 6, E: 8, H: 2, rope: { style: 'interleaved' as const }, dtype: 'f16' as const },
      // a sliding window and sinks: every step sees the window of the cached keys' end
      { B: 1, L: 8, E: 8, H: 2, scoring: { window: [2, 0] as [number, number], sinks: [0.5, -0.5] } },
    ] as Case[]) {
      const random = rng(9);
      const weights = randomWeights(c, random);
      const xData = stored(randomArray(random, c.B * c.L * c.E), c.dtype);
      const ref = multiHeadAttentionCpu({ data: xData, shape: [c.B, c.L, c.E] }, weights, {
        numHeads: c.H,
        numKvHeads: c.Hkv,
        causal: true,
        rope: c.rope,
        ...c.scoring,
      });
      const mha = new MultiHeadAttention(ctx, {
        embedDim: c.E,
        numHeads: c.H,
        numKvHeads: c.Hkv,
        rope: c.rope,
        dtype: c.dtype,
      });
      load(mha, weights, false);
      const cache = new KVCache(ctx, {
        batch: c.B,
        kvHeads: c.Hkv ?? c.H,
        headDim: c.E / c.H,
        capacity: 16,
        dtype: c.dtype,
      });
      const steps = [3, ...Array.from({ length: c.L - 3 }, () => 1)];
      const got = new Float64Array(c.B * c.L * c.E);
      await checked(ctx, async () => {
        let start = 0;
        for (const n of steps) {
          // x rows [start, start + n) of every batch
          const part = new Float32Array(c.B * n * c.E);
          for (let b = 0; b < c.B; b++) {
            part.set(xData.subarray((b * c.L + start) * c.E, (b * c.L + start + n) * c.E), b * n * c.E);
          }
          const x = ctx.tensor(part, [c.B, n, c.E], { dtype: c.dtype });
          const { output } = await mha.forward(x, { cache, ...c.scoring });
          const out = await output.read();
          for (let b = 0; b < c.B; b++) {
            got.set(out.subarray(b * n * c.E, (b + 1) * n * c.E), (b * c.L + start) * c.E);
          }
          x.destroy();
          output.destroy();
          start += n;
        }
      });
      expect(cache.length).toBe(c.L);
      expectClose(got, ref.output.data, c.dtype === 'f16' ? F16_TOL : F32_TOL, `${JSON.stringify(c)} decode`);
      cache.destroy();
      mha.destroy();
    }
  });

  it('rejects bad options and weights with the expected and received values', async () => {
    expect(() => new MultiHeadAttention(ctx, { embedDim: 10, numHeads: 4 })).toThrow(
      'MultiHeadAttention: embedDim (10) must be a multiple of numHeads, received numHeads=4',
    );
    expect(() => new MultiHeadAttention(ctx, { embedDim: 8, numHeads: 4, numKvHeads: 3 })).toThrow(
      'MultiHeadAttention: numHeads (4) must be a multiple of numKvHeads, received numKvHeads=3',
    );
    const gqa = new MultiHeadAttention(ctx, { embedDim: 8, numHeads: 4, numKvHeads: 2 });
    expect(() =>
      gqa.loadPyTorch({ in_proj_weight: new Float32Array(192), 'out_proj.weight': new Float32Array(64) }),
    ).toThrow('packed in_proj_weight needs numKvHeads = numHeads');
    const mha = new MultiHeadAttention(ctx, { embedDim: 8, numHeads: 2 });
    expect(() =>
      mha.loadPyTorch({
        in_proj_weight: new Float32Array(190),
        in_proj_bias: new Float32Array(24),
        'out_proj.weight': new Float32Array(64),
        'out_proj.bias': new Float32Array(8),
      }),
    ).toThrow('MultiHeadAttention: in_proj_weight must have 192 elements ([24, 8]), received 190');
    const x = ctx.tensor(new Float32Array(2 * 8), [1, 2, 8]);
    await expect(mha.forward(x)).rejects.toThrow('MultiHeadAttention.forward: no weights loaded');
    mha.loadPyTorch({
      in_proj_weight: new Float32Array(192),
      in_proj_bias: new Float32Array(24),
      'out_proj.weight': new Float32Array(64),
      'out_proj.bias': new Float32Array(8),
    });
    const wide = ctx.tensor(new Float32Array(2 * 6), [1, 2, 6]);
    await expect(mha.forward(wide)).rejects.toThrow(
      'MultiHeadAttention.forward: x must be f32 [B, L, 8], received f32 [1, 2, 6]',
    );
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 2, headDim: 4, capacity: 8 });
    await expect(mha.forward(x, { cache, memory: x })).rejects.toThrow(
      'MultiHeadAttention.forward: cache is for self-attention decoding; received both memory and cache',
    );
    cache.destroy();
    await expect(mha.forward(x, { causual: true } as object)).rejects.toThrow(
      "MultiHeadAttention.forward: unknown option 'causual'",
    );
    for (const t of [x, wide]) t.destroy();
    mha.destroy();
    gqa.destroy();
  });
});

/** The same weights as the state dicts loadPyTorch and loadSeparate take. */
function stateDicts(w: MultiHeadAttentionCpuWeights) {
  const data = (t: HostTensor | undefined) => t && Float32Array.from(t.data as Float32Array);
  const cat = (...ts: HostTensor[]) =>
    Float32Array.from(ts.flatMap((t) => Array.from(t.data as Float32Array)));
  const packed: PyTorchAttentionWeights = {
    in_proj_weight: cat(w.q, w.k, w.v),
    in_proj_bias: cat(w.qBias!, w.kBias!, w.vBias!),
    'out_proj.weight': data(w.out)!,
    'out_proj.bias': data(w.outBias),
  };
  const separate: SeparateAttentionWeights = {
    q_proj_weight: data(w.q)!,
    k_proj_weight: data(w.k)!,
    v_proj_weight: data(w.v)!,
    q_proj_bias: data(w.qBias),
    k_proj_bias: data(w.kBias),
    v_proj_bias: data(w.vBias),
    'out_proj.weight': data(w.out)!,
    'out_proj.bias': data(w.outBias),
  };
  return { packed, separate };
}

describe("multiHeadAttentionCpu takes the layer's state dicts", () => {
  it('the loadPyTorch dict: same as its own weights, and the layer loaded with loadPyTorch agrees', async () => {
    const c = { B: 2, L: 5, E: 16, H: 4 };
    const random = rng(21);
    const weights = randomWeights(c, random);
    const { packed } = stateDicts(weights);
    const x: HostTensor = { data: randomArray(random, c.B * c.L * c.E), shape: [c.B, c.L, c.E] };
    const options = { numHeads: c.H, causal: true };
    const fromDict = multiHeadAttentionCpu(x, packed, options);
    expect(fromDict.output.data).toEqual(multiHeadAttentionCpu(x, weights, options).output.data);

    const mha = new MultiHeadAttention(ctx, { embedDim: c.E, numHeads: c.H }).loadPyTorch(packed);
    const xt = ctx.tensor(x.data as Float32Array, x.shape);
    await checked(ctx, async () => {
      const { output } = await mha.forward(xt, { causal: true });
      expectClose(await output.read(), fromDict.output.data, F32_TOL, 'loadPyTorch layer vs reference');
      output.destroy();
    });
    xt.destroy();
    mha.destroy();
  });

  it('the loadSeparate dict, with grouped-query heads and cross-attention feature sizes', () => {
    const c = { B: 1, L: 3, S: 4, E: 8, H: 4, Hkv: 2, kdim: 6, vdim: 5 };
    const random = rng(22);
    const weights = randomWeights(c, random);
    const x: HostTensor = { data: randomArray(random, c.B * c.L * c.E), shape: [c.B, c.L, c.E] };
    const key: HostTensor = { data: randomArray(random, c.B * c.S * c.kdim), shape: [c.B, c.S, c.kdim] };
    const value: HostTensor = { data: randomArray(random, c.B * c.S * c.vdim), shape: [c.B, c.S, c.vdim] };
    const options = { numHeads: c.H, numKvHeads: c.Hkv, memory: { key, value } };
    expect(multiHeadAttentionCpu(x, stateDicts(weights).separate, options).output.data).toEqual(
      multiHeadAttentionCpu(x, weights, options).output.data,
    );
  });

  it('checks sizes and refuses a packed in_proj_weight with grouped-query heads', () => {
    const random = rng(23);
    const { packed } = stateDicts(randomWeights({ B: 1, L: 2, E: 8, H: 2 }, random));
    const x: HostTensor = { data: randomArray(random, 2 * 8), shape: [1, 2, 8] };
    expect(() =>
      multiHeadAttentionCpu(
        x,
        { ...packed, in_proj_weight: packed.in_proj_weight.slice(1) },
        { numHeads: 2 },
      ),
    ).toThrow('multiHeadAttentionCpu: in_proj_weight must have 192 elements ([24, 8]), received 191');
    expect(() => multiHeadAttentionCpu(x, packed, { numHeads: 2, numKvHeads: 1 })).toThrow(
      'multiHeadAttentionCpu: a packed in_proj_weight needs numKvHeads = numHeads',
    );
  });
});
