// Tensors with a dim of 0 (PyTorch's SDPA takes them): attention with no rows returns results with
// no elements; with no keys (Lk = 0) every row attends nothing (zeros, lse -Infinity or the sink);
// the backward gives zero gradients. Compared with the float64 reference, in every kernel form, the
// decode kernel, f16, layout 'blhd', `out` tensors that held other values and an app's encoder.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  type AttentionShape,
  attention,
  attentionBackward,
  type Context,
  matmul,
  planAttention,
  planAttentionBackward,
  type Tensor,
} from '../src';
import { decodeAttention } from '../src/ops/attention';
import {
  type AttentionCpuOptions,
  attentionBackwardCpu,
  attentionCpu,
  type HostTensor,
} from '../src/reference';
import { swapAxes12 } from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

interface EmptyCase extends AttentionShape {
  dtype?: 'f32' | 'f16';
  layout?: 'bhld' | 'blhd';
  causal?: boolean;
  /** per query head, as an array or (tensor) uploaded */
  sinks?: { values: number[]; tensor?: boolean };
  /** a bool mask of this shape (all true: nothing to mask) */
  mask?: number[];
  window?: [number, number];
  sequsedK?: number[];
}

const host = (shape: number[], seed: number): HostTensor => ({
  data: randomArray(
    rng(seed),
    shape.reduce((a, b) => a * b, 1),
    1,
  ),
  shape,
});

/** [B, H, L, D] data in the layout's order ([B, L, H, D] for 'blhd'). */
const inLayout = (h: HostTensor, layout = 'bhld'): HostTensor =>
  layout === 'blhd'
    ? {
        data: swapAxes12(h.data as Float32Array, h.shape),
        shape: [h.shape[0], h.shape[2], h.shape[1], h.shape[3]],
      }
    : h;

/** Uploads host data to `ctx` in `dtype` (f32 by default), pushing each tensor to `made`. */
const uploader =
  (ctx: Context, made: Tensor[], dtype: 'f32' | 'f16' = 'f32') =>
  (h: HostTensor, dt: 'f32' | 'f16' | 'bool' = dtype) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: dt as 'f32' });
    made.push(t);
    return t;
  };

describe('tensors with a dim of 0', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  it('are made, read back empty and refused by ops other than attention', async () => {
    const a = ctx.tensor([], [0, 4]);
    const b = ctx.zeros([4, 0], 'f16');
    const m = ctx.zeros([2, 0, 3], 'bool');
    expect(a.size).toBe(0);
    expect(await a.read()).toEqual(new Float32Array(0));
    expect(await b.read()).toEqual(new Float32Array(0));
    expect(await m.read()).toEqual(new Uint8Array(0));
    await expect(matmul(a, ctx.zeros([4, 3]))).rejects.toThrow(
      'matmul: a: tensor [0, 4] has no elements; of the ops, only attention and attentionBackward take tensors with a dim of 0',
    );
    expect(() => ctx.zeros([2, -1])).toThrow(
      'shape must be an array of non-negative integers, received [2,-1]',
    );
    for (const t of [a, b, m]) t.destroy();
  });
});

