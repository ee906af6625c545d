import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, linearBackward, type Tensor } from '../src';
import { type HostTensor, linearBackwardCpu, linearCpu } from '../src/reference';
import { dot, expectGradient, numericGradient } from './gradcheck';
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
  seed?: number;
}

async function check(c: Case) {
  const random = rng(c.seed ?? 13);
  const host = (shape: number[], scale = 1): HostTensor => ({
    data: randomArray(
      random,
      shape.reduce((a, b) => a * b, 1),
      scale,
    ),
    shape,
  });
  const x = host([c.B, c.L, c.K]);
  const w = host([c.N, c.K], 1 / Math.sqrt(c.K));
  const bias = c.bias ? host([c.N]) : undefined;
  const residual = c.residual ? host([c.B, c.L, c.N]) : undefined;
  const dy = host([c.B, c.L, c.N]);
  const ref = linearBackwardCpu(x, w, dy, { bias, activation: c.activation, residual });
  const made: Tensor[] = [];
  const up = (h: HostTensor) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape);
    made.push(t);
    return t;
  };
  await checked(ctx, async () => {
    const g = await linearBackward(up(x), up(w), up(dy), {
      bias: bias && up(bias),
      activation: c.activation,
      residual: residual && up(residual),
    });
    const label = JSON.stringify(c);
    made.push(...(Object.values(g) as Tensor[]));
    expect(g.dx.shape).toEqual([c.B, c.L, c.K]);
    expect(g.dweight.shape).toEqual([c.N, c.K]);
    expectClose(await g.dx.read(), ref.dx.data, F32_TOL, `${label} dx`);
    expectClose(await g.dweight.read(), ref.dweight.data, F32_TOL, `${label} dweight`);
    expect(g.dbias === undefined).toBe(!c.bias);
    if (g.dbias) expectClose(await g.dbias.read(), ref.dbias!.data, F32_TOL, `${label} dbias`);
    expect(g.dresidual === undefined).toBe(!c.residual);
    if (g.dresidual)
      expectClose(await g.dresidual.read(), ref.dresidual!.data, F32_TOL, `${label} dresidual`);
  });
  for (const t of made) t.destroy();
}

describe('linearBackward matches float64', () => {
  it('size 1 everywhere', () => check({ B: 1, L: 1, K: 1, N: 1, bias: true }));
  it('odd sizes, no bias', () => check({ B: 2, L: 3, K: 7, N: 5 }));
  it('bias, sizes over a tile (70 outputs, 130 rows)', () => check({ B: 2, L: 65, K: 9, N: 70, bias: true }));
  it('ReLU with a bias and a residual', () =>
    check({ B: 1, L: 6, K: 8, N: 12, bias: true, activation: 'relu', residual: true }));
  it('GELU (tanh form), wider than the rows', () =>
    check({ B: 2, L: 5, K: 16, N: 36, bias: true, activation: 'gelu' }));
  it('GELU without a bias, with a residual', () =>
    check({ B: 1, L: 3, K: 4, N: 6, activation: 'gelu', residual: true }));
});

/** [B, L, H * d] -> [B, H, L, d] on the CPU */
function split(x: ArrayLike<number>, B: number, L: number, H: number): Float32Array {
  const d = x.length / (B * L * H);
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < d; i++) out[((b * H + h) * L + l) * d + i] = x[((b * L + l) * H + h) * d + i];
  return out;
}

