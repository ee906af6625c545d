// attentionBackward against the float64 reference backward (attentionBackwardCpu), in both kernel
// forms: edge shapes, causal, masks, GQA, f16, KV-cache views, a seeded fuzz, peak memory and
// error messages. The forward's output and lse come from the GPU forward, as in training.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  attention,
  attentionBackward,
  type Context,
  KVCache,
  planAttentionBackward,
  type Tensor,
} from '../src';
import { attentionBackwardCpu, type HostTensor } from '../src/reference';
import { type Case, caseInputs, inLayout, roundToF16, swapAxes12 } from './attention_cases';
import {
  checked,
  expectClose,
  F16_TOL,
  F32_TOL,
  formContexts,
  ownFuzzCase,
  randomArray,
  rng,
  testContext,
} from './helpers';

interface BackwardCase extends Case {
  /** read k and v through a KV cache of this capacity (views with row stride = capacity) */
  capacity?: number;
}

/**
 * Runs `c` forward and backward on `ctx` and through attentionBackwardCpu, compares dq, dk and dv
 * with the tolerance of the case's dtype (or `tol`), frees what it made; returns the kernel form.
 */
async function checkBackward(ctx: Context, c: BackwardCase, tol?: { atol: number; rtol: number }) {
  const inputs = caseInputs(c);
  const dtype = c.dtype ?? 'f32';
  const random = rng((c.seed ?? 1) + 1000);
  const dOData = randomArray(random, c.B * c.Hq * c.Lq * c.Dv);
  const dO: HostTensor = {
    data: dtype === 'f16' ? roundToF16(dOData) : dOData,
    shape: [c.B, c.Hq, c.Lq, c.Dv],
  };
  const ref = attentionBackwardCpu(inputs.q, inputs.k, inputs.v, dO, {
    causal: c.causal,
    scale: c.scale,
    mask: inputs.mask,
    dropout: c.dropout,
  });
  const made: Tensor[] = [];
  const up = (h: HostTensor, dt = h.dtype ?? dtype) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: dt });
    made.push(t);
    return t;
  };
  let cache: KVCache | undefined;
  const layout = c.layout ?? 'bhld';
  const kernel = await checked(ctx, async () => {
    const q = up(inLayout(inputs.q, layout));
    let k = up(inLayout(inputs.k, layout));
    let v = up(inLayout(inputs.v, layout));
    if (c.capacity) {
      cache = new KVCache(ctx, {
        batch: c.B,
        kvHeads: c.Hkv,
        headDim: c.D,
        valueDim: c.Dv,
        capacity: c.capacity,
        dtype,
        layout,
      });
      ({ k, v } = await cache.append(k, v));
    }
    const mask = inputs.mask ? up(inputs.mask) : undefined;
    const options = { causal: c.causal, scale: c.scale, mask, layout, dropout: c.dropout };
    const forward = await attention(q, k, v, { ...options, returnLse: true });
    made.push(forward.output, forward.lse!);
    const dOutput = up(inLayout(dO, layout));
    const backward = { ...options, lse: forward.lse! };
    const plan = planAttentionBackward(q, k, v, forward.output, dOutput, backward);
    const g = await attentionBackward(q, k, v, forward.output, dOutput, backward);
    made.push(g.dq, g.dk, g.dv);
    const label = JSON.stringify(c);
    const t = tol ?? (dtype === 'f16' ? F16_TOL : F32_TOL);
    for (const name of ['dq', 'dk', 'dv'] as const) {
      expect(g[name].dtype, `${label} ${name} dtype`).toBe(dtype);
      const read = await g[name].read();
      const grad = layout === 'blhd' ? swapAxes12(read, g[name].shape) : read;
      expectClose(grad, ref[name].data, t, `${label} ${name}`);
    }
    return plan.path === 'empty' ? 'empty' : plan.kernel;
  });
  for (const t of made) t.destroy();
  cache?.destroy();
  return kernel;
}

// Head dims of the fuzz's (4, 4): the named cases, the fuzz and the memory spec share one context
// per form, so each kernel variant (a pipeline SwiftShader takes seconds to compile) compiles once.
const base = { B: 1, Hq: 2, Hkv: 2, Lq: 16, Lk: 16, D: 4, Dv: 4 };
/** The forms with a backward of their own. */
type Form = Extract<AttentionKernel, 'workgroup' | 'registers'>;
const contexts = formContexts<Form>(['workgroup', 'registers']);

