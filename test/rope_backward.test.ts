import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, fromF16Bits, rope, ropeBackward, toF16Bits } from '../src';
import { ropeBackwardCpu, ropeCpu, ropeTablesCpu } from '../src/reference';
import { dot, expectGradient, numericGradient } from './gradcheck';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

interface Case {
  shape: [number, number, number, number];
  style: 'half' | 'interleaved';
  dims?: number;
  base?: number;
  offset?: number;
  dtype?: 'f32' | 'f16';
}

async function check(c: Case) {
  const n = c.shape.reduce((a, b) => a * b, 1);
  let data = randomArray(rng(19), n);
  if (c.dtype === 'f16') data = Float32Array.from(data, (x) => fromF16Bits(toF16Bits(x)));
  const options = { style: c.style, dims: c.dims, base: c.base, offset: c.offset };
  const ref = ropeBackwardCpu({ data, shape: c.shape }, options);
  await checked(ctx, async () => {
    const dy = ctx.tensor(data, c.shape, { dtype: c.dtype });
    const dx = await ropeBackward(dy, options);
    expect(dx.shape).toEqual(c.shape);
    expect(dx.dtype).toBe(c.dtype ?? 'f32');
    expectClose(await dx.read(), ref.data, c.dtype === 'f16' ? F16_TOL : F32_TOL, JSON.stringify(c));
    // rope then its backward is the identity
    const back = await ropeBackward(await rope(dy, options), options);
    expectClose(await back.read(), data, c.dtype === 'f16' ? F16_TOL : F32_TOL, 'round trip');
    for (const t of [dy, dx, back]) t.destroy();
  });
}

describe('ropeBackward matches float64', () => {
  it('half, all dims', () => check({ shape: [2, 3, 5, 8], style: 'half' }));
  it('interleaved, all dims', () => check({ shape: [2, 3, 5, 8], style: 'interleaved' }));
  it('partial rotation, odd head dim, large offset', async () => {
    await check({ shape: [1, 2, 7, 7], style: 'half', dims: 4, base: 500, offset: 1000 });
    await check({ shape: [1, 2, 7, 7], style: 'interleaved', dims: 6, offset: 4321 });
  });
  it('size 1 and more elements than a workgroup', async () => {
    await check({ shape: [1, 1, 1, 2], style: 'half' });
    await check({ shape: [1, 1, 3, 130], style: 'interleaved' });
  });
  it('f16 storage', () => check({ shape: [1, 3, 5, 6], style: 'half', dtype: 'f16' }));
  it('caller tables with position ids: the backward of rope from tables is rope with the sines negated', async () => {
    const shape: [number, number, number, number] = [1, 2, 3, 8];
    const data = randomArray(rng(23), 48);
    const tables = ropeTablesCpu(10, 6, 500);
    const forward = { positionIds: [4, 1, 7], interleaved: true };
    const negated = {
      ...tables,
      sin: { ...tables.sin, data: Float64Array.from(tables.sin.data, (x) => -x) },
    };
    const ref = ropeCpu(
      { data, shape },
      { ...negated, positionIds: { data: [4, 1, 7], shape: [3] }, interleaved: true },
    );
    await checked(ctx, async () => {
      const dy = ctx.tensor(data, shape);
      const cos = ctx.tensor(Float32Array.from(tables.cos.data), tables.cos.shape);
      const sin = ctx.tensor(Float32Array.from(tables.sin.data), tables.sin.shape);
      const dx = await ropeBackward(dy, { cos, sin, ...forward });
      expectClose(await dx.read(), ref.data, F32_TOL, 'ropeBackward from tables');
      for (const t of [dy, cos, sin, dx]) t.destroy();
    });
  });
});

describe('the float64 backward equals central differences of ropeCpu', () => {
  for (const style of ['half', 'interleaved'] as const) {
    it(style, () => {
      const shape = [1, 2, 3, 6];
      const random = rng(29);
      const x = Float64Array.from(randomArray(random, 36));
      const dy = Float64Array.from(randomArray(random, 36));
      const options = { style, dims: 4, offset: 5, base: 100 };
      const f = (v: Float64Array) => dot(ropeCpu({ data: v, shape }, options).data, dy);
      expectGradient(ropeBackwardCpu({ data: dy, shape }, options).data, numericGradient(f, x), 'dx');
    });
  }
});

describe('bad input throws an error naming the argument', () => {
  it('rank, dims, style', async () => {
    const x = ctx.tensor(new Float32Array(8), [1, 1, 8]);
    await expect(ropeBackward(x, { style: 'half' })).rejects.toThrow(
      'ropeBackward: dy: expected rank 4 [B, H, L, D], received shape [1, 1, 8]',
    );
    const y = ctx.tensor(new Float32Array(8), [1, 1, 1, 8]);
    await expect(ropeBackward(y, { style: 'half', dims: 3 })).rejects.toThrow(
      'ropeBackward: dims must be an even integer in [2, 8] (the head dim), received 3',
    );
    await expect(ropeBackward(y, { style: 'spiral' as 'half' })).rejects.toThrow(
      "ropeBackward: style must be 'half' or 'interleaved', received spiral",
    );
    for (const t of [x, y]) t.destroy();
  });
});
