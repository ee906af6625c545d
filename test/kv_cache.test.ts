import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, type Context, KVCache, softmax, type Tensor } from '../src';
import { attentionCpu, type HostTensor } from '../src/reference';
import { type Case, caseInputs, inLayout, swapAxes12 } from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext({ disableFeatures: ['shader-f16'] });
});
afterAll(() => ctx?.destroy());

/** Positions [from, to) of dim 2 of a [B, H, L, C] array. */
function positions(
  data: ArrayLike<number>,
  shape: readonly number[],
  from: number,
  to: number,
): Float32Array {
  const [B, H, L, C] = shape;
  const out = new Float32Array(B * H * (to - from) * C);
  for (let bh = 0; bh < B * H; bh++) {
    for (let i = from; i < to; i++) {
      for (let c = 0; c < C; c++) out[(bh * (to - from) + i - from) * C + c] = data[(bh * L + i) * C + c];
    }
  }
  return out;
}

/**
 * Runs a sequence through the cache in steps of `steps` positions (append, then causal attention
 * over the cache) and checks the outputs against one causal call over the whole sequence, on the
 * GPU and in the float64 reference.
 */
async function decodeThroughCache(c: Case, steps: number[], capacity: number) {
  const L = c.Lq;
  const layout = c.layout ?? 'bhld';
  const inputs = caseInputs({ ...c, Lk: L, causal: true });
  const ref = attentionCpu(inputs.q, inputs.k, inputs.v, { causal: true });
  const dtype = c.dtype ?? 'f32';
  const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
  const cache = new KVCache(ctx, {
    batch: c.B,
    kvHeads: c.Hkv,
    headDim: c.D,
    valueDim: c.Dv,
    capacity,
    dtype,
    layout,
  });
  const made: Tensor[] = [];
  const up = (data: Float32Array, shape: readonly number[]) => {
    const t = ctx.tensor(data, shape, { dtype });
    made.push(t);
    return t;
  };
  await checked(ctx, async () => {
    const full = await attention(
      up(inputs.q.data as Float32Array, [c.B, c.Hq, L, c.D]),
      up(inputs.k.data as Float32Array, [c.B, c.Hkv, L, c.D]),
      up(inputs.v.data as Float32Array, [c.B, c.Hkv, L, c.Dv]),
      { causal: true },
    );
    made.push(full.output);
    const fullOut = await full.output.read();

    const stepped = new Float32Array(c.B * c.Hq * L * c.Dv);
    const steppedLse = new Float32Array(c.B * c.Hq * L);
    let at = 0;
    for (const n of steps) {
      // positions [at, at + n), in the layout
      const slice = (h: HostTensor) => {
        const t = inLayout(
          {
            ...h,
            data: positions(h.data as Float32Array, h.shape, at, at + n),
            shape: [h.shape[0], h.shape[1], n, h.shape[3]],
          },
          layout,
        );
        return up(t.data as Float32Array, t.shape);
      };
      const { k, v } = await cache.append(slice(inputs.k), slice(inputs.v));
      expect(cache.length).toBe(at + n);
      expect(k.shape).toEqual(layout === 'blhd' ? [c.B, at + n, c.Hkv, c.D] : [c.B, c.Hkv, at + n, c.D]);
      const r = await attention(slice(inputs.q), k, v, { causal: true, returnLse: true, layout });
      made.push(r.output, r.lse!);
      const read = await r.output.read();
      const out = layout === 'blhd' ? swapAxes12(read, r.output.shape) : read;
      const lse = await r.lse!.read();
      for (let bh = 0; bh < c.B * c.Hq; bh++) {
        stepped.set(out.subarray(bh * n * c.Dv, (bh + 1) * n * c.Dv), (bh * L + at) * c.Dv);
        steppedLse.set(lse.subarray(bh * n, (bh + 1) * n), bh * L + at);
      }
      at += n;
    }
    const label = JSON.stringify({ ...c, steps, capacity });
    expectClose(stepped, ref.output.data, tol, `${label} stepped output vs reference`);
    expectClose(steppedLse, ref.lse.data, tol, `${label} stepped lse vs reference`);
    expectClose(stepped, fullOut, tol, `${label} stepped output vs one causal call`);
  });
  for (const t of made) t.destroy();
  cache.destroy();
}

describe('decoding through the cache equals one causal call over the whole sequence', () => {
  it('prefill, single steps and a 2-position step; GQA, Dv != D (flash kernel)', () =>
    decodeThroughCache({ B: 2, Hq: 4, Hkv: 2, Lq: 14, Lk: 14, D: 8, Dv: 5 }, [7, 1, 1, 1, 1, 1, 2], 20));

  for (const dtype of ['f32', 'f16'] as const) {
    it(`${dtype}: single steps past 256 positions (split-K decode kernel), odd D`, () =>
      decodeThroughCache({ B: 1, Hq: 4, Hkv: 2, Lq: 258, Lk: 258, D: 3, Dv: 5, dtype }, [255, 1, 1, 1], 300));
  }
  it("layout 'blhd': appends [B, n, Hkv, D] and attends through [B, length, Hkv, D] views (flash and decode)", () =>
    decodeThroughCache(
      { B: 2, Hq: 4, Hkv: 2, Lq: 40, Lk: 40, D: 8, Dv: 4, layout: 'blhd' },
      [5, 1, 30, 2, 1, 1],
      48,
    ));
});