describe.each<Form>(['workgroup', 'registers'])('%s kernel', (form) => {
  /** One case; checks that it ran the context's form (registers needs D, Dv multiples of 4). */
  const check = async (c: BackwardCase, tol?: { atol: number; rtol: number }) => {
    const kernel = await checkBackward(contexts[form], c, tol);
    expect(kernel).toBe(c.D % 4 === 0 && c.Dv % 4 === 0 ? form : 'workgroup');
  };

  describe('gradients match the float64 reference', () => {
    it('size 1 everywhere', () => check({ B: 1, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, D: 1, Dv: 1 }));
    it('size 1 with head dim 4', () => check({ B: 1, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, D: 4, Dv: 4 }));
    it('odd sizes, Dv != D, cross-attention', () =>
      check({ B: 3, Hq: 3, Hkv: 3, Lq: 7, Lk: 13, D: 5, Dv: 3 }));
    it('tiles not filled: Lq, Lk not multiples of 4', () =>
      check({ ...base, Lq: 11, Lk: 33, D: 16, Dv: 12 }));
    it('longer than a workgroup, both ways', () => check({ ...base, Lq: 130, Lk: 70, D: 12, Dv: 20 }));
    it('more keys than a workgroup', () => check({ ...base, Hq: 1, Hkv: 1, Lq: 9, Lk: 150 }));
    it('scale option', () => check({ ...base, scale: 0.37 }));
    it('negative scale, causal', () => check({ ...base, Lq: 13, Lk: 19, causal: true, scale: -0.6 }));
    it('GQA: 6 query heads on 2 kv heads', () => check({ ...base, Hq: 6, Hkv: 2, Lq: 9, Lk: 11 }));
    it('MQA: 4 query heads on 1 kv head, batch 2', () => check({ ...base, B: 2, Hq: 4, Hkv: 1 }));
    it('head dim 64', () => check({ ...base, Lq: 40, Lk: 75, D: 64, Dv: 64 }));
    it('head dim 128 with Dv 96', () => check({ ...base, Hq: 1, Hkv: 1, Lq: 20, Lk: 45, D: 128, Dv: 96 }));
    it('head dim 256', () => check({ ...base, Hq: 1, Hkv: 1, Lq: 9, Lk: 21, D: 256, Dv: 256 }));
    // Logits about 1e3 (q, k in [-30, 30], D 4, scale 1): P = exp(s - lse) carries the f32
    // rounding of s and lse (about 1e3 * 6e-8 each) as a relative error, and dq, dk scale with
    // |k|, |q| ~ 30: gradients of order 30 are compared at 1e-3 relative.
    it('large logits (about 1e3)', () =>
      check({ ...base, D: 4, Dv: 4, magnitude: 30, scale: 1 }, { atol: 1e-3, rtol: 1e-3 }));
  });

  describe('causal (bottom-right aligned)', () => {
    it('Lq == Lk', () => check({ ...base, Lq: 37, Lk: 37, causal: true }));
    it('Lq < Lk (KV-cache decoding)', () => check({ ...base, Lq: 5, Lk: 40, causal: true }));
    it('Lq > Lk: the first rows attend nothing (zero gradients)', () =>
      check({ ...base, Lq: 20, Lk: 6, causal: true }));
    it('one query', () => check({ ...base, Lq: 1, Lk: 77, causal: true }));
    it('long causal, several blocks and tiles', () =>
      check({ ...base, Hq: 1, Hkv: 1, Lq: 150, Lk: 150, causal: true }));
    it('causal with GQA and a mask', () =>
      check({
        ...base,
        Hq: 4,
        Hkv: 2,
        Lq: 12,
        Lk: 19,
        causal: true,
        mask: { kind: 'bool', shape: [1, 1, 12, 19] },
      }));
  });

  describe('masks', () => {
    it('bool mask, full shape', () =>
      check({ ...base, B: 2, mask: { kind: 'bool', shape: [2, 2, 16, 16] } }));
    it('bool mask [Lk] (key padding) broadcast', () =>
      check({ ...base, Lk: 35, mask: { kind: 'bool', shape: [35] } }));
    it('bool mask [B, 1, 1, Lk] broadcast', () =>
      check({ ...base, B: 3, Lk: 10, mask: { kind: 'bool', shape: [3, 1, 1, 10], pTrue: 0.5 } }));
    it('bool mask [Hq, Lq, Lk] broadcast over batch', () =>
      check({ ...base, B: 2, Lq: 5, Lk: 9, mask: { kind: 'bool', shape: [2, 5, 9] } }));
    it('bool mask that empties rows and whole tiles', () =>
      check({ ...base, Lq: 70, Lk: 100, mask: { kind: 'bool', shape: [70, 100], pTrue: 0.02 } }));
    it('bool mask that empties everything', () =>
      check({ ...base, mask: { kind: 'bool', shape: [1], pTrue: 0 } }));
    it('additive mask with -Infinity entries', () =>
      check({ ...base, Lq: 9, Lk: 40, mask: { kind: 'additive', shape: [1, 2, 9, 40] } }));
    it('additive mask [Lq, Lk] broadcast, mostly -Infinity', () =>
      check({ ...base, Lq: 33, Lk: 66, mask: { kind: 'additive', shape: [33, 66], pTrue: 0.05 } }));
  });

  describe('f16 storage, f32 accumulation', () => {
    it('GQA, causal, Dv != D', () =>
      check({ ...base, dtype: 'f16', Hq: 4, Hkv: 2, Lq: 21, Lk: 30, D: 16, Dv: 8, causal: true }));
    it('odd head dims (halves sharing words across rows)', () =>
      check({ ...base, dtype: 'f16', Lq: 7, Lk: 9, D: 5, Dv: 3 }));
    it('head dim 64 with an additive mask', () =>
      check({
        ...base,
        dtype: 'f16',
        Lq: 19,
        Lk: 33,
        D: 64,
        Dv: 64,
        mask: { kind: 'additive', shape: [19, 33] },
      }));
  });

  describe('dropout: the backward regenerates the forward mask', () => {
    // f32 with a bool mask throughout: one kernel variant to compile per form (f16 and the other
    // mask kinds only change the scoring and storage code that dropout does not touch)
    const dropout = { p: 0.3, seed: 2026 };
    it('causal, GQA, bool mask; Lq, Lk not multiples of 4', () =>
      check({
        ...base,
        Hq: 4,
        Hkv: 2,
        Lq: 13,
        Lk: 22,
        causal: true,
        mask: { kind: 'bool', shape: [13, 22] },
        dropout,
      }));
    it('longer than a workgroup both ways, p = 0.8, key padding, batch 2', () =>
      check({
        ...base,
        B: 2,
        Hq: 1,
        Hkv: 1,
        Lq: 70,
        Lk: 67,
        mask: { kind: 'bool', shape: [2, 1, 1, 67] },
        dropout: { p: 0.8, seed: 5 },
      }));
    it('causal, Lq > Lk (empty rows), odd head dims', () =>
      check({ ...base, Lq: 9, Lk: 5, D: 5, Dv: 3, causal: true, dropout }));
    it('MQA, KV-cache views', () =>
      check({
        ...base,
        Hq: 3,
        Hkv: 1,
        Lq: 6,
        Lk: 11,
        capacity: 14,
        mask: { kind: 'bool', shape: [6, 11] },
        dropout,
      }));
  });

  describe('k and v as KV-cache views (row stride = capacity)', () => {
    it('f32, GQA, causal', () =>
      check({ ...base, Hq: 4, Hkv: 2, Lq: 6, Lk: 13, causal: true, capacity: 20 }));
    it('f16, odd head dims', () =>
      check({ ...base, dtype: 'f16', Lq: 5, Lk: 9, D: 6, Dv: 10, capacity: 16 }));
  });

  // one set of row strides for both f32 cases (each is a pipeline to compile)
  describe("layout 'blhd': inputs, output, dOutput and gradients [B, L, H, D]", () => {
    const gqa = { B: 2, Hq: 4, Hkv: 2, D: 8, Dv: 12, causal: true, layout: 'blhd' } as const;
    it('GQA, causal, Dv != D, batch 2', () => check({ ...gqa, Lq: 9, Lk: 14 }));
    it('k and v as KV-cache views', () => check({ ...gqa, Lq: 6, Lk: 13, capacity: 20 }));
    it('f16, odd head dims', () =>
      check({ ...base, dtype: 'f16', Hq: 3, Hkv: 3, Lq: 7, Lk: 9, D: 5, Dv: 3, layout: 'blhd' }));
  });
});