describe.each<AttentionKernel | 'decode'>(['workgroup', 'registers', 'tiled', 'decode'])(
  'attention with no rows or no keys, %s',
  (form) => {
    let ctx: Context;
    beforeAll(async () => {
      ctx = await testContext({ attentionKernel: form === 'decode' ? 'workgroup' : form });
    });
    afterAll(() => ctx?.destroy());
    const run = form === 'decode' ? decodeAttention : attention;

    /** Runs the case on the GPU and the reference; compares output and lse (and weights' shape). */
    const check = async (
      c: EmptyCase,
      extra: { out?: boolean; encoder?: boolean; weights?: boolean } = {},
    ) => {
      const dtype = c.dtype ?? 'f32';
      const layout = c.layout ?? 'bhld';
      const q = host([c.B, c.Hq, c.Lq, c.D], 1);
      const k = host([c.B, c.Hkv, c.Lk, c.D], 2);
      const v = host([c.B, c.Hkv, c.Lk, c.Dv], 3);
      const cpu: AttentionCpuOptions = {
        causal: c.causal,
        window: c.window,
        sinks: c.sinks?.values,
        sequsedK: c.sequsedK,
        mask: c.mask && {
          data: new Uint8Array(c.mask.reduce((a, b) => a * b, 1)).fill(1),
          shape: c.mask,
          dtype: 'bool',
        },
      };
      const ref = attentionCpu(q, k, v, cpu);
      const made: Tensor[] = [];
      const up = uploader(ctx, made, dtype);
      await checked(ctx, async () => {
        const [tq, tk, tv] = [q, k, v].map((h) => up(inLayout(h, layout)));
        const outShape = layout === 'blhd' ? [c.B, c.Lq, c.Hq, c.Dv] : [c.B, c.Hq, c.Lq, c.Dv];
        // `out` tensors that hold other values: every element must be written
        const out = extra.out
          ? {
              output: up({
                data: new Float32Array(outShape.reduce((a, b) => a * b, 1)).fill(7),
                shape: outShape,
              }),
              lse: up({ data: new Float32Array(c.B * c.Hq * c.Lq).fill(7), shape: [c.B, c.Hq, c.Lq] }, 'f32'),
            }
          : undefined;
        const encoder = extra.encoder ? ctx.device.createCommandEncoder() : undefined;
        const options = {
          layout,
          causal: c.causal,
          window: c.window,
          sequsedK: c.sequsedK,
          sinks: c.sinks?.tensor
            ? up({ data: Float32Array.from(c.sinks.values), shape: [c.Hq] }, 'f32')
            : c.sinks?.values,
          mask: cpu.mask && up(cpu.mask as HostTensor, 'bool'),
          returnLse: true as const,
          returnWeights: extra.weights,
          out,
          encoder,
        };
        const { out: _, encoder: __, ...forPlan } = options;
        const plan = planAttention(tq, tk, tv, forPlan);
        // no rows: nothing runs; no keys: the made-up call on one key that no row attends
        if (c.B * c.Hq * c.Lq === 0) expect(plan.path).toBe('empty');
        else expect(plan.shape.Lk).toBe(1);
        const result = await run(tq, tk, tv, options);
        if (encoder) ctx.device.queue.submit([encoder.finish()]);
        made.push(result.output, result.lse!, ...(result.weights ? [result.weights] : []));
        if (out) {
          expect(result.output).toBe(out.output);
          expect(result.lse).toBe(out.lse);
        }
        expect(result.output.shape).toEqual(outShape);
        expect(result.lse!.shape).toEqual([c.B, c.Hq, c.Lq]);
        if (extra.weights) expect(result.weights!.shape).toEqual([c.B, c.Hq, c.Lq, c.Lk]);
        const label = JSON.stringify({ form, ...c, ...extra });
        const output = await result.output.read();
        const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
        expectClose(
          layout === 'blhd' ? swapAxes12(output, outShape) : output,
          ref.output.data,
          tol,
          `${label} output`,
        );
        expectClose(await result.lse!.read(), ref.lse.data, tol, `${label} lse`);
        if (extra.weights) expect((await result.weights!.read()).length).toBe(0);
      });
      for (const t of made) t.destroy();
    };

    const base = { B: 2, Hq: 4, Hkv: 2, Lq: 5, D: 8, Dv: 6 };
    it('no keys: zeros, lse -Infinity', () => check({ ...base, Lk: 0 }));
    it('no keys, causal, a window, sequsedK and a mask [Lq, 0]', () =>
      check({ ...base, Lk: 0, causal: true, window: [2, 0], sequsedK: [0, 0], mask: [5, 0] }));
    it('no keys with sinks (array): lse = the sink', () =>
      check({ ...base, Lk: 0, sinks: { values: [0.5, -1, 0, 2] } }));
    it("no keys with sinks (tensor), f16, layout 'blhd', out tensors that held other values", () =>
      check(
        {
          ...base,
          Lq: 3,
          Lk: 0,
          dtype: 'f16',
          layout: 'blhd',
          sinks: { values: [1, 0, -2, 3], tensor: true },
        },
        { out: true },
      ));
    it("no keys, recorded into an app's encoder", () => check({ ...base, Lk: 0 }, { encoder: true }));
    if (form !== 'decode') {
      it('no keys with weights: weights [B, Hq, Lq, 0]', () => check({ ...base, Lk: 0 }, { weights: true }));
    }
    it('no rows: B, Hq (and Hkv) or Lq of 0', async () => {
      await check({ ...base, B: 0, Lk: 7 });
      await check({ ...base, Hq: 0, Hkv: 0, Lk: 7 });
      await check({ ...base, Hq: 0, Hkv: 2, Lk: 7, sinks: { values: [] } });
      await check({ ...base, Lq: 0, Lk: 7, causal: true, mask: [0, 7] }, { out: true });
      await check({ ...base, Lq: 0, Lk: 0, layout: 'blhd', dtype: 'f16' });
    });
  },
);