describe('append', () => {
  it('writes f16 rows bit-exactly in place, also rows that share packed words, and reset clears', async () => {
    const random = rng(7);
    const cache = new KVCache(ctx, {
      batch: 2,
      kvHeads: 3,
      headDim: 3,
      valueDim: 1,
      capacity: 7,
      dtype: 'f16',
    });
    await checked(ctx, async () => {
      const made: Tensor[] = [];
      const step = (n: number) => {
        const k = ctx.tensor(randomArray(random, 2 * 3 * n * 3), [2, 3, n, 3], { dtype: 'f16' });
        const v = ctx.tensor(randomArray(random, 2 * 3 * n), [2, 3, n, 1], { dtype: 'f16' });
        made.push(k, v);
        return { k, v };
      };
      const steps = [step(3), step(1), step(2)];
      for (const s of steps) await cache.append(s.k, s.v);
      const expectedK = new Float32Array(2 * 3 * 6 * 3);
      const expectedV = new Float32Array(2 * 3 * 6);
      let at = 0;
      for (const s of steps) {
        const n = s.k.shape[2];
        const [k, v] = [await s.k.read(), await s.v.read()];
        for (let bh = 0; bh < 6; bh++) {
          expectedK.set(k.subarray(bh * n * 3, (bh + 1) * n * 3), (bh * 6 + at) * 3);
          expectedV.set(v.subarray(bh * n, (bh + 1) * n), bh * 6 + at);
        }
        at += n;
      }
      expect(Array.from(await cache.keys.read())).toEqual(Array.from(expectedK));
      expect(Array.from(await cache.values.read())).toEqual(Array.from(expectedV));

      cache.reset();
      expect(cache.length).toBe(0);
      const fresh = step(1);
      const { k, v } = await cache.append(fresh.k, fresh.v);
      expect(Array.from(await k.read())).toEqual(Array.from(await fresh.k.read()));
      expect(Array.from(await v.read())).toEqual(Array.from(await fresh.v.read()));
      for (const t of made) t.destroy();
    });
    cache.destroy();
  });

  it('a step past the capacity throws, naming capacity, length and step', async () => {
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 4, capacity: 4 });
    const t = (n: number) => ctx.tensor(new Float32Array(n * 4), [1, 1, n, 4]);
    await cache.append(t(3), t(3));
    await expect(cache.append(t(2), t(2))).rejects.toThrow(
      'KVCache.append: a step of 2 positions at length 3 would exceed the capacity 4',
    );
    expect(cache.length).toBe(3);
    cache.destroy();
  });

  it('bad steps throw an error naming the argument', async () => {
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 2, headDim: 4, valueDim: 3, capacity: 8 });
    const t = (shape: number[], dtype: 'f32' | 'f16' = 'f32') =>
      ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
    await expect(cache.append(t([1, 2, 1, 4]), t([1, 2, 1, 4]))).rejects.toThrow(
      'KVCache.append: v must have shape [1, 2, 1, 3], received [1, 2, 1, 4]',
    );
    await expect(cache.append(t([1, 1, 1, 4]), t([1, 2, 1, 3]))).rejects.toThrow(
      'KVCache.append: k must have shape [1, 2, 1, 4], received [1, 1, 1, 4]',
    );
    await expect(cache.append(t([1, 2, 1, 4], 'f16'), t([1, 2, 1, 3]))).rejects.toThrow(
      "KVCache.append: k must have dtype 'f32', received 'f16'",
    );
    expect(() => cache.keys).toThrow('KVCache.keys: the cache is empty; append first');
    expect(() => new KVCache(ctx, { batch: 1, kvHeads: 0, headDim: 4, capacity: 8 })).toThrow(
      'KVCache: options.kvHeads must be a positive integer, received 0',
    );
    cache.destroy();
    await expect(cache.append(t([1, 2, 1, 4]), t([1, 2, 1, 3]))).rejects.toThrow(
      'KVCache.append: the cache was destroyed',
    );
    const blhd = new KVCache(ctx, { batch: 1, kvHeads: 2, headDim: 4, capacity: 8, layout: 'blhd' });
    await expect(blhd.append(t([1, 2, 1, 4]), t([1, 1, 2, 4]))).rejects.toThrow(
      "KVCache.append: k must have shape [1, 2, 2, 4] (layout 'blhd'), received [1, 2, 1, 4]",
    );
    blhd.destroy();
  });

  it('views are refused by ops that need contiguous tensors', async () => {
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 4, capacity: 8 });
    const k = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    const { k: view } = await cache.append(k, k);
    await expect(softmax(view)).rejects.toThrow(
      'softmax: x: expected a contiguous tensor, received a view [1, 1, 2, 4] with strides [32, 32, 4, 1]',
    );
    // attention reads q, k and v through their strides; its output must be contiguous
    await expect(attention(k, view, view, { out: { output: view } })).rejects.toThrow(
      'attention: out.output: expected a contiguous tensor, received a view [1, 1, 2, 4] with strides [32, 32, 4, 1]',
    );
    k.destroy();
    cache.destroy();
  });

  it('views of a destroyed cache throw a clear error instead of reaching the GPU', async () => {
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 4, capacity: 8 });
    const q = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    const { k, v } = await cache.append(q, q);
    cache.destroy();
    expect(cache.destroyed).toBe(true);
    expect(k.destroyed).toBe(true);
    await expect(attention(q, k, v)).rejects.toThrow(
      'attention: k: tensor [1, 1, 2, 4] is a view of a KVCache that was destroyed',
    );
    await expect(k.read()).rejects.toThrow(
      'read: tensor [1, 1, 2, 4] is a view of a KVCache that was destroyed',
    );
    q.destroy();
  });

  it('destroy frees its buffers', () => {
    const before = ctx.liveBytes;
    const cache = new KVCache(ctx, { batch: 2, kvHeads: 2, headDim: 8, capacity: 16, dtype: 'f16' });
    expect(ctx.liveBytes).toBe(before + 2 * 2 * 2 * 16 * 8 * 2);
    cache.destroy();
    cache.destroy();
    expect(ctx.liveBytes).toBe(before);
  });
});
