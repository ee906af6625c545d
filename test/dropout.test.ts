// Dropout on the attention probabilities: the GPU forward against the float64 reference with the
// same keep decisions (both kernel forms, the decode kernel, KV-cache views, calls split over heads
// and blocks), determinism, p = 0, the statistics of the mask and the errors. One wrong keep
// decision moves an output by about P·v / (1 - p), far outside the f32 tolerance, so these
// comparisons also check that the GPU hash equals the reference's bit for bit. The backward is in
// attention_backward.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  type AttentionOptions,
  attention,
  attentionBackward,
  type Context,
  KVCache,
  type Tensor,
} from '../src';
import { decodeAttention } from '../src/ops/attention';
import { attentionCpu } from '../src/reference';
import { type Case, caseInputs, checkCase, kernelOf } from './attention_cases';
import { checked, expectClose, F32_TOL, formContexts, randomArray, rng, testContext } from './helpers';

const dropout = { p: 0.3, seed: 77 };
const base = { B: 1, Hq: 2, Hkv: 2, Lq: 16, Lk: 16, D: 8, Dv: 8, dropout };

// One context per form for the whole file: each kernel variant (a pipeline SwiftShader takes
// seconds to compile) compiles once.
type Form = Extract<AttentionKernel, 'workgroup' | 'registers'>;
const contexts = formContexts<Form>(['workgroup', 'registers']);

describe.each<Form>(['workgroup', 'registers'])('%s form: equals the reference', (form) => {
  let ctx: Context;
  beforeAll(() => {
    ctx = contexts[form];
  });

  it('flash: causal, GQA, bool mask, Lq and Lk not multiples of 4', async () => {
    const c: Case = {
      ...base,
      Hq: 4,
      Hkv: 2,
      Lq: 13,
      Lk: 21,
      causal: true,
      mask: { kind: 'bool', shape: [13, 21] },
    };
    const plan = await checkCase(ctx, attention, c);
    expect([plan.path, kernelOf(plan)]).toEqual(['flash', form]);
  });
  it('flash: more rows than a workgroup, batch 2, p = 0.9, a large seed', () =>
    checkCase(ctx, attention, { ...base, B: 2, Lq: 70, Lk: 37, dropout: { p: 0.9, seed: 0xfffffffe } }));
  it('flash: f16 storage, additive mask, Dv != D', () =>
    checkCase(ctx, attention, {
      ...base,
      dtype: 'f16',
      Lq: 9,
      Lk: 30,
      Dv: 4,
      mask: { kind: 'additive', shape: [9, 30] },
    }));
  it('decode (one query, several chunks), GQA', async () => {
    const plan = await checkCase(ctx, attention, { ...base, Hq: 4, Hkv: 2, Lq: 1, Lk: 300 });
    expect([plan.path, kernelOf(plan)]).toEqual(['decode', form]);
  });
  it('decode kernel on several rows, causal, bool mask', () =>
    checkCase(ctx, decodeAttention, {
      ...base,
      Lq: 5,
      Lk: 150,
      causal: true,
      mask: { kind: 'bool', shape: [1, 1, 5, 150] },
    }));
  it('k and v as KV-cache views (row stride = capacity): flash and decode', async () => {
    for (const Lq of [6, 1]) {
      const c = { ...base, Hq: 4, Lq, Lk: 20, causal: true };
      const inputs = caseInputs(c);
      const ref = attentionCpu(inputs.q, inputs.k, inputs.v, { causal: true, dropout });
      const cache = new KVCache(ctx, { batch: 1, kvHeads: 2, headDim: 8, capacity: 29 });
      const made: Tensor[] = [];
      const up = (h: { data: unknown; shape: readonly number[] }) => {
        const t = ctx.tensor(h.data as Float32Array, [...h.shape]);
        made.push(t);
        return t;
      };
      await checked(ctx, async () => {
        const { k, v } = await cache.append(up(inputs.k), up(inputs.v));
        const { output } = await attention(up(inputs.q), k, v, { causal: true, dropout });
        made.push(output);
        expectClose(await output.read(), ref.output.data, F32_TOL, `cache view, Lq ${Lq}`);
      });
      for (const t of made) t.destroy();
      cache.destroy();
    }
  });
});

// The tiled form is a flash kernel only (its calls decode with the workgroup form's pass).
describe('tiled form: flash equals the reference', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext({ attentionKernel: 'tiled' });
  });
  afterAll(() => ctx?.destroy());

  it('causal, GQA, bool mask, Dv over 32, keys split in two (merged by log-sum-exp)', async () => {
    const c: Case = {
      ...base,
      Hq: 4,
      Hkv: 2,
      Lq: 13,
      Lk: 530,
      Dv: 36,
      causal: true,
      mask: { kind: 'bool', shape: [13, 530] },
    };
    const plan = await checkCase(ctx, attention, c);
    expect([plan.path, kernelOf(plan), plan.path === 'flash' && plan.keySplits]).toEqual([
      'flash',
      'tiled',
      2,
    ]);
  });
  it('more rows than a workgroup, batch 2, p = 0.9, a large seed, f16', () =>
    checkCase(ctx, attention, {
      ...base,
      B: 2,
      Lq: 70,
      Lk: 37,
      dtype: 'f16',
      dropout: { p: 0.9, seed: 0xfffffffe },
    }));
});