describe('fuzz: 200 random configurations (seed 20261125), both forms, split between the projects', () => {
  const config = fc.record({
    registers: fc.boolean(),
    B: fc.integer({ min: 1, max: 2 }),
    Hkv: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 3 }),
    Lq: fc.integer({ min: 1, max: 40 }),
    Lk: fc.integer({ min: 1, max: 40 }),
    // head dims of one chunk keep the number of pipelines (compile time) bounded; larger and odd
    // head dims are the named cases above
    D: fc.constantFrom<number>(3, 4),
    Dv: fc.constantFrom<number>(2, 4),
    dtype: fc.constantFrom<'f32' | 'f16'>('f32', 'f16'),
    causal: fc.boolean(),
    maskKind: fc.constantFrom('none', 'bool', 'additive'),
    maskDims: fc.integer({ min: 1, max: 4 }),
    broadcast: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    scale: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
    seed: fc.integer({ min: 1, max: 1e6 }),
  });

  it('gradients match the reference for every shape, dtype and option', { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(config, async (r) => {
        if (!ownFuzzCase(r.seed)) return;
        const Hq = r.Hkv * r.group;
        const full = [r.B, Hq, r.Lq, r.Lk];
        const shape = full.slice(4 - r.maskDims).map((d, i) => (r.broadcast[i] ? 1 : d));
        await checkBackward(contexts[r.registers ? 'registers' : 'workgroup'], {
          B: r.B,
          Hq,
          Hkv: r.Hkv,
          Lq: r.Lq,
          Lk: r.Lk,
          D: r.D,
          Dv: r.Dv,
          dtype: r.dtype,
          causal: r.causal,
          scale: r.scale,
          seed: r.seed,
          mask: r.maskKind === 'none' ? undefined : { kind: r.maskKind as 'bool' | 'additive', shape },
          // layout and dropout in the workgroup form's cases, without changing the others: there
          // they add no pipelines (row strides are uniforms), while each registers pipeline costs
          // SwiftShader seconds to compile; the named cases above run both in both forms.
          // blhd: an eighth of those cases
          layout: !r.registers && r.seed % 8 === 0 ? 'blhd' : 'bhld',
          // dropout (p from 0 to 0.8): half the f32 cases of one head-dim pair
          dropout:
            !r.registers && r.D === 4 && r.Dv === 4 && r.dtype === 'f32' && r.seed % 2 === 0
              ? { p: (r.seed % 9) / 10, seed: r.seed }
              : undefined,
        });
      }),
      { seed: 20261125, numRuns: 200 },
    );
  });
});

