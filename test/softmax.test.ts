import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, softmax, Tensor } from '../src';
import { softmaxCpu } from '../src/reference';
import { compareOp } from './compare_op';
import { randomArray, randomMask, rng, testContext } from './helpers';

interface Case {
  shape: number[];
  scale?: number;
  causal?: boolean;
  /** inputs are uniform in [-magnitude, magnitude) */
  magnitude?: number;
  /** fraction of entries set to -Infinity */
  pNegInf?: number;
  seed?: number;
}

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

/** Runs one case on the GPU and on the float64 reference. */
async function check(c: Case) {
  const random = rng(c.seed ?? 1);
  const n = c.shape.reduce((a, b) => a * b, 1);
  const data = randomArray(random, n, c.magnitude ?? 1);
  if (c.pNegInf) {
    const drop = randomMask(random, n, c.pNegInf);
    for (let i = 0; i < n; i++) if (drop[i]) data[i] = Number.NEGATIVE_INFINITY;
  }
  const options = { scale: c.scale, causal: c.causal };
  await compareOp(ctx, {
    inputs: { x: { data, shape: c.shape } },
    gpu: ({ x }) => softmax(x, options),
    ref: ({ x }) => softmaxCpu(x, options),
    label: JSON.stringify(c),
  });
}

describe('softmax matches the float64 reference', () => {
  it('a single element', () => check({ shape: [1] }));
  it('rank 1, odd length', () => check({ shape: [37] }));
  it('many short rows', () => check({ shape: [3, 5, 7] }));
  it('rows longer than a workgroup', () => check({ shape: [3, 1500] }));
  it('rows just over a workgroup', () => check({ shape: [4, 17] }));
  it('scale', () => check({ shape: [6, 40], scale: 0.125 }));
  it('negative scale', () => check({ shape: [2, 20], scale: -3 }));
  it('large values (logits about 1e4)', () => check({ shape: [5, 300], magnitude: 1e4 }));
  it('-Infinity entries, some rows entirely (zeros, never NaN)', () =>
    check({ shape: [40, 6], pNegInf: 0.6 }));
  it('-Infinity entries in long rows, with a scale', () =>
    check({ shape: [2, 1100], pNegInf: 0.5, scale: 2 }));
  it('all -Infinity', () => check({ shape: [3, 9], pNegInf: 1 }));
});

describe('causal (bottom-right aligned)', () => {
  it('Lq == Lk', () => check({ shape: [2, 17, 17], causal: true }));
  it('Lq < Lk (KV-cache decoding)', () => check({ shape: [3, 5, 40], causal: true }));
  it('Lq > Lk: the first rows are masked entirely (zeros)', () => check({ shape: [2, 20, 6], causal: true }));
  it('long rows over batch and heads, with scale and -Infinity', () =>
    check({ shape: [2, 2, 9, 600], causal: true, scale: 0.3, pNegInf: 0.2 }));
});

describe('random configurations (property test)', () => {
  it('50 configurations of shapes and options match the reference', async () => {
    const config = fc.record({
      lead: fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 2 }),
      Lq: fc.integer({ min: 1, max: 30 }),
      Lk: fc.integer({ min: 1, max: 1300 }),
      causal: fc.boolean(),
      scale: fc.option(fc.double({ min: -4, max: 4, noNaN: true }), { nil: undefined }),
      magnitude: fc.constantFrom(1, 30),
      pNegInf: fc.constantFrom(0, 0.3, 0.9),
      seed: fc.integer({ min: 1, max: 1e6 }),
    });
    await fc.assert(
      fc.asyncProperty(config, (r) =>
        check({
          shape: [...r.lead, r.Lq, r.Lk],
          causal: r.causal,
          scale: r.scale,
          magnitude: r.magnitude,
          pNegInf: r.pNegInf,
          seed: r.seed,
        }),
      ),
      { numRuns: 50, seed: 20261126 },
    );
  });
});

describe('bad input throws an error naming the argument', () => {
  const t = (shape: number[]) => ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  it('causal needs rank 2', async () => {
    await expect(softmax(t([5]), { causal: true })).rejects.toThrow(
      'softmax: x: expected rank >= 2 [..., Lq, Lk], received shape [5]',
    );
  });
  it('dtype other than f32', async () => {
    const x = ctx.tensor(new Uint8Array(4), [4], { dtype: 'bool' });
    await expect(softmax(x)).rejects.toThrow("softmax: x must have dtype 'f32', received 'bool'");
  });
  it('unknown option', async () => {
    const opts = { casual: true } as unknown as Parameters<typeof softmax>[1];
    await expect(softmax(t([4]), opts)).rejects.toThrow(
      "softmax: unknown option 'casual', expected one of scale, causal",
    );
  });
  it('scale not finite, causal not boolean', async () => {
    await expect(softmax(t([4]), { scale: Number.NaN })).rejects.toThrow(
      'softmax: options.scale must be a finite number, received NaN',
    );
    const opts = { causal: 1 } as unknown as Parameters<typeof softmax>[1];
    await expect(softmax(t([4]), opts)).rejects.toThrow(
      'softmax: options.causal must be a boolean, received number',
    );
  });
  it('strided view (a KV cache slice)', async () => {
    const buffer = ctx.tensor(new Float32Array(2 * 5 * 4), [2, 5, 4]);
    const view = Tensor.view(ctx, buffer.buffer, [2, 3, 4], 'f32', [20, 4, 1]);
    await expect(softmax(view)).rejects.toThrow(
      'softmax: x: expected a contiguous tensor, received a view [2, 3, 4] with strides [20, 4, 1]',
    );
    buffer.destroy();
  });
  it('destroyed tensor', async () => {
    const x = t([2, 3]);
    x.destroy();
    await expect(softmax(x)).rejects.toThrow('softmax: x: tensor [2, 3] was destroyed');
  });
  it('the reference rejects causal on rank 1 too', () => {
    expect(() => softmaxCpu({ data: [1, 2], shape: [2] }, { causal: true })).toThrow(
      'softmaxCpu: causal needs x of rank >= 2 [..., Lq, Lk], received shape [2]',
    );
  });
});