describe('calls split to fit a binding drop what one call drops', () => {
  let small: Context;
  beforeAll(async () => {
    small = await testContext({ limits: { maxStorageBufferBindingSize: 4096 } });
  });
  afterAll(() => small?.destroy());

  it('over groups of heads (batch 2, GQA, causal)', async () => {
    const plan = await checkCase(small, attention, {
      ...base,
      B: 2,
      Hq: 6,
      Hkv: 3,
      Lq: 20,
      Lk: 40,
      causal: true,
    });
    expect(plan.path).toBe('heads');
  });
  it('one head in query blocks x key chunks, and few rows through the decode kernel', async () => {
    const blocks = await checkCase(small, attention, {
      ...base,
      Hq: 1,
      Hkv: 1,
      Lq: 128,
      Lk: 128,
      D: 16,
      Dv: 16,
    });
    expect(blocks.path).toBe('blocks');
    const decode = await checkCase(small, attention, { ...base, Hq: 1, Hkv: 1, Lq: 2, Lk: 600, Dv: 4 });
    expect(decode.path).toBe('blocks');
  });
});

describe('the mask', () => {
  let ctx: Context;
  let registers: Context;
  beforeAll(() => {
    ({ workgroup: ctx, registers } = contexts);
  });

  /** The output of `attention` on seeded inputs of `shape` [B, H, L, D] with `options`. */
  const run = async (on: Context, shape: number[], options: AttentionOptions, vOffset = 0) => {
    const random = rng(3);
    const n = shape.reduce((a, b) => a * b, 1);
    const [q, k] = [on.tensor(randomArray(random, n), shape), on.tensor(randomArray(random, n), shape)];
    const v = on.tensor(
      randomArray(random, n).map((x) => x + vOffset),
      shape,
    );
    const r = await checked(on, () => attention(q, k, v, options));
    const out = await r.output.read();
    for (const t of [q, k, v, r.output, r.lse, r.weights]) t?.destroy();
    return out;
  };

  it('same seed, same output; another seed, another output (both forms)', async () => {
    for (const on of [ctx, registers]) {
      const a = await run(on, [1, 2, 12, 8], { causal: true, dropout });
      const b = await run(on, [1, 2, 12, 8], { causal: true, dropout });
      const c = await run(on, [1, 2, 12, 8], { causal: true, dropout: { ...dropout, seed: 78 } });
      expect(Array.from(a)).toEqual(Array.from(b));
      expect(Array.from(a)).not.toEqual(Array.from(c));
    }
  });

  it('p = 0 is no dropout, bit for bit (both forms, flash and decode)', async () => {
    for (const on of [ctx, registers]) {
      for (const shape of [
        [1, 2, 12, 8],
        [1, 2, 1, 8],
      ]) {
        const plain = await run(on, shape, { causal: true });
        const p0 = await run(on, shape, { causal: true, dropout: { p: 0, seed: 5 } });
        expect(Array.from(p0)).toEqual(Array.from(plain));
      }
    }
  });

  it('the kept fraction of the weights is about 1 - p', async () => {
    // 2 x 32 x 32 = 2048 weights, each kept with probability 0.6: the kept fraction has standard
    // deviation sqrt(0.6 · 0.4 / 2048) ≈ 0.011; 0.05 is over 4.5 of them (and the inputs are
    // seeded, so the check is deterministic), while p and 1 - p swapped (0.4) is 18 away.
    const random = rng(9);
    const shape = [1, 2, 32, 8];
    const t = () => ctx.tensor(randomArray(random, 2 * 32 * 8), shape);
    const [q, k, v] = [t(), t(), t()];
    const r = await checked(ctx, () =>
      attention(q, k, v, { returnWeights: true, dropout: { p: 0.4, seed: 1 } }),
    );
    const w = await r.weights.read();
    const kept = w.filter((x) => x > 0).length / w.length;
    expect(Math.abs(kept - 0.6)).toBeLessThan(0.05);
    for (const x of [q, k, v, r.output, r.weights]) x.destroy();
  });

  it('the mean over many masks approaches the dense output', async () => {
    // 16 batch copies of the same q, k, v, under 4 seeds: 64 independent masks per output element
    // (b is part of the hash). Each output o = Σ_j P_j Z_j v_j is unbiased (E Z_j = 1) with
    // variance p/(1-p) Σ_j P_j² v_j²; the test allows 6 standard deviations of the mean of 64
    // (inputs are seeded: deterministic), plus the f32 tolerance. v in [0.5, 1.5] makes the dense
    // output about 1, so a missing 1 / (1 - p) (p = 0.5: a mean of half the dense output) misses
    // the bound by several times.
    const p = 0.5;
    const [B, H, L, D] = [16, 1, 16, 4];
    const random = rng(11);
    const one = (n: number, offset = 0) => randomArray(random, n).map((x) => x + offset);
    const [q1, k1, v1] = [one(H * L * D), one(H * L * D), one(H * L * D, 1)];
    const copies = (x: Float32Array) => {
      const out = new Float32Array(B * x.length);
      for (let b = 0; b < B; b++) out.set(x, b * x.length);
      return out;
    };
    const shape = [B, H, L, D];
    const [q, k, v] = [q1, k1, v1].map((x) => ctx.tensor(copies(x), shape));
    const dense = attentionCpu(
      { data: q1, shape: [1, H, L, D] },
      { data: k1, shape: [1, H, L, D] },
      { data: v1, shape: [1, H, L, D] },
    );
    const seeds = [1, 2, 3, 4];
    const mean = new Float64Array(H * L * D);
    for (const seed of seeds) {
      const r = await checked(ctx, () => attention(q, k, v, { dropout: { p, seed } }));
      const out = await r.output.read();
      r.output.destroy();
      for (let n = 0; n < out.length; n++) mean[n % mean.length] += out[n] / (B * seeds.length);
    }
    const P = dense.weights.data;
    for (let i = 0; i < L; i++) {
      for (let d = 0; d < D; d++) {
        let variance = 0;
        for (let j = 0; j < L; j++) variance += (p / (1 - p)) * (P[i * L + j] * v1[j * D + d]) ** 2;
        const bound = 6 * Math.sqrt(variance / (B * seeds.length)) + 1e-4;
        const ref = dense.output.data[i * D + d];
        expect(
          Math.abs(mean[i * D + d] - ref),
          `row ${i}, dim ${d}: mean ${mean[i * D + d]}, dense ${ref}`,
        ).toBeLessThan(bound);
        expect(bound).toBeLessThan(ref / 2);
      }
    }
    for (const x of [q, k, v]) x.destroy();
  });

  it('returnWeights gives the weights after dropout, as the reference', () =>
    checkCase(ctx, attention, { ...base, Lq: 7, Lk: 19, causal: true }, { lse: true, weights: true }));
});