describe('memory', () => {
  it.each<Form>(['workgroup', 'registers'])('%s: no L x L buffer is allocated', async (form) => {
    const ctx = contexts[form];
    const made: Tensor[] = [];
    try {
      const L = 512;
      const random = rng(5);
      const t = (shape: number[]) => {
        const size = shape.reduce((a, b) => a * b, 1);
        made.push(ctx.tensor(randomArray(random, size), shape));
        return made[made.length - 1];
      };
      const [q, k, v, dOutput] = [t([1, 1, L, 4]), t([1, 1, L, 4]), t([1, 1, L, 4]), t([1, 1, L, 4])];
      const { output, lse } = await attention(q, k, v, { causal: true, returnLse: true });
      made.push(output, lse!);
      ctx.resetPeak();
      const before = ctx.liveBytes;
      const g = await checked(ctx, () =>
        attentionBackward(q, k, v, output, dOutput, { causal: true, lse: lse! }),
      );
      const peak = ctx.peakBytes - before;
      for (const t of [g.dq, g.dk, g.dv]) t.destroy();
      // dq, dk, dv (3 x L x 4 floats) and the row stats (L x 2 floats): 28 KiB, where one L x L
      // f32 matrix would be 1 MiB; an eighth of that leaves room for the uniform buffer.
      expect(peak).toBeGreaterThanOrEqual(3 * L * 4 * 4 + L * 8);
      expect(peak).toBeLessThan((L * L * 4) / 8);
    } finally {
      for (const t of made) t.destroy();
    }
  });
});