describe('attentionBackward with no rows or no keys', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  const check = async (
    s: AttentionShape,
    o: { sinks?: number[]; out?: boolean; layout?: 'bhld' | 'blhd' } = {},
  ) => {
    const layout = o.layout ?? 'bhld';
    const q = host([s.B, s.Hq, s.Lq, s.D], 4);
    const k = host([s.B, s.Hkv, s.Lk, s.D], 5);
    const v = host([s.B, s.Hkv, s.Lk, s.Dv], 6);
    const dO = host([s.B, s.Hq, s.Lq, s.Dv], 7);
    const ref = attentionBackwardCpu(q, k, v, dO, { sinks: o.sinks, causal: true });
    const made: Tensor[] = [];
    const up = uploader(ctx, made);
    await checked(ctx, async () => {
      const [tq, tk, tv] = [q, k, v].map((h) => up(inLayout(h, layout)));
      const options = { causal: true, sinks: o.sinks, layout };
      const forward = await attention(tq, tk, tv, { ...options, returnLse: true });
      made.push(forward.output, forward.lse!);
      const filled = (shape: number[]) =>
        up({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(7), shape });
      const shapeOf = (h: HostTensor) => [...inLayout(h, layout).shape];
      const out = o.out
        ? {
            dq: filled(shapeOf(q)),
            dk: filled(shapeOf(k)),
            dv: filled(shapeOf(v)),
            ...(o.sinks ? { dsinks: filled([s.Hq]) } : {}),
          }
        : undefined;
      const backward = { ...options, lse: forward.lse!, out };
      const dOutput = up(inLayout(dO, layout));
      expect(
        planAttentionBackward(tq, tk, tv, forward.output, dOutput, { ...options, lse: forward.lse! }).path,
      ).toBe('empty');
      const g = await attentionBackward(tq, tk, tv, forward.output, dOutput, backward);
      made.push(g.dq, g.dk, g.dv, ...(g.dsinks ? [g.dsinks] : []));
      const label = JSON.stringify({ ...s, ...o });
      for (const name of ['dq', 'dk', 'dv'] as const) {
        if (out) expect(g[name]).toBe(out[name]);
        const read = await g[name].read();
        expectClose(
          layout === 'blhd' ? swapAxes12(read, g[name].shape) : read,
          ref[name].data,
          F32_TOL,
          `${label} ${name}`,
        );
      }
      if (o.sinks) expectClose(await g.dsinks!.read(), ref.dsinks!.data, F32_TOL, `${label} dsinks`);
    });
    for (const t of made) t.destroy();
  };

  const base = { B: 2, Hq: 4, Hkv: 2, Lq: 5, D: 8, Dv: 6 };
  it('no keys: dq 0, dk and dv empty, dsinks 0', async () => {
    await check({ ...base, Lk: 0 });
    await check({ ...base, Lk: 0 }, { sinks: [1, 0, -1, 2], out: true, layout: 'blhd' });
  });
  it('no rows: dq empty, dk and dv 0', async () => {
    await check({ ...base, Lq: 0, Lk: 6 }, { out: true });
    await check({ ...base, B: 0, Lk: 6 }, { sinks: [1, 0, -1, 2] });
  });
});
