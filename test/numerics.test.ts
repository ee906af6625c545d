// Numerics at the edges: very large logits, infinities in masks, empty rows, and NaN or Infinity
// in the inputs, which must make exactly the affected rows non-finite.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, type Context } from '../src';
import { corePlan, denseStrides, type FlashPlan } from '../src/ops/attention_plan';
import { recordCore } from '../src/ops/attention_split';
import { Recording } from '../src/program';
import { attentionCpu } from '../src/reference';
import { type Case, caseInputs, checkCase } from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
// the GPU flash form, which keeps P and V in workgroup memory (any adapter)
let tiled: Context;
beforeAll(async () => {
  ctx = await testContext();
  tiled = await testContext({ attentionKernel: 'tiled' });
});
afterAll(() => {
  ctx?.destroy();
  tiled?.destroy();
});

const base = { B: 1, Hq: 2, Hkv: 2, D: 4, Dv: 4 };

// The tiled form's f16 products (shader-f16: f16 tiles, four-term dot products and P v in f16,
// sums in f32) have their rounding emulated in f32 on any adapter: the same kernel code then runs
// against the float64 reference at the f16 tolerance, at the largest head dim.
describe('tiled form, f16 products (rounding emulated in f32)', () => {
  const check = async (c: Case) => {
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v, { causal: c.causal });
    const shape = { B: c.B, Hq: c.Hq, Hkv: c.Hkv, Lq: c.Lq, Lk: c.Lk, D: c.D, Dv: c.Dv };
    const inputs = { ctx: tiled, shape, dtype: 'f16' as const };
    const plan = corePlan(inputs, { causal: c.causal, returnLse: true }, c.Lk - c.Lq) as FlashPlan;
    expect([plan.kernel, plan.products]).toEqual(['tiled', tiled.hasF16 ? 'f16' : 'f32']);
    const [qt, kt, vt] = [q, k, v].map((x) =>
      tiled.tensor(x.data as Float32Array, x.shape, { dtype: 'f16' }),
    );
    const output = tiled.zeros([c.B, c.Hq, c.Lq, c.Dv], 'f16');
    const lse = tiled.zeros([c.B, c.Hq, c.Lq]);
    await checked(tiled, async () => {
      const rec = new Recording(tiled, 'attention');
      recordCore(
        rec,
        { ...plan, products: 'f16-emulated' },
        {
          q: qt.binding,
          k: kt.binding,
          v: vt.binding,
          strides: denseStrides(shape, 'bhld'),
          output: output.binding,
          lse: lse.binding,
        },
      );
      await rec.submit();
    });
    expectClose(await output.read(), ref.output.data, F16_TOL, 'output');
    expectClose(await lse.read(), ref.lse.data, F16_TOL, 'lse');
    for (const t of [qt, kt, vt, output, lse]) t.destroy();
  };
  it('head dim 256, causal, GQA, Lq < Lk', () =>
    check({ B: 1, Hq: 2, Hkv: 1, Lq: 20, Lk: 45, D: 256, Dv: 256, causal: true, dtype: 'f16' }));
});

describe('large logits', () => {
  // |q·k| reaches 4 * 50 * 50 = 1e4 with scale 1
  it('logits up to +-1e4, prefill', () =>
    checkCase(ctx, attention, { ...base, Lq: 20, Lk: 37, magnitude: 50, scale: 1 }));
  it('logits up to +-1e4, causal, f16 storage', () =>
    checkCase(ctx, attention, {
      ...base,
      Lq: 20,
      Lk: 37,
      magnitude: 50,
      scale: 1,
      causal: true,
      dtype: 'f16',
    }));
  it('logits up to +-1e4, decode sizes', () =>
    checkCase(ctx, attention, { ...base, Lq: 2, Lk: 600, magnitude: 50, scale: 1 }));
});

/** Runs attention with one poisoned input value and returns GPU output, reference output and row size. */
async function poisonedIn(
  where: 'q' | 'k' | 'v',
  index: number,
  value: number,
  c: { Lq: number; Lk: number },
  on = ctx,
) {
  const { Lq, Lk } = c;
  const D = 4;
  const random = rng(5);
  const data = {
    q: randomArray(random, Lq * D),
    k: randomArray(random, Lk * D),
    v: randomArray(random, Lk * D),
  };
  data[where][index] = value;
  const shape = { q: [1, 1, Lq, D], k: [1, 1, Lk, D] };
  const ref = attentionCpu(
    { data: data.q, shape: shape.q },
    { data: data.k, shape: shape.k },
    { data: data.v, shape: shape.k },
    { causal: true },
  );
  return checked(on, async () => {
    const q = on.tensor(data.q, shape.q);
    const k = on.tensor(data.k, shape.k);
    const v = on.tensor(data.v, shape.k);
    const { output } = await attention(q, k, v, { causal: true });
    const gpu = await output.read();
    for (const t of [q, k, v, output]) t.destroy();
    return { gpu, ref: ref.output.data };
  });
}

/** Rows of `gpu` are non-finite exactly where the reference's are; finite rows match it. */
function expectSameRows(gpu: ArrayLike<number>, ref: ArrayLike<number>, D: number, expectedBad: number[]) {
  const bad: number[] = [];
  for (let r = 0; r < ref.length / D; r++) {
    const gpuRow = Array.from({ length: D }, (_, d) => gpu[r * D + d]);
    const refRow = Array.from({ length: D }, (_, d) => ref[r * D + d]);
    if (refRow.some((x) => !Number.isFinite(x))) {
      bad.push(r);
      expect(
        gpuRow.some((x) => !Number.isFinite(x)),
        `row ${r} should be non-finite, got ${gpuRow}`,
      ).toBe(true);
    } else {
      expectClose(gpuRow, refRow, F32_TOL, `row ${r}`);
    }
  }
  expect(bad).toEqual(expectedBad);
}

