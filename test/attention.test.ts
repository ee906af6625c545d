import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttentionKernel, attention, type Context, planAttention } from '../src';
import { attentionCpu } from '../src/reference';
import { type Case, caseInputs, checkCase, kernelOf, swapAxes12 } from './attention_cases';
import { checked, expectClose, F32_TOL, planAsGpu, testContext } from './helpers';

const base = { B: 1, Hq: 2, Hkv: 2, Lq: 16, Lk: 16, D: 8, Dv: 8 };

// Every flash kernel form, on any adapter. 'registers' leaves the weights output (and head dims
// that are not multiples of 4) to 'workgroup', 'tiled' the weights output and decode, so their
// cases compare output and lse and check that they ran them.
// The tiled form exchanges row maxima and sums by subgroup shuffles where the device has subgroups
// (SwiftShader's size 4 takes two of the three butterfly steps, the third goes through workgroup
// memory), else through workgroup memory alone: its cases here run without subgroups, those of the
// other specs (fuzz, sparse, numerics, dropout) with them (no pipeline compiled twice).
describe.each<AttentionKernel>(['workgroup', 'registers', 'tiled'])('%s kernel', (kernel) => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext({
      attentionKernel: kernel,
      disableFeatures: kernel === 'tiled' ? ['subgroups'] : [],
    });
  });
  afterAll(() => ctx?.destroy());

  /** One case on the GPU and on the float64 reference: output, lse and (workgroup) weights compared. */
  const check = async (c: Case, outputs = { lse: true, weights: kernel === 'workgroup' }) => {
    const plan = await checkCase(ctx, attention, c, outputs);
    const fits =
      kernel === 'registers'
        ? c.D % 4 === 0 && c.Dv % 4 === 0 && !outputs.weights
        : kernel === 'tiled' && !outputs.weights && plan.path !== 'decode';
    expect(kernelOf(plan)).toBe(fits ? kernel : 'workgroup');
    if (plan.path === 'flash' && plan.kernel === 'tiled') expect(plan.subgroups).toBe(ctx.hasSubgroups);
    return plan;
  };

  describe('attention matches the float64 reference', () => {
    it('size 1 everywhere', () => check({ B: 1, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, D: 1, Dv: 1 }));
    it('odd sizes, Dv != D, cross-attention', () =>
      check({ B: 3, Hq: 3, Hkv: 3, Lq: 7, Lk: 13, D: 5, Dv: 3 }));
    it('keys not a multiple of the tile', () => check({ ...base, Lk: 33, D: 16, Dv: 16 }));
    it('queries longer than a workgroup', () => check({ ...base, Lq: 130, Lk: 70, D: 12, Dv: 20 }));
    it('more keys than queries', () => check({ ...base, Lq: 3, Lk: 200 }));
    it('scale option', () => check({ ...base, scale: 0.37 }));
    it('negative scale (the row maximum is of the scaled scores), causal, large logits', () =>
      check({ ...base, Lq: 21, Lk: 45, causal: true, magnitude: 4, scale: -0.8 }));
    it('scale 0: uniform weights over the allowed keys', () =>
      check({ ...base, Lk: 23, scale: 0, mask: { kind: 'bool', shape: [16, 23] } }));
    it('GQA: 6 query heads on 2 kv heads', () => check({ ...base, Hq: 6, Hkv: 2, Lq: 9, Lk: 11 }));
    it('MQA: 4 query heads on 1 kv head', () => check({ ...base, B: 2, Hq: 4, Hkv: 1 }));
    it('head dim 64', () => check({ ...base, Lq: 40, Lk: 75, D: 64, Dv: 64 }));
    it('head dim 128 with Dv 96', () => check({ ...base, Hq: 1, Hkv: 1, Lq: 20, Lk: 45, D: 128, Dv: 96 }));
    it('head dim 256', () => check({ ...base, Hq: 1, Hkv: 1, Lq: 9, Lk: 21, D: 256, Dv: 256 }));
    it('large logits (about 1e4 after scaling)', () =>
      check({ ...base, D: 4, Dv: 4, magnitude: 100, scale: 1 }, { lse: true, weights: false }));
  });

  describe('causal (bottom-right aligned)', () => {
    it('Lq == Lk', () => check({ ...base, Lq: 37, Lk: 37, causal: true }));
    it('Lq < Lk (KV-cache decoding)', () => check({ ...base, Lq: 5, Lk: 40, causal: true }));
    it('Lq > Lk: the first rows attend nothing (zeros, lse -Infinity)', () =>
      check({ ...base, Lq: 20, Lk: 6, causal: true }));
    it('one query against the cache', () => check({ ...base, Lq: 1, Lk: 77, causal: true }));
    it('long causal, several query blocks and tiles', () =>
      check({ ...base, Hq: 1, Hkv: 1, Lq: 150, Lk: 150, causal: true }));
    it('causal with GQA and a mask', () =>
      check({
        ...base,
        Hq: 4,
        Hkv: 2,
        Lq: 12,
        Lk: 19,
        causal: true,
        mask: { kind: 'bool', shape: [1, 1, 12, 19] },
      }));
  });

  describe("layout 'blhd': [B, L, H, D] read and written in place", () => {
    it('GQA, causal, Lq < Lk, Dv != D, B = 2', () =>
      check({ ...base, B: 2, Hq: 6, Hkv: 2, Lq: 9, Lk: 21, D: 8, Dv: 12, causal: true, layout: 'blhd' }));
    it('odd head dims, Lq > Lk, bool mask', () =>
      check({
        B: 2,
        Hq: 3,
        Hkv: 3,
        Lq: 70,
        Lk: 13,
        D: 5,
        Dv: 3,
        mask: { kind: 'bool', shape: [3, 70, 13] },
        layout: 'blhd',
      }));
    it('f16', () =>
      check({ ...base, Hq: 4, Hkv: 2, Lq: 20, Lk: 33, D: 16, Dv: 16, dtype: 'f16', layout: 'blhd' }));
    it('keys split over workgroups (tiled, workgroup on a GPU: partials merged into the [B, L, H, Dv] output)', async () => {
      const c: Case = {
        ...base,
        Hq: 4,
        Hkv: 2,
        Lq: 20,
        Lk: 600,
        D: 8,
        // two value chunks of the tiled form, the second partial
        Dv: 36,
        causal: true,
        layout: 'blhd',
      };
      if (kernel === 'registers') return void (await check(c));
      // the workgroup form splits on GPUs only, not on fallback adapters such as SwiftShader
      const on = kernel === 'workgroup' ? planAsGpu(ctx, kernel) : ctx;
      const plan = await checkCase(on, attention, c, { lse: true });
      expect(plan.path === 'flash' && plan.kernel === kernel ? plan.keySplits : 1).toBeGreaterThan(1);
      if (on !== ctx) on.destroy();
    });
    it('q, k and v wrapped from one packed [B, L, 3, H, D] buffer (strides, no copies)', async () => {
      // H * D * 4 = 256 bytes: k and v start at offsets the device can bind
      const c = { B: 2, Hq: 4, Hkv: 4, Lq: 11, Lk: 11, D: 16, Dv: 16, causal: true, seed: 7 };
      const { B, Hq: H, Lq: L, D } = c;
      const inputs = caseInputs(c);
      const ref = attentionCpu(inputs.q, inputs.k, inputs.v, { causal: true });
      const packed = new Float32Array(B * L * 3 * H * D);
      [inputs.q, inputs.k, inputs.v].forEach((t, part) => {
        const blhd = swapAxes12(t.data as Float32Array, t.shape);
        for (let row = 0; row < B * L; row++) {
          packed.set(blhd.subarray(row * H * D, (row + 1) * H * D), (row * 3 + part) * H * D);
        }
      });
      const buffer = ctx.device.createBuffer({
        size: packed.byteLength,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      ctx.device.queue.writeBuffer(buffer, 0, packed);
      const strides = [L * 3 * H * D, 3 * H * D, D, 1];
      const [q, k, v] = [0, 1, 2].map((part) =>
        ctx.wrap(buffer, [B, L, H, D], { offset: part * H * D * 4, strides }),
      );
      const options = { causal: true, layout: 'blhd', returnLse: true } as const;
      expect(kernelOf(planAttention(q, k, v, options))).toBe(kernel);
      const { output, lse } = await checked(ctx, () => attention(q, k, v, options));
      expectClose(swapAxes12(await output.read(), output.shape), ref.output.data, F32_TOL, 'output');
      expectClose(await lse.read(), ref.lse.data, F32_TOL, 'lse');
      // rows 6 elements apart cannot be read as four-element chunks: the workgroup form runs them
      // (the tiled form reads elements)
      const padded = ctx.wrap(buffer, [1, 2, 2, 4], { strides: [24, 12, 6, 1] });
      expect(kernelOf(planAttention(padded, padded, padded, { layout: 'blhd' }))).toBe(
        kernel === 'tiled' ? 'tiled' : 'workgroup',
      );
      for (const t of [q, k, v, output, lse, padded]) t.destroy();
      buffer.destroy();
    });
  });

  describe('masks', () => {
    it('bool mask, full shape', () =>
      check({ ...base, B: 2, mask: { kind: 'bool', shape: [2, 2, 16, 16] } }));
    it('bool mask [Lk] (key padding) broadcast', () =>
      check({ ...base, Lk: 35, mask: { kind: 'bool', shape: [35] } }));
    it('bool mask [B, 1, 1, Lk] broadcast', () =>
      check({ ...base, B: 3, Lk: 10, mask: { kind: 'bool', shape: [3, 1, 1, 10], pTrue: 0.5 } }));
    it('bool mask [Hq, Lq, Lk] broadcast over batch', () =>
      check({ ...base, B: 2, Lq: 5, Lk: 9, mask: { kind: 'bool', shape: [2, 5, 9] } }));
    it('bool mask that empties rows and whole tiles', () =>
      check({ ...base, Lq: 70, Lk: 100, mask: { kind: 'bool', shape: [70, 100], pTrue: 0.02 } }));
    it('bool mask that empties everything', () =>
      check({ ...base, mask: { kind: 'bool', shape: [1], pTrue: 0 } }));
    it('additive mask with -Infinity entries', () =>
      check({ ...base, Lq: 9, Lk: 40, mask: { kind: 'additive', shape: [1, 2, 9, 40] } }));
    it('additive mask [Lq, Lk] broadcast, mostly -Infinity', () =>
      check({ ...base, Lq: 33, Lk: 66, mask: { kind: 'additive', shape: [33, 66], pTrue: 0.05 } }));
  });
});

