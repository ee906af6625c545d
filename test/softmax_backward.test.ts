import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, mergeHeads, softmax, softmaxBackward, splitHeads } from '../src';
import { softmaxBackwardCpu, softmaxCpu } from '../src/reference';
import { dot, expectGradient, numericGradient } from './gradcheck';
import { checked, expectClose, F32_TOL, randomArray, rng, rowLayouts, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());
const LAYOUTS = rowLayouts(() => ctx);

async function check(ctx: Context, shape: number[], scale?: number, causal?: boolean) {
  const random = rng(37);
  const n = shape.reduce((a, b) => a * b, 1);
  const x = randomArray(random, n, 2);
  const dyData = randomArray(random, n);
  const y = softmaxCpu({ data: x, shape }, { scale, causal });
  const ref = softmaxBackwardCpu(y, { data: dyData, shape }, { scale });
  await checked(ctx, async () => {
    const xt = ctx.tensor(x, shape);
    const yt = await softmax(xt, { scale, causal });
    const dy = ctx.tensor(dyData, shape);
    const dx = await softmaxBackward(yt, dy, { scale });
    expect(dx.shape).toEqual(shape);
    expectClose(await dx.read(), ref.data, F32_TOL, JSON.stringify({ shape, scale, causal }));
    for (const t of [xt, yt, dy, dx]) t.destroy();
  });
}

for (const [where, on] of LAYOUTS) {
  describe(`softmaxBackward matches float64 (${where})`, () => {
    it('one element', () => check(on(), [1]));
    it('odd rows', () => check(on(), [3, 7]));
    it('rows longer than a workgroup, with a scale', () => check(on(), [2, 1500], 0.3));
    it('causal (masked entries get 0)', () => check(on(), [2, 9, 9], 0.5, true));
  });
}

describe('the float64 backward equals central differences of softmaxCpu', () => {
  it('with a scale and causal masking', () => {
    const shape = [4, 4];
    const random = rng(41);
    const x = Float64Array.from(randomArray(random, 16));
    const dy = Float64Array.from(randomArray(random, 16));
    const options = { scale: 0.7, causal: true };
    const f = (v: Float64Array) => dot(softmaxCpu({ data: v, shape }, options).data, dy);
    const y = softmaxCpu({ data: x, shape }, options);
    expectGradient(
      softmaxBackwardCpu(y, { data: dy, shape }, { scale: 0.7 }).data,
      numericGradient(f, x),
      'dx',
    );
  });
});

describe('splitHeads and mergeHeads', () => {
  it('are inverse permutations matching the [B, H, L, d] layout', async () => {
    const [B, L, H, d] = [2, 3, 4, 5];
    const data = randomArray(rng(43), B * L * H * d);
    await checked(ctx, async () => {
      const x = ctx.tensor(data, [B, L, H * d]);
      const split = await splitHeads(x, H);
      expect(split.shape).toEqual([B, H, L, d]);
      const s = await split.read();
      for (const [b, l, h, i] of [
        [0, 0, 0, 0],
        [1, 2, 3, 4],
        [1, 0, 2, 1],
      ]) {
        expect(s[((b * H + h) * L + l) * d + i]).toBe(data[(b * L + l) * H * d + h * d + i]);
      }
      const merged = await mergeHeads(split);
      expect(merged.shape).toEqual([B, L, H * d]);
      expect(Array.from(await merged.read())).toEqual(Array.from(data));
      for (const t of [x, split, merged]) t.destroy();
    });
  });
  it('bad input', async () => {
    const x = ctx.tensor(new Float32Array(6), [1, 2, 3]);
    await expect(splitHeads(x, 2)).rejects.toThrow(
      'splitHeads: heads must be a positive integer dividing E=3, received 2',
    );
    await expect(mergeHeads(x)).rejects.toThrow(
      'mergeHeads: x: expected rank 4 [B, H, L, d], received shape [1, 2, 3]',
    );
    const y = ctx.tensor(new Float32Array(4), [4]);
    await expect(softmaxBackward(x, y)).rejects.toThrow(
      'softmaxBackward: dy must have shape [1, 2, 3], received [4]',
    );
    for (const t of [x, y]) t.destroy();
  });
});
