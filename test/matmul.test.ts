import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, matmul, Tensor } from '../src';
import { matmulCpu } from '../src/reference';
import { compareOp } from './compare_op';
import { F32_TOL, randomArray, rng, testContext } from './helpers';

interface Case {
  /** shapes as stored, i.e. already transposed where the flags say so */
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
  alpha?: number;
  /** inputs are uniform in [-magnitude, magnitude) */
  magnitude?: number;
  seed?: number;
}

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

/** Runs one case on the GPU (on `on`, default the shared context) and on the float64 reference. */
async function check(c: Case, on: Context = ctx) {
  const random = rng(c.seed ?? 1);
  const mag = c.magnitude ?? 1;
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const options = { transposeA: c.transposeA, transposeB: c.transposeB, alpha: c.alpha };
  await compareOp(on, {
    inputs: {
      a: { data: randomArray(random, size(c.a), mag), shape: c.a },
      b: { data: randomArray(random, size(c.b), mag), shape: c.b },
    },
    gpu: ({ a, b }) => matmul(a, b, options),
    ref: ({ a, b }) => matmulCpu(a, b, options),
    // The rounding error of a sum of products scales with the size of the products, not of the sum.
    tol: { atol: F32_TOL.atol * mag * mag * Math.max(1, Math.abs(c.alpha ?? 1)), rtol: F32_TOL.rtol },
    label: JSON.stringify(c),
  });
}

describe('matmul matches the float64 reference', () => {
  it('1 x 1 x 1', () => check({ a: [1, 1], b: [1, 1] }));
  it('odd sizes', () => check({ a: [7, 5], b: [5, 3] }));
  it('a row vector times a matrix (M = 1)', () => check({ a: [1, 37], b: [37, 19] }));
  it('a matrix times a column vector (N = 1)', () => check({ a: [23, 41], b: [41, 1] }));
  it('K = 1 (outer product)', () => check({ a: [18, 1], b: [1, 21] }));
  it('sizes not a multiple of the tile', () => check({ a: [65, 33], b: [33, 70] }));
  it('several tiles in every direction, vec4 loads', () => check({ a: [132, 68], b: [68, 136] }));
  it('long inner dim', () => check({ a: [20, 517], b: [517, 24] }));
  it('alpha', () => check({ a: [9, 12], b: [12, 8], alpha: -0.37 }));
  it('large values (products about 1e6)', () => check({ a: [19, 40], b: [40, 21], magnitude: 1000 }));
});

describe('transposes', () => {
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      const name = `transposeA=${transposeA} transposeB=${transposeB}`;
      const shapes = (M: number, K: number, N: number) => ({
        a: transposeA ? [K, M] : [M, K],
        b: transposeB ? [N, K] : [K, N],
        transposeA,
        transposeB,
      });
      it(`${name}, odd sizes`, () => check(shapes(35, 19, 29)));
      it(`${name}, multiples of 4`, () => check(shapes(68, 20, 72)));
    }
  }
});

describe('batches', () => {
  it('equal batch dims', () => check({ a: [2, 3, 9, 5], b: [2, 3, 5, 7] }));
  it('b without batch dims is shared', () => check({ a: [3, 18, 20], b: [20, 22] }));
  it('a without batch dims is shared, b transposed', () =>
    check({ a: [6, 8], b: [4, 10, 8], transposeB: true }));
  it('size-1 batch dims broadcast both ways', () => check({ a: [2, 1, 5, 7], b: [3, 7, 4] }));
  it('broadcast dims that alternate between a and b', () =>
    check({ a: [2, 1, 3, 1, 6, 4], b: [1, 4, 1, 2, 6, 5], transposeA: true }));
  it('attention-like: q kᵀ over [B, H] with scale', () =>
    check({ a: [2, 3, 33, 16], b: [2, 3, 47, 16], transposeB: true, alpha: 0.25 }));
  it('more workgroups than maxComputeWorkgroupsPerDimension: the grid folds', async () => {
    const small = await testContext({ limits: { maxComputeWorkgroupsPerDimension: 4 } });
    await check({ a: [7, 5, 20, 9], b: [9, 17] }, small);
    small.destroy();
  });
});