// Random configurations (500, with f16 and decode sizes) are in fuzz.test.ts.

describe('bad input throws an error naming the argument', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());
  const t = (shape: number[]) => ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  it('wrong rank', async () => {
    await expect(attention(t([2, 4, 8]), t([1, 2, 4, 8]), t([1, 2, 4, 8]))).rejects.toThrow(
      'attention: q: expected rank 4 [B, Hq, Lq, D], received shape [2, 4, 8]',
    );
  });
  it('Hq not a multiple of Hkv', async () => {
    await expect(attention(t([1, 3, 4, 8]), t([1, 2, 4, 8]), t([1, 2, 4, 8]))).rejects.toThrow(
      'attention: q heads (3) must be a multiple of k heads (2), received q [1, 3, 4, 8] and k [1, 2, 4, 8]',
    );
  });
  it("layout 'blhd': shapes read as [B, L, H, D], messages name the layout", async () => {
    const blhd = { layout: 'blhd' } as const;
    // q [B 1, Lq 4, Hq 2, D 8] against k with 3 heads
    await expect(attention(t([1, 4, 2, 8]), t([1, 5, 3, 8]), t([1, 5, 3, 8]), blhd)).rejects.toThrow(
      "attention: q heads (2) must be a multiple of k heads (3), received q [1, 4, 2, 8] and k [1, 5, 3, 8] (layout 'blhd': [B, L, H, D])",
    );
    await expect(attention(t([1, 4, 2, 8]), t([1, 5, 2, 8]), t([1, 6, 2, 8]), blhd)).rejects.toThrow(
      "attention: v must have shape [1, 5, 2, Dv] like k, received [1, 6, 2, 8] (layout 'blhd': [B, L, H, D])",
    );
    await expect(attention(t([4, 2, 8]), t([1, 5, 2, 8]), t([1, 5, 2, 8]), blhd)).rejects.toThrow(
      "attention: q (layout 'blhd'): expected rank 4 [B, Lq, Hq, D], received shape [4, 2, 8]",
    );
    const out = { output: t([1, 2, 4, 8]) };
    await expect(
      attention(t([1, 4, 2, 8]), t([1, 5, 2, 8]), t([1, 5, 2, 8]), { ...blhd, out }),
    ).rejects.toThrow(
      'attention: out.output: expected a f32 tensor of shape [1, 4, 2, 8], received f32 [1, 2, 4, 8]',
    );
    const buffer = ctx.device.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE });
    expect(() => ctx.wrap(buffer, [2, 4, 8], { strides: [32, 8] })).toThrow(
      'wrap: strides must be 3 non-negative integers (one per dim of [2, 4, 8]), the last 1, received [32, 8]',
    );
    expect(() => ctx.wrap(buffer, [2, 4, 8], { strides: [200, 24, 1] })).toThrow(
      'wrap: buffer has 1024 bytes, expected at least 1120 for f32 shape [2, 4, 8] at offset 0',
    );
    buffer.destroy();
    const opts = { layout: 'bshd' } as unknown as Parameters<typeof attention>[3];
    await expect(attention(t([1, 4, 2, 8]), t([1, 5, 2, 8]), t([1, 5, 2, 8]), opts)).rejects.toThrow(
      `attention: options.layout must be 'bhld' or 'blhd', received "bshd"`,
    );
  });
  it('head dims differ', async () => {
    await expect(attention(t([1, 2, 4, 8]), t([1, 2, 4, 6]), t([1, 2, 4, 8]))).rejects.toThrow(
      'attention: k head dim must equal q head dim 8, received k shape [1, 2, 4, 6]',
    );
  });
  it('v does not match k', async () => {
    await expect(attention(t([1, 2, 4, 8]), t([1, 2, 4, 8]), t([1, 2, 5, 8]))).rejects.toThrow(
      'attention: v must have shape [1, 2, 4, Dv] like k, received [1, 2, 5, 8]',
    );
  });
  it('mask that cannot broadcast', async () => {
    const mask = ctx.tensor(new Uint8Array(3 * 4), [3, 4], { dtype: 'bool' });
    await expect(attention(t([1, 2, 4, 8]), t([1, 2, 4, 8]), t([1, 2, 4, 8]), { mask })).rejects.toThrow(
      'attention: mask: shape [3, 4] cannot broadcast to [1, 2, 4, 4] (dim 0 is 3, expected 4 or 1)',
    );
  });
  it('unknown option', async () => {
    const opts = { casual: true } as unknown as Parameters<typeof attention>[3];
    await expect(attention(t([1, 1, 2, 4]), t([1, 1, 2, 4]), t([1, 1, 2, 4]), opts)).rejects.toThrow(
      "attention: unknown option 'casual', expected one of scale, causal, mask, returnLse, returnWeights",
    );
  });
  it('scale not finite', async () => {
    await expect(
      attention(t([1, 1, 2, 4]), t([1, 1, 2, 4]), t([1, 1, 2, 4]), { scale: Number.NaN }),
    ).rejects.toThrow('attention: options.scale must be a finite number, received NaN');
  });
  it('tensor from another context', async () => {
    const other = await testContext();
    const k = other.tensor(new Float32Array(8), [1, 1, 2, 4]);
    await expect(attention(t([1, 1, 2, 4]), k, t([1, 1, 2, 4]))).rejects.toThrow(
      'attention: k: tensor belongs to another context',
    );
    other.destroy();
  });
  it('destroyed tensor', async () => {
    const q = t([1, 1, 2, 4]);
    q.destroy();
    await expect(attention(q, t([1, 1, 2, 4]), t([1, 1, 2, 4]))).rejects.toThrow(
      'attention: q: tensor [1, 1, 2, 4] was destroyed',
    );
  });
});
