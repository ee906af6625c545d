import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, intTensor, softmaxCrossEntropy } from '../src';
import { softmaxCrossEntropyCpu } from '../src/reference';
import { expectGradient, numericGradient } from './gradcheck';
import { checked, expectClose, F32_TOL, randomArray, rng, rowLayouts, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());
const LAYOUTS = rowLayouts(() => ctx);

interface Case {
  shape: number[]; // targets' shape
  V: number;
  /** logits uniform in [-magnitude, magnitude) */
  magnitude?: number;
  /** fraction of targets set to -1 */
  pIgnore?: number;
  seed?: number;
}

async function check(c: Case, ctx: Context) {
  const random = rng(c.seed ?? 17);
  const rows = c.shape.reduce((a, b) => a * b, 1);
  const logitData = randomArray(random, rows * c.V, c.magnitude ?? 3);
  const targetData = Array.from({ length: rows }, () =>
    random() < (c.pIgnore ?? 0) ? -1 : Math.floor(random() * c.V),
  );
  const ref = softmaxCrossEntropyCpu(
    { data: logitData, shape: [...c.shape, c.V] },
    { data: targetData, shape: c.shape },
  );
  await checked(ctx, async () => {
    const logits = ctx.tensor(logitData, [...c.shape, c.V]);
    const targets = intTensor(ctx, targetData, c.shape);
    const { loss, dlogits } = await softmaxCrossEntropy(logits, targets);
    const label = JSON.stringify(c);
    expect(loss.shape).toEqual([1]);
    expect(dlogits.shape).toEqual([...c.shape, c.V]);
    expectClose(await loss.read(), [ref.loss], F32_TOL, `${label} loss`);
    expectClose(await dlogits.read(), ref.dlogits.data, F32_TOL, `${label} dlogits`);
    for (const t of [logits, targets, loss, dlogits]) t.destroy();
  });
}

for (const [where, on] of LAYOUTS) {
  describe(`softmaxCrossEntropy matches float64 (${where})`, () => {
    let ctx: Context;
    beforeAll(() => {
      ctx = on();
    });
    it('one row, one class (loss 0)', () => check({ shape: [1], V: 1 }, ctx));
    it('odd sizes', () => check({ shape: [3, 5], V: 7 }, ctx));
    it('rows longer than a workgroup (V = 1500), some ignored', () =>
      check({ shape: [4], V: 1500, pIgnore: 0.3 }, ctx));
    it('many rows (more than the 256 of the sum), ignored targets', () =>
      check({ shape: [2, 300], V: 11, pIgnore: 0.5 }, ctx));
    it('large logits (about 1e4): log-sum-exp stays finite', () =>
      check({ shape: [6], V: 40, magnitude: 1e4 }, ctx));
    it('every target ignored: loss NaN (as PyTorch), dlogits zero', async () => {
      const logits = ctx.tensor(randomArray(rng(1), 6), [2, 3]);
      const targets = intTensor(ctx, [-1, -1], [2]);
      const { loss, dlogits } = await softmaxCrossEntropy(logits, targets);
      expect(Number.isNaN((await loss.read())[0])).toBe(true);
      expect(Array.from(await dlogits.read())).toEqual([0, 0, 0, 0, 0, 0]);
      for (const t of [logits, targets, loss, dlogits]) t.destroy();
    });
    it('a target out of range: NaN on the GPU, an error in the reference', async () => {
      const logits = ctx.tensor(randomArray(rng(2), 6), [2, 3]);
      const targets = intTensor(ctx, [0, 3], [2]);
      const { loss, dlogits } = await softmaxCrossEntropy(logits, targets);
      expect(Number.isNaN((await loss.read())[0])).toBe(true);
      expect(
        Array.from(await dlogits.read())
          .slice(3)
          .every(Number.isNaN),
      ).toBe(true);
      expect(() =>
        softmaxCrossEntropyCpu({ data: [0, 0, 0, 0, 0, 0], shape: [2, 3] }, { data: [0, 3], shape: [2] }),
      ).toThrow('softmaxCrossEntropyCpu: targets[1] must be -1 or an integer in [0, 3), received 3');
      for (const t of [logits, targets, loss, dlogits]) t.destroy();
    });
  });
}

describe('the float64 gradient equals central differences of the loss', () => {
  it('with an ignored row', () => {
    const logits = Float64Array.from(randomArray(rng(3), 4 * 5, 2));
    const targets = { data: [1, -1, 4, 0], shape: [4] };
    const f = (l: Float64Array) => softmaxCrossEntropyCpu({ data: l, shape: [4, 5] }, targets).loss;
    const g = softmaxCrossEntropyCpu({ data: logits, shape: [4, 5] }, targets).dlogits.data;
    expectGradient(g, numericGradient(f, logits), 'dlogits');
  });
});

describe('bad input throws an error naming the argument', () => {
  it('shapes and types', async () => {
    const logits = ctx.tensor(new Float32Array(6), [2, 3]);
    const targets = intTensor(ctx, [0, 1, 2], [3]);
    await expect(softmaxCrossEntropy(logits, targets)).rejects.toThrow(
      "softmaxCrossEntropy: logits must have shape [3, V] (targets' shape, then classes), received [2, 3]",
    );
    await expect(softmaxCrossEntropy(logits, logits as never)).rejects.toThrow(
      'softmaxCrossEntropy: targets must be an IntTensor (see intTensor)',
    );
    const h = ctx.tensor(new Float32Array(6), [2, 3], { dtype: 'f16' });
    await expect(softmaxCrossEntropy(h, targets)).rejects.toThrow(
      "softmaxCrossEntropy: logits must have dtype 'f32', received 'f16'",
    );
    for (const t of [logits, targets, h]) t.destroy();
  });
});
