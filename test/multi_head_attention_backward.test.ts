// MultiHeadAttention.backward: dx, dMemory and every parameter gradient against float64 central
// finite differences of multiHeadAttentionCpu (the loss is Σ output · dOutput).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, type Context, MultiHeadAttention, type Tensor } from '../src';
import { type HostTensor, type MultiHeadAttentionCpuWeights, multiHeadAttentionCpu } from '../src/reference';
import { checked, expectClose, F32_TOL, randomArray, randomMask, rng, testContext } from './helpers';

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
  /** cross-attention: memory length; with kdim/vdim (or `separate`), key and value are separate tensors */
  S?: number;
  kdim?: number;
  vdim?: number;
  separate?: boolean;
  bias?: boolean;
  causal?: boolean;
  mask?: number[];
  /** an additive f32 mask (values in ±1) instead of a bool one */
  additive?: boolean;
  rope?: { style: 'half' | 'interleaved'; dims?: number; base?: number };
  /** how the weights are loaded: loadPyTorch, loadSeparate with in_proj_bias, or separate biases */
  load: 'packed' | 'separateWeights' | 'separate';
  seed?: number;
  /** the layer's dropout, with this train forward's seed */
  dropout?: { p: number; seed: number };
  /** sparse options of the layer's attention (sinks also get their gradient checked) */
  scoring?: { window?: [number, number]; softcap?: number; alibiSlopes?: number[]; sinks?: number[] };
  /** self-attention with a relative-position bias table [H, 2L - 1] read by scoreMod, trained (dModData) */
  relativeBias?: boolean;
}

type WeightName = keyof MultiHeadAttentionCpuWeights;
const WEIGHT_NAMES: WeightName[] = ['q', 'k', 'v', 'out', 'qBias', 'kBias', 'vBias', 'outBias'];

interface Problem {
  x: HostTensor;
  key?: HostTensor;
  value?: HostTensor;
  mask?: HostTensor;
  weights: MultiHeadAttentionCpuWeights;
  dOutput: Float64Array;
  sinks?: HostTensor;
  relativeBias?: HostTensor;
}

function problem(c: Case): Problem {
  const random = rng(c.seed ?? 5);
  const Dh = c.E / c.H;
  const Ekv = (c.Hkv ?? c.H) * Dh;
  const w = (n: number, k: number): HostTensor => ({
    data: Float64Array.from(randomArray(random, n * k, 1 / Math.sqrt(k))),
    shape: [n, k],
  });
  const b = (n: number): HostTensor | undefined =>
    c.bias === false ? undefined : { data: Float64Array.from(randomArray(random, n, 0.5)), shape: [n] };
  const weights: MultiHeadAttentionCpuWeights = {
    q: w(c.E, c.E),
    k: w(Ekv, c.kdim ?? c.E),
    v: w(Ekv, c.vdim ?? c.E),
    out: w(c.E, c.E),
    qBias: b(c.E),
    kBias: b(Ekv),
    vBias: b(Ekv),
    outBias: b(c.E),
  };
  const host = (shape: number[]): HostTensor => ({
    data: Float64Array.from(
      randomArray(
        random,
        shape.reduce((a, n) => a * n, 1),
      ),
    ),
    shape,
  });
  const x = host([c.B, c.L, c.E]);
  const S = c.S;
  const key = S === undefined ? undefined : host([c.B, S, c.kdim ?? c.E]);
  const value = S === undefined ? undefined : c.separate ? host([c.B, S, c.vdim ?? c.E]) : key;
  const maskSize = c.mask?.reduce((a, n) => a * n, 1) ?? 0;
  const mask: HostTensor | undefined =
    c.mask &&
    (c.additive
      ? { data: Float64Array.from(randomArray(random, maskSize)), shape: c.mask, dtype: 'f32' }
      : { data: randomMask(random, maskSize, 0.7), shape: c.mask, dtype: 'bool' });
  const dOutput = Float64Array.from(randomArray(random, c.B * c.L * c.E));
  const sinks = c.scoring?.sinks && { data: Float64Array.from(c.scoring.sinks), shape: [c.H] };
  const relativeBias = c.relativeBias ? host([c.H * (2 * c.L - 1)]) : undefined;
  return { x, key, value, mask, weights, dOutput, sinks, relativeBias };
}