describe('NaN and Infinity in the inputs make only the affected rows non-finite', () => {
  for (const [name, Lq, Lk, form] of [
    ['prefill', 12, 12, 'default'],
    ['decode', 1, 300, 'default'],
    ['prefill, tiled form, several key tiles', 40, 70, 'tiled'],
  ] as const) {
    const poisoned = (where: 'q' | 'k' | 'v', index: number, value: number, c: { Lq: number; Lk: number }) =>
      poisonedIn(where, index, value, c, form === 'tiled' ? tiled : ctx);
    it(`NaN in one query row (${name})`, async () => {
      const { gpu, ref } = await poisoned('q', (Lq - 1) * 4 + 2, Number.NaN, { Lq, Lk });
      expectSameRows(gpu, ref, 4, [Lq - 1]);
    });
    it(`NaN in one key: the rows that may attend it (${name})`, async () => {
      const key = Lk - 3; // causal: only rows at or past it attend it
      const { gpu, ref } = await poisoned('k', key * 4 + 1, Number.NaN, { Lq, Lk });
      const rows = Array.from({ length: Lq }, (_, i) => i).filter((i) => key <= i + Lk - Lq);
      expectSameRows(gpu, ref, 4, rows);
    });
    it(`Infinity in one value: the rows that may attend it (${name})`, async () => {
      const key = Lk - 2;
      const { gpu, ref } = await poisoned('v', key * 4, Number.POSITIVE_INFINITY, { Lq, Lk });
      const rows = Array.from({ length: Lq }, (_, i) => i).filter((i) => key <= i + Lk - Lq);
      expectSameRows(gpu, ref, 4, rows);
    });
  }
});

describe('masks at the edges', () => {
  it('an additive mask of all -Infinity gives zeros and lse -Infinity, no NaN', async () => {
    const mask = ctx.tensor(new Float32Array(8).fill(Number.NEGATIVE_INFINITY), [8], { dtype: 'f32' });
    const q = ctx.tensor(randomArray(rng(2), 2 * 3 * 4), [1, 2, 3, 4]);
    const k = ctx.tensor(randomArray(rng(3), 2 * 8 * 4), [1, 2, 8, 4]);
    await checked(ctx, async () => {
      const { output, lse } = await attention(q, k, k, { mask, returnLse: true });
      expect(Array.from(await output.read())).toEqual(new Array(24).fill(0));
      expect(Array.from(await lse!.read())).toEqual(new Array(6).fill(Number.NEGATIVE_INFINITY));
      for (const t of [output, lse!]) t.destroy();
    });
    for (const t of [mask, q, k]) t.destroy();
  });
  it("a row of -1e30 on every key attends all keys equally (PyTorch's mean of v); float32's lowest forbids a key like -Infinity", async () => {
    const [Lq, Lk, lowest] = [3, 5, -3.4028234663852886e38];
    const { q, k, v } = caseInputs({ B: 1, Hq: 1, Hkv: 1, Lq, Lk, D: 4, Dv: 4, seed: 8 });
    const bias = randomArray(rng(9), Lk, 2);
    // row 0: -1e30 everywhere; row 1: float32's lowest everywhere; row 2: lowest on keys 0, 1
    const m = [...new Array(Lk).fill(-1e30), ...new Array(Lk).fill(lowest), lowest, lowest, ...bias.slice(2)];
    // expected: row 0 the mean of v; row 1 zeros and lse -Infinity; row 2 as with -Infinity there
    const vd = v.data as Float32Array;
    const mean = [0, 1, 2, 3].map((d) => [0, 1, 2, 3, 4].reduce((a, j) => a + vd[j * 4 + d], 0) / Lk);
    const inf = m.map((x) => (x === lowest ? Number.NEGATIVE_INFINITY : x));
    const withInf = attentionCpu(q, k, v, {
      mask: { data: Float32Array.from(inf), shape: [Lq, Lk], dtype: 'f32' },
    });
    for (const kernel of [ctx, tiled]) {
      const [qt, kt, vt] = [q, k, v].map((x) => kernel.tensor(x.data as Float32Array, x.shape));
      const mask = kernel.tensor(Float32Array.from(m), [Lq, Lk]);
      await checked(kernel, async () => {
        const { output, lse } = await attention(qt, kt, vt, { mask, returnLse: true });
        const out = await output.read();
        expectClose(out.slice(0, 4), mean, F32_TOL, 'row of -1e30');
        expect(Array.from(out.slice(4, 8))).toEqual([0, 0, 0, 0]);
        expect((await lse!.read())[1]).toBe(Number.NEGATIVE_INFINITY);
        expectClose(out.slice(8), withInf.output.data.slice(8), F32_TOL, 'row with lowest on two keys');
        for (const t of [qt, kt, vt, mask, output, lse!]) t.destroy();
      });
    }
    // the float64 reference agrees (it once took exp(s - lse), all ones at lse -1e30)
    const ref = attentionCpu(q, k, v, {
      mask: { data: Float32Array.from(m), shape: [Lq, Lk], dtype: 'f32' },
    });
    expectClose(ref.output.data.slice(0, 4), mean, F32_TOL, 'reference row of -1e30');
    expect(Array.from(ref.output.data.slice(4, 8))).toEqual([0, 0, 0, 0]);
  });
  it('very negative finite additive values (-1e30) act as masked without overflow', () =>
    checkCase(ctx, attention, {
      ...base,
      Lq: 7,
      Lk: 9,
      mask: { kind: 'additive', shape: [7, 9], pTrue: 0.5 },
    }));
});