describe('bad input throws an error naming the argument', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());
  const t = (shape: number[], dtype: 'f32' | 'f16' = 'f32') =>
    ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  const qkv = () => [t([1, 2, 4, 8]), t([1, 2, 5, 8]), t([1, 2, 5, 6])] as const;

  it('dOutput of the wrong shape', async () => {
    const [q, k, v] = qkv();
    await expect(
      attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 8]), { lse: t([1, 2, 4]) }),
    ).rejects.toThrow(
      "attentionBackward: dOutput must have shape [1, 2, 4, 6] (the forward's output), received [1, 2, 4, 8]",
    );
  });
  it('output of the wrong shape', async () => {
    const [q, k, v] = qkv();
    await expect(
      attentionBackward(q, k, v, t([1, 2, 6]), t([1, 2, 4, 6]), { lse: t([1, 2, 4]) }),
    ).rejects.toThrow(
      "attentionBackward: output must have shape [1, 2, 4, 6] (the forward's output), received [1, 2, 6]",
    );
  });
  it("layout 'blhd': output and dOutput [B, Lq, Hq, Dv]", async () => {
    // q [B 1, Lq 4, Hq 2, D 8], k and v [1, Lk 5, Hkv 2, ..]: an output in the bhld shape is refused
    const [q, k, v] = [t([1, 4, 2, 8]), t([1, 5, 2, 8]), t([1, 5, 2, 6])];
    const options = { lse: t([1, 2, 4]), layout: 'blhd' } as const;
    await expect(attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 4, 2, 6]), options)).rejects.toThrow(
      "attentionBackward: output must have shape [1, 4, 2, 6] (the forward's output, layout 'blhd'), received [1, 2, 4, 6]",
    );
  });
  it('a strided q (a wrapped packed QKV buffer) is refused: dq is written through its strides', async () => {
    const buffer = ctx.device.createBuffer({ size: 3 * 32 * 4, usage: GPUBufferUsage.STORAGE });
    const q = ctx.wrap(buffer, [1, 4, 1, 8], { strides: [96, 24, 8, 1] });
    const [k, v] = [t([1, 4, 1, 8]), t([1, 4, 1, 8])];
    const options = { lse: t([1, 1, 4]), layout: 'blhd' } as const;
    await expect(attentionBackward(q, k, v, t([1, 4, 1, 8]), t([1, 4, 1, 8]), options)).rejects.toThrow(
      'attentionBackward: q: expected a contiguous tensor, received a view [1, 4, 1, 8] with strides [96, 24, 8, 1]',
    );
    buffer.destroy();
  });
  it('missing lse', async () => {
    const [q, k, v] = qkv();
    const options = {} as unknown as Parameters<typeof attentionBackward>[5];
    await expect(attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), options)).rejects.toThrow(
      "attentionBackward: options.lse is required: the forward's log-sum-exp [1, 2, 4] from attention(..., { returnLse: true }), received undefined",
    );
  });
  it('lse of the wrong shape', async () => {
    const [q, k, v] = qkv();
    await expect(
      attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), { lse: t([2, 4]) }),
    ).rejects.toThrow('attentionBackward: options.lse must have shape [1, 2, 4], received [2, 4]');
  });
  it('dOutput dtype differs from q', async () => {
    const [q, k, v] = qkv();
    await expect(
      attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6], 'f16'), { lse: t([1, 2, 4]) }),
    ).rejects.toThrow("attentionBackward: dOutput must have dtype 'f32' like q, received 'f16'");
  });
  it('lse that is not f32', async () => {
    const [q, k, v] = qkv();
    await expect(
      attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), { lse: t([1, 2, 4], 'f16') }),
    ).rejects.toThrow("attentionBackward: options.lse must have dtype 'f32', received 'f16'");
  });
  it("the forward's checks, named as the backward's", async () => {
    const [q, , v] = qkv();
    await expect(
      attentionBackward(q, t([1, 2, 5, 7]), v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), { lse: t([1, 2, 4]) }),
    ).rejects.toThrow('attentionBackward: k head dim must equal q head dim 8, received k shape [1, 2, 5, 7]');
  });
  it('forward-only options', async () => {
    const [q, k, v] = qkv();
    const options = { lse: t([1, 2, 4]), returnLse: true } as unknown as Parameters<
      typeof attentionBackward
    >[5];
    await expect(attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), options)).rejects.toThrow(
      'attentionBackward: options.returnLse is an option of the forward only (the backward returns dq, dk, dv), received true',
    );
    // absent as undefined (a spread of the forward's options): accepted
    const spread = { lse: t([1, 2, 4]), returnLse: undefined } as unknown as Parameters<
      typeof attentionBackward
    >[5];
    const g = await attentionBackward(q, k, v, t([1, 2, 4, 6]), t([1, 2, 4, 6]), spread);
    for (const x of [g.dq, g.dk, g.dv]) x.destroy();
  });
  it('a row against a key larger than maxStorageBufferBindingSize (smaller calls split)', async () => {
    const small = await testContext({ limits: { maxStorageBufferBindingSize: 1024 } });
    try {
      const s = (shape: number[]) => small.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
      const [q, k, v] = [s([1, 1, 4, 256]), s([1, 1, 4, 256]), s([1, 1, 4, 256])];
      await expect(
        attentionBackward(q, k, v, s([1, 1, 4, 256]), s([1, 1, 4, 256]), { lse: s([1, 1, 4]) }),
      ).rejects.toThrow(
        'attentionBackward: one query row against one key needs more than maxStorageBufferBindingSize (1024 bytes) for q [4, 256], k [4, 256], v [4, 256]',
      );
    } finally {
      small.destroy();
    }
  });
});
