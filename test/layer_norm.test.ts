import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, layerNorm, layerNormBackward, rmsNorm, rmsNormBackward, type Tensor } from '../src';
import { layerNormBackwardCpu, layerNormCpu, rmsNormBackwardCpu, rmsNormCpu } from '../src/reference';
import { dot, expectGradient, numericGradient } from './gradcheck';
import { checked, expectClose, F32_TOL, randomArray, rng, rowLayouts, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());
const LAYOUTS = rowLayouts(() => ctx);

interface Case {
  shape: number[];
  kind: 'layer' | 'rms';
  bias?: boolean;
  eps?: number;
  /** x uniform in [offset - 1, offset + 1): a large offset tests the centring */
  offset?: number;
  seed?: number;
}

async function check(c: Case, ctx: Context) {
  const random = rng(c.seed ?? 5);
  const F = c.shape[c.shape.length - 1];
  const n = c.shape.reduce((a, b) => a * b, 1);
  const xData = randomArray(random, n).map((v) => v + (c.offset ?? 0));
  const wData = randomArray(random, F).map((v) => 1 + 0.5 * v);
  const bData = randomArray(random, F);
  const dyData = randomArray(random, n);
  const x = { data: xData, shape: c.shape };
  const w = { data: wData, shape: [F] };
  const dy = { data: dyData, shape: c.shape };
  const options = c.eps === undefined ? {} : { eps: c.eps };
  const withBias = c.kind === 'layer' && c.bias !== false;
  const ref =
    c.kind === 'layer'
      ? layerNormCpu(x, w, withBias ? { data: bData, shape: [F] } : undefined, options)
      : rmsNormCpu(x, w, options);
  const refGrad =
    c.kind === 'layer'
      ? layerNormBackwardCpu(x, w, dy, { ...options, bias: withBias })
      : rmsNormBackwardCpu(x, w, dy, options);
  const made: Tensor[] = [];
  const up = (data: Float32Array, shape: number[]) => {
    const t = ctx.tensor(data, shape);
    made.push(t);
    return t;
  };
  await checked(ctx, async () => {
    const xt = up(xData, c.shape);
    const wt = up(wData, [F]);
    const dyt = up(dyData, c.shape);
    const y =
      c.kind === 'layer'
        ? await layerNorm(xt, wt, withBias ? up(bData, [F]) : undefined, options)
        : await rmsNorm(xt, wt, options);
    made.push(y);
    const label = JSON.stringify(c);
    expect(y.shape).toEqual(c.shape);
    expectClose(await y.read(), ref.data, F32_TOL, `${label} y`);
    const g =
      c.kind === 'layer'
        ? await layerNormBackward(xt, wt, dyt, { ...options, bias: withBias })
        : await rmsNormBackward(xt, wt, dyt, options);
    made.push(g.dx, g.dweight);
    expectClose(await g.dx.read(), refGrad.dx.data, F32_TOL, `${label} dx`);
    expectClose(await g.dweight.read(), refGrad.dweight.data, F32_TOL, `${label} dweight`);
    if (withBias) {
      made.push(g.dbias!);
      expectClose(await g.dbias!.read(), refGrad.dbias!.data, F32_TOL, `${label} dbias`);
    } else {
      expect(g.dbias).toBeUndefined();
    }
  });
  for (const t of made) t.destroy();
}

for (const [where, on] of LAYOUTS) {
  for (const kind of ['layer', 'rms'] as const) {
    describe(`${kind === 'layer' ? 'layerNorm' : 'rmsNorm'} and its backward match float64 (${where})`, () => {
      it('one row of one feature', () => check({ shape: [1], kind }, on()));
      it('odd sizes', () => check({ shape: [3, 5, 7], kind }, on()));
      it('rows longer than a workgroup', () => check({ shape: [4, 300], kind }, on()));
      it('many rows (column sums over 200 rows)', () => check({ shape: [200, 33], kind, eps: 1e-6 }, on()));
      it('an offset far from zero', () => check({ shape: [6, 40], kind, offset: 10 }, on()));
    });
  }
  describe(`layerNorm without a bias (${where})`, () => {
    it('no dbias', () => check({ shape: [5, 9], kind: 'layer', bias: false }, on()));
  });
}

describe('the float64 backwards equal central differences of the forwards', () => {
  const random = rng(21);
  const shape = [3, 5];
  const x = Float64Array.from(randomArray(random, 15));
  const w = Float64Array.from(randomArray(random, 5));
  const b = Float64Array.from(randomArray(random, 5));
  const dy = Float64Array.from(randomArray(random, 15));
  const eps = 1e-3;
  it('layerNorm: dx, dweight, dbias', () => {
    const f = (xs: Float64Array, ws: Float64Array, bs: Float64Array) =>
      dot(
        layerNormCpu({ data: xs, shape }, { data: ws, shape: [5] }, { data: bs, shape: [5] }, { eps }).data,
        dy,
      );
    const g = layerNormBackwardCpu({ data: x, shape }, { data: w, shape: [5] }, { data: dy, shape }, { eps });
    expectGradient(
      g.dx.data,
      numericGradient((v) => f(v, w, b), x),
      'dx',
    );
    expectGradient(
      g.dweight.data,
      numericGradient((v) => f(x, v, b), w),
      'dweight',
    );
    expectGradient(
      g.dbias!.data,
      numericGradient((v) => f(x, w, v), b),
      'dbias',
    );
  });
  it('rmsNorm: dx, dweight', () => {
    const f = (xs: Float64Array, ws: Float64Array) =>
      dot(rmsNormCpu({ data: xs, shape }, { data: ws, shape: [5] }, { eps }).data, dy);
    const g = rmsNormBackwardCpu({ data: x, shape }, { data: w, shape: [5] }, { data: dy, shape }, { eps });
    expectGradient(
      g.dx.data,
      numericGradient((v) => f(v, w), x),
      'dx',
    );
    expectGradient(
      g.dweight.data,
      numericGradient((v) => f(x, v), w),
      'dweight',
    );
    expect(g.dbias).toBeUndefined();
  });
});

describe('bad input throws an error naming the argument', () => {
  it('weight, bias and dy shapes, eps, unknown options, dtype', async () => {
    const x = ctx.tensor(new Float32Array(6), [2, 3]);
    const w3 = ctx.tensor(new Float32Array(3), [3]);
    const w2 = ctx.tensor(new Float32Array(2), [2]);
    await expect(layerNorm(x, w2)).rejects.toThrow('layerNorm: weight must have shape [3], received [2]');
    await expect(layerNorm(x, w3, w2)).rejects.toThrow('layerNorm: bias must have shape [3], received [2]');
    await expect(rmsNorm(x, w3, { eps: -1 })).rejects.toThrow(
      'rmsNorm: options.eps must be a finite number >= 0, received -1',
    );
    await expect(rmsNorm(x, w3, { epsilon: 1 } as never)).rejects.toThrow(
      "rmsNorm: unknown option 'epsilon', expected one of eps",
    );
    await expect(layerNormBackward(x, w3, w2)).rejects.toThrow(
      'layerNormBackward: dy must have shape [2, 3], received [2]',
    );
    const h = ctx.tensor(new Float32Array(6), [2, 3], { dtype: 'f16' });
    await expect(rmsNormBackward(h, w3, x)).rejects.toThrow(
      "rmsNormBackward: x must have dtype 'f32', received 'f16'",
    );
    for (const t of [x, w3, w2, h]) t.destroy();
  });
});