describe('bad dropout options throw an error naming them', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  // NAME: options.dropout for the ops, dropout for the reference
  const bad: [unknown, string][] = [
    [{ p: 1, seed: 0 }, 'NAME.p must be a number in [0, 1), received 1'],
    [{ p: -0.1, seed: 0 }, 'NAME.p must be a number in [0, 1), received -0.1'],
    [{ p: Number.NaN, seed: 0 }, 'NAME.p must be a number in [0, 1), received NaN'],
    [{ p: '0.1', seed: 0 }, 'NAME.p must be a number in [0, 1), received 0.1'],
    [{ p: 0.1, seed: 1.5 }, 'NAME.seed must be an integer in [0, 4294967295] (a u32), received 1.5'],
    [{ p: 0.1, seed: -1 }, 'NAME.seed must be an integer in [0, 4294967295] (a u32), received -1'],
    [
      { p: 0.1, seed: 2 ** 32 },
      'NAME.seed must be an integer in [0, 4294967295] (a u32), received 4294967296',
    ],
    [{ p: 0.1 }, 'NAME.seed must be an integer in [0, 4294967295] (a u32), received undefined'],
    [{ p: 0.1, seed: 1, rate: 2 }, "unknown option 'NAME.rate', expected one of p, seed"],
    [0.1, 'NAME must be an object { p, seed }, received 0.1'],
  ];

  it('attention, attentionBackward and the reference', async () => {
    const x = ctx.tensor(new Float32Array(16), [1, 1, 4, 4]);
    const lse = ctx.tensor(new Float32Array(4), [1, 1, 4]);
    const h = { data: new Float64Array(16), shape: [1, 1, 4, 4] };
    for (const [value, message] of bad) {
      const options = { dropout: value } as AttentionOptions;
      const ops = message.replace('NAME', 'options.dropout');
      await expect(attention(x, x, x, options)).rejects.toThrow(`attention: ${ops}`);
      await expect(attentionBackward(x, x, x, x, x, { ...options, lse })).rejects.toThrow(
        `attentionBackward: ${ops}`,
      );
      expect(() => attentionCpu(h, h, h, options as never)).toThrow(
        `attentionCpu: ${message.replace('NAME', 'dropout')}`,
      );
    }
    x.destroy();
    lse.destroy();
  });
});
