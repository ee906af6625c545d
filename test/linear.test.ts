import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, linear } from '../src';
import { type HostTensor, linearCpu } from '../src/reference';
import { compareOp } from './compare_op';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

interface Case {
  B: number;
  L: number;
  K: number;
  N: number;
  bias?: boolean;
  activation?: 'relu' | 'gelu';
  residual?: boolean;
  dtype?: 'f32' | 'f16';
}

async function check(c: Case) {
  const random = rng(11);
  const host = (n: number, shape: number[], scale = 1): HostTensor => ({
    data: randomArray(random, n, scale),
    shape,
  });
  const inputs: Record<'x' | 'w' | 'bias' | 'residual', HostTensor> = {
    x: host(c.B * c.L * c.K, [c.B, c.L, c.K]),
    w: host(c.N * c.K, [c.N, c.K], 1 / Math.sqrt(c.K)),
    bias: host(c.N, [c.N]),
    residual: host(c.B * c.L * c.N, [c.B, c.L, c.N]),
  };
  await compareOp(ctx, {
    inputs,
    dtype: c.dtype,
    gpu: (t) =>
      linear(t.x, t.w, {
        bias: c.bias ? t.bias : undefined,
        activation: c.activation,
        residual: c.residual ? t.residual : undefined,
      }),
    ref: (h) =>
      linearCpu(h.x, h.w, {
        bias: c.bias ? h.bias : undefined,
        activation: c.activation,
        residual: c.residual ? h.residual : undefined,
      }),
    label: JSON.stringify(c),
  });
}

describe('linear', () => {
  it('x Wᵀ + bias, odd sizes, more outputs than a workgroup', () =>
    check({ B: 2, L: 3, K: 7, N: 70, bias: true }));
  it('ReLU and GELU with a residual', async () => {
    await check({ B: 1, L: 4, K: 8, N: 12, bias: true, activation: 'relu', residual: true });
    await check({ B: 2, L: 1, K: 16, N: 5, activation: 'gelu', residual: true });
  });
  it('f16 storage', () => check({ B: 1, L: 3, K: 9, N: 11, bias: true, activation: 'gelu', dtype: 'f16' }));
  it('f16 storage, features read four at a time', () =>
    check({ B: 2, L: 3, K: 12, N: 10, bias: true, residual: true, dtype: 'f16' }));
  // head dims 2 (features read one at a time) and 4 (four at a time)
  for (const headDim of [2, 4]) {
    it(`heads: split on write and merged on read, head dim ${headDim}`, async () => {
      const E = 4 * headDim;
      const random = rng(5);
      const xData = randomArray(random, 2 * 3 * E);
      const wData = randomArray(random, E * E);
      const eye = Float32Array.from({ length: E * E }, (_, i) => (i % (E + 1) === 0 ? 1 : 0));
      const ref = linearCpu({ data: xData, shape: [2, 3, E] }, { data: wData, shape: [E, E] });
      await checked(ctx, async () => {
        const x = ctx.tensor(xData, [2, 3, E]);
        const w = ctx.tensor(wData, [E, E]);
        const identity = ctx.tensor(eye, [E, E]);
        const split = await linear(x, w, { heads: 4 }); // [2, 4, 3, headDim]
        expect(split.shape).toEqual([2, 4, 3, headDim]);
        const merged = await linear(split, identity); // back to [2, 3, E]
        expect(merged.shape).toEqual([2, 3, E]);
        expectClose(await merged.read(), ref.data, F32_TOL, 'split then merge');
        for (const t of [x, w, identity, split, merged]) t.destroy();
      });
    });
  }
  it('rejects bad shapes and options with the expected and received values', async () => {
    const x = ctx.tensor(new Float32Array(6), [1, 2, 3]);
    const w = ctx.tensor(new Float32Array(8), [2, 4]);
    await expect(linear(x, w)).rejects.toThrow('linear: weight must have shape [N, 3], received [2, 4]');
    const w3 = ctx.tensor(new Float32Array(6), [2, 3]);
    await expect(linear(x, w3, { heads: 4 })).rejects.toThrow(
      'linear: heads must be a positive integer dividing N=2, received 4',
    );
    await expect(linear(x, w3, { activation: 'tanh' as 'relu' })).rejects.toThrow(
      "linear: activation must be 'relu' or 'gelu', received tanh",
    );
    for (const t of [x, w, w3]) t.destroy();
  });
});