function loss(c: Case, p: Problem): number {
  const memory = p.key && (c.separate ? { key: p.key, value: p.value! } : p.key);
  const { output } = multiHeadAttentionCpu(p.x, p.weights, {
    numHeads: c.H,
    numKvHeads: c.Hkv,
    memory,
    causal: c.causal,
    mask: p.mask,
    rope: c.rope,
    dropout: c.dropout,
    ...c.scoring,
    sinks: p.sinks?.data as Float64Array | undefined,
    ...(p.relativeBias ? { scoreMod: relativeScore(c, p.relativeBias.data as Float64Array) } : {}),
  });
  let sum = 0;
  for (let i = 0; i < output.data.length; i++) sum += output.data[i] * p.dOutput[i];
  return sum;
}

/** The relative bias as a JS scoreMod (self-attention: Lq = Lk = L), reading `table` [H, 2L - 1]. */
function relativeScore(c: Case, table: Float64Array) {
  return (s: number, _b: number, h: number, i: number, j: number) =>
    s + table[h * (2 * c.L - 1) + i + c.L - 1 - j]!;
}

/** The same as the layer's WGSL scoring options (modData's table in f32), trained by modDataGrad. */
function relativeScoring(c: Case, table: HostTensor) {
  const width = 2 * c.L - 1;
  const at = `h * ${width}u + i + ${c.L - 1}u - j`;
  return {
    scoreMod: `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + bias(${at}); }`,
    modData: { bias: Float32Array.from(table.data as Float64Array) },
    scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }',
    modDataGrad: `fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { bias_grad(${at}, ds); }`,
  };
}

