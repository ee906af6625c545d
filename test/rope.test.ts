import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, rope } from '../src';
import { ropeCpu } from '../src/reference';
import { compareOp } from './compare_op';
import { randomArray, rng, testContext } from './helpers';

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
  const random = rng(7);
  const n = c.shape.reduce((a, b) => a * b, 1);
  const options = { style: c.style, dims: c.dims, base: c.base, offset: c.offset };
  await compareOp(ctx, {
    inputs: { x: { data: randomArray(random, n), shape: c.shape } },
    dtype: c.dtype,
    gpu: ({ x }) => rope(x, options),
    ref: ({ x }) => ropeCpu(x, options),
    label: JSON.stringify(c),
  });
}

describe('rope', () => {
  it('half-split, all dims', () => check({ shape: [2, 3, 5, 8], style: 'half' }));
  it('interleaved, all dims', () => check({ shape: [2, 3, 5, 8], style: 'interleaved' }));
  it('partial rotation of an odd head dim, custom base, large offset', async () => {
    await check({ shape: [1, 2, 7, 7], style: 'half', dims: 4, base: 500, offset: 1000 });
    await check({ shape: [1, 2, 7, 7], style: 'interleaved', dims: 6, offset: 123457 });
  });
  it('more elements than one workgroup, one row', () => check({ shape: [1, 1, 1, 130], style: 'half' }));
  it('f16 storage', async () => {
    await check({ shape: [1, 3, 5, 6], style: 'half', dtype: 'f16' });
    await check({ shape: [2, 1, 3, 5], style: 'interleaved', dims: 4, offset: 9, dtype: 'f16' });
  });

  it('rejects bad options with the expected and received values', async () => {
    const x = ctx.tensor(new Float32Array(8), [1, 1, 1, 8]);
    await expect(rope(x, { style: 'spiral' as 'half' })).rejects.toThrow(
      "rope: style must be 'half' or 'interleaved', received spiral",
    );
    await expect(rope(x, { style: 'half', dims: 3 })).rejects.toThrow(
      'rope: dims must be an even integer in [2, 8] (the head dim), received 3',
    );
    await expect(rope(x, { style: 'half', offset: -1 })).rejects.toThrow(
      'rope: offset must be a non-negative integer, received -1',
    );
    const flat = ctx.tensor(new Float32Array(8), [1, 8]);
    await expect(rope(flat, { style: 'half' })).rejects.toThrow(
      'rope: x: expected rank 4 [B, H, L, D], received shape [1, 8]',
    );
    x.destroy();
    flat.destroy();
  });
});