describe('head layouts, as the forward reads and writes them', () => {
  it('x in heads [B, Hin, L, K / Hin] and dy in heads [B, heads, L, N / heads], GELU', async () => {
    const [B, L, K, N, Hin, heads] = [2, 3, 12, 10, 3, 2];
    const random = rng(47);
    const x = randomArray(random, B * L * K);
    const w = randomArray(random, N * K, 0.3);
    const bias = randomArray(random, N);
    const dy = randomArray(random, B * L * N);
    const ref = linearBackwardCpu(
      { data: x, shape: [B, L, K] },
      { data: w, shape: [N, K] },
      { data: dy, shape: [B, L, N] },
      { bias: { data: bias, shape: [N] }, activation: 'gelu' },
    );
    await checked(ctx, async () => {
      const xt = ctx.tensor(split(x, B, L, Hin), [B, Hin, L, K / Hin]);
      const wt = ctx.tensor(w, [N, K]);
      const bt = ctx.tensor(bias, [N]);
      const dyt = ctx.tensor(split(dy, B, L, heads), [B, heads, L, N / heads]);
      const g = await linearBackward(xt, wt, dyt, { bias: bt, activation: 'gelu', heads });
      expect(g.dx.shape).toEqual([B, Hin, L, K / Hin]);
      expectClose(await g.dx.read(), split(ref.dx.data, B, L, Hin), F32_TOL, 'dx');
      expectClose(await g.dweight.read(), ref.dweight.data, F32_TOL, 'dweight');
      expectClose(await g.dbias!.read(), ref.dbias!.data, F32_TOL, 'dbias');
      for (const t of [xt, wt, bt, dyt, g.dx, g.dweight, g.dbias!]) t.destroy();
    });
  });
});

describe('the float64 backward equals central differences of linearCpu', () => {
  for (const activation of [undefined, 'relu', 'gelu'] as const) {
    it(`activation ${activation ?? 'none'}: dx, dweight, dbias, dresidual`, () => {
      const random = rng(31);
      const [rows, K, N] = [3, 4, 5];
      const x = Float64Array.from(randomArray(random, rows * K));
      const w = Float64Array.from(randomArray(random, N * K));
      const b = Float64Array.from(randomArray(random, N));
      const r = Float64Array.from(randomArray(random, rows * N));
      const dy = Float64Array.from(randomArray(random, rows * N));
      const f = (xs: Float64Array, ws: Float64Array, bs: Float64Array, rs: Float64Array) =>
        dot(
          linearCpu(
            { data: xs, shape: [rows, K] },
            { data: ws, shape: [N, K] },
            { bias: { data: bs, shape: [N] }, activation, residual: { data: rs, shape: [rows, N] } },
          ).data,
          dy,
        );
      const g = linearBackwardCpu(
        { data: x, shape: [rows, K] },
        { data: w, shape: [N, K] },
        { data: dy, shape: [rows, N] },
        { bias: { data: b, shape: [N] }, activation, residual: { data: r, shape: [rows, N] } },
      );
      expectGradient(
        g.dx.data,
        numericGradient((v) => f(v, w, b, r), x),
        'dx',
      );
      expectGradient(
        g.dweight.data,
        numericGradient((v) => f(x, v, b, r), w),
        'dweight',
      );
      expectGradient(
        g.dbias!.data,
        numericGradient((v) => f(x, w, v, r), b),
        'dbias',
      );
      expectGradient(
        g.dresidual!.data,
        numericGradient((v) => f(x, w, b, v), r),
        'dresidual',
      );
    });
  }
});

describe('bad input throws an error naming the argument', () => {
  it('dy shape, heads, dtype', async () => {
    const x = ctx.tensor(new Float32Array(6), [1, 2, 3]);
    const w = ctx.tensor(new Float32Array(12), [4, 3]);
    const dy = ctx.tensor(new Float32Array(6), [1, 2, 3]);
    await expect(linearBackward(x, w, dy)).rejects.toThrow(
      'linearBackward: dy must have shape [1, 2, 4], received [1, 2, 3]',
    );
    await expect(linearBackward(x, w, dy, { heads: 2 })).rejects.toThrow(
      'linearBackward: dy must have shape [1, 2, 2, 2], received [1, 2, 3]',
    );
    await expect(linearBackward(x, dy, dy)).rejects.toThrow(
      'linearBackward: weight must have shape [N, 3], received [1, 2, 3]',
    );
    await expect(linearBackward(x, w, dy, { act: 'gelu' } as never)).rejects.toThrow(
      "linearBackward: unknown option 'act', expected one of bias, heads, activation, residual",
    );
    const xh = ctx.tensor(new Float32Array(6), [1, 2, 3], { dtype: 'f16' });
    const wh = ctx.tensor(new Float32Array(12), [4, 3], { dtype: 'f16' });
    await expect(linearBackward(xh, wh, dy)).rejects.toThrow(
      "linearBackward: x must have dtype 'f32', received 'f16'",
    );
    for (const t of [x, w, dy, xh, wh]) t.destroy();
  });
});