/** d loss / d every element of `t`, by float64 central differences (step 1e-5, error ~1e-10). */
function numericGrad(c: Case, p: Problem, t: HostTensor): Float64Array {
  const data = t.data as Float64Array;
  const grad = new Float64Array(data.length);
  const h = 1e-5;
  for (let i = 0; i < data.length; i++) {
    const keep = data[i];
    data[i] = keep + h;
    const up = loss(c, p);
    data[i] = keep - h;
    const down = loss(c, p);
    data[i] = keep;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

const f32 = (t: HostTensor | undefined) => (t ? Float32Array.from(t.data as Float64Array) : undefined);
function cat(...parts: (ArrayLike<number> | undefined)[]): Float32Array | undefined {
  if (parts.some((p) => p === undefined)) return undefined;
  return Float32Array.from(parts.flatMap((p) => Array.from(p!)));
}

function makeLayer(c: Case, p: Problem): MultiHeadAttention {
  const mha = new MultiHeadAttention(ctx, {
    embedDim: c.E,
    numHeads: c.H,
    numKvHeads: c.Hkv,
    kdim: c.kdim,
    vdim: c.vdim,
    bias: c.bias,
    rope: c.rope,
    dropout: c.dropout?.p,
  });
  const w = p.weights;
  if (c.load === 'packed') {
    mha.loadPyTorch({
      in_proj_weight: cat(f32(w.q), f32(w.k), f32(w.v))!,
      in_proj_bias: cat(f32(w.qBias), f32(w.kBias), f32(w.vBias)),
      'out_proj.weight': f32(w.out)!,
      'out_proj.bias': f32(w.outBias),
    });
  } else {
    const packedBias = c.load === 'separateWeights';
    mha.loadSeparate({
      q_proj_weight: f32(w.q)!,
      k_proj_weight: f32(w.k)!,
      v_proj_weight: f32(w.v)!,
      in_proj_bias: packedBias ? cat(f32(w.qBias), f32(w.kBias), f32(w.vBias)) : undefined,
      q_proj_bias: packedBias ? undefined : f32(w.qBias),
      k_proj_bias: packedBias ? undefined : f32(w.kBias),
      v_proj_bias: packedBias ? undefined : f32(w.vBias),
      'out_proj.weight': f32(w.out)!,
      'out_proj.bias': f32(w.outBias),
    });
  }
  return mha;
}

/** The reference gradients under the layer's parameter names. */
function referenceGrads(c: Case, p: Problem): Map<string, Float64Array> {
  const g = Object.fromEntries(
    WEIGHT_NAMES.filter((n) => p.weights[n]).map((n) => [n, numericGrad(c, p, p.weights[n]!)]),
  ) as Record<WeightName, Float64Array>;
  const cat64 = (...parts: Float64Array[]) => Float64Array.from(parts.flatMap((a) => Array.from(a)));
  const out = new Map<string, Float64Array>();
  if (c.load === 'packed') out.set('in_proj_weight', cat64(g.q, g.k, g.v));
  else {
    out.set('q_proj_weight', g.q);
    out.set('k_proj_weight', g.k);
    out.set('v_proj_weight', g.v);
  }
  if (c.bias !== false) {
    if (c.load === 'separate') {
      out.set('q_proj_bias', g.qBias);
      out.set('k_proj_bias', g.kBias);
      out.set('v_proj_bias', g.vBias);
    } else out.set('in_proj_bias', cat64(g.qBias, g.kBias, g.vBias));
  }
  out.set('out_proj.weight', g.out);
  if (c.bias !== false) out.set('out_proj.bias', g.outBias);
  return out;
}

interface Run {
  mha: MultiHeadAttention;
  made: Tensor[];
  /** one train forward and backward; returns dx and dMemory read back */
  step(): Promise<{
    dx: ArrayLike<number>;
    dMemory?: ArrayLike<number>;
    dKey?: ArrayLike<number>;
    dValue?: ArrayLike<number>;
    dsinks?: ArrayLike<number>;
    dBias?: ArrayLike<number>;
  }>;
}

function gpuRun(c: Case, p: Problem): Run {
  const mha = makeLayer(c, p);
  const made: Tensor[] = [];
  const up = (h: HostTensor, dtype: 'f32' | 'bool' = 'f32') => {
    const data = dtype === 'bool' ? (h.data as Uint8Array) : Float32Array.from(h.data as Float64Array);
    const t = ctx.tensor(data, h.shape, { dtype });
    made.push(t);
    return t;
  };
  const x = up(p.x);
  const key = p.key && up(p.key);
  const value = p.value && (c.separate ? up(p.value) : key);
  const mask = p.mask && up(p.mask, c.additive ? 'f32' : 'bool');
  const dOutput = up({ data: p.dOutput, shape: [c.B, c.L, c.E] });
  const memory = key && (c.separate ? { key, value: value! } : key);
  return {
    mha,
    made,
    async step() {
      const { output } = await mha.forward(x, {
        memory,
        causal: c.causal,
        mask,
        train: true,
        dropoutSeed: c.dropout?.seed,
        ...c.scoring,
        ...(p.relativeBias ? relativeScoring(c, p.relativeBias) : {}),
      });
      output.destroy();
      const g = await mha.backward(dOutput);
      const dx = await g.dx.read();
      g.dx.destroy();
      const dsinks = g.dsinks && (await g.dsinks.read());
      g.dsinks?.destroy();
      const dBias = g.dModData && (await g.dModData.bias!.read());
      g.dModData?.bias?.destroy();
      if (!g.dMemory) return { dx, dsinks, dBias };
      if ('key' in g.dMemory) {
        const r = { dx, dsinks, dKey: await g.dMemory.key.read(), dValue: await g.dMemory.value.read() };
        g.dMemory.key.destroy();
        g.dMemory.value.destroy();
        return r;
      }
      const dMemory = await g.dMemory.read();
      g.dMemory.destroy();
      return { dx, dsinks, dMemory };
    },
  };
}

async function check(c: Case) {
  const p = problem(c);
  const label = JSON.stringify(c);
  const run = gpuRun(c, p);
  await checked(ctx, async () => {
    const got = await run.step();
    expectClose(got.dx, numericGrad(c, p, p.x), F32_TOL, `${label} dx`);
    if (c.S !== undefined) {
      if (c.separate) {
        expectClose(got.dKey!, numericGrad(c, p, p.key!), F32_TOL, `${label} dMemory.key`);
        expectClose(got.dValue!, numericGrad(c, p, p.value!), F32_TOL, `${label} dMemory.value`);
      } else {
        expect(got.dMemory, `${label} dMemory`).toBeDefined();
        expectClose(got.dMemory!, numericGrad(c, p, p.key!), F32_TOL, `${label} dMemory`);
      }
    } else expect(got.dMemory).toBeUndefined();
    expect(got.dsinks === undefined, `${label} dsinks`).toBe(p.sinks === undefined);
    if (p.sinks) expectClose(got.dsinks!, numericGrad(c, p, p.sinks), F32_TOL, `${label} dsinks`);
    expect(got.dBias === undefined, `${label} dModData`).toBe(p.relativeBias === undefined);
    if (p.relativeBias) {
      expectClose(got.dBias!, numericGrad(c, p, p.relativeBias), F32_TOL, `${label} dModData.bias`);
    }
    const ref = referenceGrads(c, p);
    expect([...run.mha.grads.keys()].sort()).toEqual([...ref.keys()].sort());
    expect([...run.mha.params.keys()].sort()).toEqual([...ref.keys()].sort());
    for (const [name, expected] of ref) {
      const g = run.mha.grads.get(name)!;
      expect(g.shape, name).toEqual(run.mha.params.get(name)!.shape);
      expectClose(await g.read(), expected, F32_TOL, `${label} grads '${name}'`);
    }
  });
  for (const t of run.made) t.destroy();
  run.mha.destroy();
}

describe('MultiHeadAttention.backward', () => {
  it('self-attention, causal, loaded from a PyTorch state dict', () =>
    check({ B: 2, L: 4, E: 8, H: 2, causal: true, load: 'packed' }));
  it('bool mask broadcast over heads, separate biases', () =>
    check({ B: 2, L: 5, E: 8, H: 2, mask: [2, 1, 5, 5], load: 'separate' }));
  it('additive mask with causal', () =>
    check({ B: 1, L: 4, E: 8, H: 2, causal: true, mask: [1, 2, 4, 4], additive: true, load: 'packed' }));
  it('grouped-query heads (in_proj_bias with separate weights)', () =>
    check({ B: 1, L: 5, E: 8, H: 4, Hkv: 2, causal: true, load: 'separateWeights' }));
  it('multi-query heads', () => check({ B: 2, L: 3, E: 8, H: 2, Hkv: 1, load: 'separate' }));
  it('RoPE half-split', () =>
    check({ B: 1, L: 5, E: 8, H: 2, causal: true, rope: { style: 'half' }, load: 'packed' }));
  it('RoPE interleaved with GQA and partial dims', () =>
    check({
      B: 2,
      L: 4,
      E: 16,
      H: 4,
      Hkv: 2,
      rope: { style: 'interleaved', dims: 2, base: 100 },
      load: 'separate',
    }));
  it('cross-attention over one memory tensor (dMemory sums the key and value paths)', () =>
    check({ B: 2, L: 3, S: 5, E: 8, H: 2, kdim: 6, vdim: 6, load: 'separateWeights' }));
  it('cross-attention with separate key and value', () =>
    check({
      B: 1,
      L: 4,
      S: 3,
      E: 8,
      H: 2,
      kdim: 5,
      vdim: 7,
      separate: true,
      causal: true,
      load: 'separate',
    }));
  it('sparse options: window, softcap, ALiBi and sinks (with dsinks), GQA', () =>
    check({
      B: 2,
      L: 5,
      E: 8,
      H: 2,
      Hkv: 1,
      causal: true,
      load: 'separate',
      scoring: { window: [2, 0], softcap: 2, alibiSlopes: [0.5, 0.25], sinks: [0.3, -0.4] },
    }));
  it('a relative-position bias read by scoreMod, trained through modDataGrad (dModData), GQA', () =>
    check({ B: 2, L: 5, E: 8, H: 2, Hkv: 1, causal: true, load: 'separate', relativeBias: true }));
  it('no bias', () => check({ B: 2, L: 4, E: 8, H: 2, causal: true, bias: false, load: 'packed' }));
  it('dropout on the attention probabilities (the backward regenerates the mask), GQA', () =>
    check({ B: 2, L: 5, E: 8, H: 4, Hkv: 2, causal: true, load: 'separate', dropout: { p: 0.3, seed: 42 } }));

  it('dropout: only train forwards drop; seeds 0, 1, ... unless dropoutSeed is given', async () => {
    const c: Case = { B: 1, L: 4, E: 8, H: 2, load: 'packed', dropout: { p: 0.5, seed: 0 } };
    const p = problem(c);
    const mha = makeLayer(c, p);
    const x = ctx.tensor(Float32Array.from(p.x.data as Float64Array), p.x.shape);
    const ref = (seed?: number) =>
      multiHeadAttentionCpu(p.x, p.weights, {
        numHeads: 2,
        dropout: seed === undefined ? undefined : { p: 0.5, seed },
      }).output.data;
    const runs: [{ train?: boolean; dropoutSeed?: number }, Float64Array][] = [
      [{ train: true }, ref(0)],
      [{ train: true }, ref(1)],
      [{}, ref()],
      [{ train: true, dropoutSeed: 0 }, ref(0)],
      [{ train: true }, ref(2)],
    ];
    await checked(ctx, async () => {
      for (const [n, [options, expected]] of runs.entries()) {
        const { output } = await mha.forward(x, options);
        expectClose(await output.read(), expected, F32_TOL, `forward ${n}`);
        output.destroy();
      }
    });
    expect(() => new MultiHeadAttention(ctx, { embedDim: 8, numHeads: 2, dropout: 1 })).toThrow(
      'MultiHeadAttention: dropout must be a number in [0, 1), received 1',
    );
    await expect(mha.forward(x, { train: true, dropoutSeed: -1 })).rejects.toThrow(
      'MultiHeadAttention.forward: dropoutSeed must be an integer in [0, 4294967295] (a u32), received -1',
    );
    x.destroy();
    mha.destroy();
  });

  it('gradients accumulate over backward calls until zeroGrad', async () => {
    const c: Case = { B: 1, L: 3, E: 8, H: 2, causal: true, load: 'packed', seed: 11 };
    const p = problem(c);
    const ref = referenceGrads(c, p);
    const run = gpuRun(c, p);
    const expectGrads = async (times: number) => {
      for (const [name, expected] of ref) {
        const scaled = expected.map((e) => e * times);
        expectClose(await run.mha.grads.get(name)!.read(), scaled, F32_TOL, `x${times} '${name}'`);
      }
    };
    await checked(ctx, async () => {
      await run.step();
      await run.step();
      await expectGrads(2);
      await run.mha.zeroGrad();
      await expectGrads(0);
      await run.step();
      await expectGrads(1);
    });
    for (const t of run.made) t.destroy();
    run.mha.destroy();
  });

  it('an AdamW step over params and grads changes the packed parameters the forward reads', async () => {
    const c: Case = { B: 1, L: 3, E: 8, H: 2, load: 'packed', seed: 12 };
    const p = problem(c);
    const run = gpuRun(c, p);
    await checked(ctx, async () => {
      await run.step();
      const names = [...run.mha.params.keys()];
      const opt = new AdamW(
        names.map((n) => run.mha.params.get(n)!),
        { lr: 0.01, weightDecay: 0 },
      );
      await opt.step(names.map((n) => run.mha.grads.get(n)));
      // the reference with the updated parameters (read back) gives the layer's new output
      const read = async (n: string) => Float64Array.from(await run.mha.params.get(n)!.read());
      const inW = await read('in_proj_weight');
      const inB = await read('in_proj_bias');
      const E = c.E;
      const w = p.weights;
      w.q = { data: inW.slice(0, E * E), shape: [E, E] };
      w.k = { data: inW.slice(E * E, 2 * E * E), shape: [E, E] };
      w.v = { data: inW.slice(2 * E * E), shape: [E, E] };
      w.qBias = { data: inB.slice(0, E), shape: [E] };
      w.kBias = { data: inB.slice(E, 2 * E), shape: [E] };
      w.vBias = { data: inB.slice(2 * E), shape: [E] };
      w.out = { data: await read('out_proj.weight'), shape: [E, E] };
      w.outBias = { data: await read('out_proj.bias'), shape: [E] };
      const ref = multiHeadAttentionCpu(p.x, w, { numHeads: c.H });
      const { output } = await run.mha.forward(run.made[0]);
      expectClose(await output.read(), ref.output.data, F32_TOL, 'output after the step');
      output.destroy();
      opt.destroy();
    });
    for (const t of run.made) t.destroy();
    run.mha.destroy();
  });

  it('steps inside ctx.scope keep the grads zeroGrad allocated outside; a new train forward replaces an unused one', async () => {
    const c: Case = { B: 1, L: 3, E: 8, H: 2, load: 'separate', seed: 13 };
    const p = problem(c);
    const ref = referenceGrads(c, p);
    const run = gpuRun(c, p);
    await checked(ctx, async () => {
      await run.mha.zeroGrad();
      let before = 0;
      for (let i = 0; i < 3; i++) {
        await ctx.scope(async () => {
          await run.mha.forward(run.made[0], { train: true }); // replaced by the next one
          await run.step();
        });
        if (i === 0) before = ctx.liveBytes;
      }
      expect(ctx.liveBytes, 'bytes after steps 2 and 3').toBe(before);
      for (const [name, expected] of ref) {
        expectClose(
          await run.mha.grads.get(name)!.read(),
          expected.map((e) => 3 * e),
          F32_TOL,
          name,
        );
      }
      // a forward that ran in a scope which has ended left nothing usable for backward
      await ctx.scope(async () => {
        (await run.mha.forward(run.made[0], { train: true })).output.destroy();
      });
      await expect(run.mha.backward(run.made.at(-1)!)).rejects.toThrow(
        /MultiHeadAttention\.backward: what the train forward kept was freed/,
      );
    });
    for (const t of run.made) t.destroy();
    run.mha.destroy();
  });

  it('errors name the argument', async () => {
    const c: Case = { B: 1, L: 3, E: 8, H: 2, load: 'separate' };
    const p = problem(c);
    const run = gpuRun(c, p);
    const [x] = run.made;
    const dOutput = run.made.at(-1)!;
    const { mha } = run;
    await expect(mha.backward(dOutput)).rejects.toThrow(
      /MultiHeadAttention\.backward: no train forward to go back through: call forward\(x, \{ train: true \}\) first/,
    );
    (await mha.forward(x, { train: true })).output.destroy();
    const wrong = ctx.zeros([1, 3, 4]);
    await expect(mha.backward(wrong)).rejects.toThrow(
      "MultiHeadAttention.backward: dOutput must be f32 [1, 3, 8] (the output's shape), received f32 [1, 3, 4]",
    );
    const half = ctx.zeros([1, 3, 8], 'f16');
    await expect(mha.backward(half)).rejects.toThrow(
      /dOutput must be f32 \[1, 3, 8\].*received f16 \[1, 3, 8\]/,
    );
    // refused inputs leave the forward's state for a correct call
    const g = await mha.backward(dOutput);
    g.dx.destroy();
    await expect(mha.backward(dOutput)).rejects.toThrow(/each backward consumes one train forward/);
    const cache = { length: 0, append: (k: Tensor, v: Tensor) => ({ k, v }) };
    await expect(mha.forward(x, { train: true, cache })).rejects.toThrow(
      'MultiHeadAttention.forward: train does not support a KV cache',
    );
    const f16 = new MultiHeadAttention(ctx, { embedDim: 8, numHeads: 2, dtype: 'f16' });
    f16.loadSeparate({
      q_proj_weight: new Float32Array(64),
      k_proj_weight: new Float32Array(64),
      v_proj_weight: new Float32Array(64),
      in_proj_bias: new Float32Array(24),
      'out_proj.weight': new Float32Array(64),
      'out_proj.bias': new Float32Array(8),
    });
    const x16 = ctx.zeros([1, 3, 8], 'f16');
    await expect(f16.forward(x16, { train: true })).rejects.toThrow(
      "MultiHeadAttention.forward: train needs an f32 layer (the gradients of linear are f32 only), received dtype 'f16'",
    );
    await expect(mha.forward(x, { train: 1 as unknown as boolean })).rejects.toThrow(
      'MultiHeadAttention.forward: train must be a boolean, received 1',
    );
    expect(() =>
      mha.loadSeparate({
        q_proj_weight: new Float32Array(64),
        k_proj_weight: new Float32Array(64),
        v_proj_weight: new Float32Array(64),
        in_proj_bias: new Float32Array(24),
        q_proj_bias: new Float32Array(8),
        'out_proj.weight': new Float32Array(64),
        'out_proj.bias': new Float32Array(8),
      }),
    ).toThrow('MultiHeadAttention.loadSeparate: received both in_proj_bias and q_proj_bias');
    for (const t of [wrong, half, x16, ...run.made]) t.destroy();
    f16.destroy();
    mha.destroy();
  });
});