describe('random configurations (property test)', () => {
  it('50 configurations of shapes, batches and options match the reference', async () => {
    const config = fc.record({
      // M, N > 16 keep to the 64 x 64 tiling (each tiling is 16 more compiles); the cases above
      // cover the 16-wide one
      M: fc.integer({ min: 17, max: 70 }),
      N: fc.integer({ min: 17, max: 70 }),
      K: fc.integer({ min: 1, max: 40 }),
      batchA: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
      batchB: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
      transposeA: fc.boolean(),
      transposeB: fc.boolean(),
      alpha: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
      seed: fc.integer({ min: 1, max: 1e6 }),
    });
    await fc.assert(
      fc.asyncProperty(config, async (r) => {
        // Make the batch dims broadcastable: where both have a dim, b's is a's or 1.
        const batchB = r.batchB.map((d, i) => {
          const x = r.batchA[r.batchA.length - r.batchB.length + i];
          return x === undefined || d === 1 ? d : x;
        });
        await check({
          a: [...r.batchA, ...(r.transposeA ? [r.K, r.M] : [r.M, r.K])],
          b: [...batchB, ...(r.transposeB ? [r.N, r.K] : [r.K, r.N])],
          transposeA: r.transposeA,
          transposeB: r.transposeB,
          alpha: r.alpha,
          seed: r.seed,
        });
      }),
      { numRuns: 50, seed: 20261125 },
    );
  });
});

describe('bad input throws an error naming the argument', () => {
  const t = (shape: number[]) => ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  it('inner dims differ', async () => {
    await expect(matmul(t([2, 3]), t([4, 5]))).rejects.toThrow(
      'matmul: inner dims differ: a [2, 3] gives K=3, b [4, 5] gives K=4',
    );
  });
  it('inner dims differ after a transpose', async () => {
    await expect(matmul(t([2, 3]), t([3, 5]), { transposeA: true })).rejects.toThrow(
      'matmul: inner dims differ: a [2, 3] gives K=2, b [3, 5] gives K=3',
    );
  });
  it('rank below 2', async () => {
    await expect(matmul(t([3]), t([3, 5]))).rejects.toThrow(
      'matmul: a: expected rank >= 2 [..., M, K], received shape [3]',
    );
    await expect(matmul(t([2, 3]), t([3]), { transposeB: true })).rejects.toThrow(
      'matmul: b: expected rank >= 2 [..., N, K], received shape [3]',
    );
  });
  it('batch dims that cannot broadcast', async () => {
    await expect(matmul(t([2, 4, 3]), t([3, 3, 5]))).rejects.toThrow(
      'matmul: batch dims of a [2, 4, 3] and b [3, 3, 5] cannot broadcast',
    );
  });
  it('dtype other than f32', async () => {
    const h = ctx.tensor(new Float32Array(6), [2, 3], { dtype: 'f16' });
    await expect(matmul(t([2, 2]), h)).rejects.toThrow("matmul: b must have dtype 'f32', received 'f16'");
  });
  it('unknown option', async () => {
    const opts = { transposeC: true } as unknown as Parameters<typeof matmul>[2];
    await expect(matmul(t([2, 2]), t([2, 2]), opts)).rejects.toThrow(
      "matmul: unknown option 'transposeC', expected one of transposeA, transposeB, alpha",
    );
  });
  it('alpha not finite, transpose not boolean', async () => {
    await expect(matmul(t([2, 2]), t([2, 2]), { alpha: Number.POSITIVE_INFINITY })).rejects.toThrow(
      'matmul: options.alpha must be a finite number, received Infinity',
    );
    const opts = { transposeA: 'yes' } as unknown as Parameters<typeof matmul>[2];
    await expect(matmul(t([2, 2]), t([2, 2]), opts)).rejects.toThrow(
      'matmul: options.transposeA must be a boolean, received string',
    );
  });
  it('tensor from another context', async () => {
    const other = await testContext();
    const b = other.tensor(new Float32Array(4), [2, 2]);
    await expect(matmul(t([2, 2]), b)).rejects.toThrow('matmul: b: tensor belongs to another context');
    other.destroy();
  });
  it('strided view (a KV cache slice)', async () => {
    const buffer = ctx.tensor(new Float32Array(2 * 5 * 4), [2, 5, 4]);
    const view = Tensor.view(ctx, buffer.buffer, [2, 3, 4], 'f32', [20, 4, 1]);
    await expect(matmul(t([2, 2, 3]), view)).rejects.toThrow(
      'matmul: b: expected a contiguous tensor, received a view [2, 3, 4] with strides [20, 4, 1]',
    );
    buffer.destroy();
  });
  it('destroyed tensor', async () => {
    const a = t([2, 2]);
    a.destroy();
    await expect(matmul(a, t([2, 2]))).rejects.toThrow('matmul: a: tensor [2, 2] was destroyed');
  });
});
