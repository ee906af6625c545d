// Our library: the fused op (`attention`) and the composed path (matmul -> softmax -> matmul).
import { attention, type Context, matmul, planAttention, softmax, type Tensor } from '../../src';
import type { PassProbe } from '../probe';
import type { BenchInputs, CallStats, Impl } from './types';

/** Runs `call` on `ctx` with peak bytes, dispatches and GPU time recorded; frees what it returns. */
async function measured(ctx: Context, probe: PassProbe, call: () => Promise<Tensor[]>): Promise<CallStats> {
  const before = ctx.liveBytes;
  ctx.resetPeak();
  const { value, probe: p } = await probe.record(call);
  const peakBytes = ctx.peakBytes - before;
  for (const t of value) t.destroy();
  return { doneAt: p.doneAt, gpuMs: p.gpuMs, dispatches: p.dispatches, peakBytes };
}

function upload(ctx: Context, inputs: BenchInputs) {
  const { B, Hq, Hkv, Lq, Lk, D } = inputs.shape;
  return {
    q: ctx.tensor(inputs.q, [B, Hq, Lq, D], { label: 'bench:q' }),
    k: ctx.tensor(inputs.k, [B, Hkv, Lk, D], { label: 'bench:k' }),
    v: ctx.tensor(inputs.v, [B, Hkv, Lk, D], { label: 'bench:v' }),
  };
}

/**
 * The fused op, one call of `attention`, in the kernel form `ctx` chose for the adapter; with
 * `other`, on a context of the same device forced to the other form (to show what the choice buys).
 */
export function oursFused(
  ctx: Context,
  probe: PassProbe,
  id: 'ours' | 'ours-other' | 'ours-tiled' = 'ours',
): Impl {
  return {
    id,
    label: id === 'ours' ? 'ours fused' : `ours fused, ${ctx.attentionKernel} form`,
    kind: 'ours',
    // the other form is the slow one on this adapter by the context's own rule; the tiled form is
    // slow on CPU adapters (as the workgroup form is), maybe the fastest on a GPU
    slow: id === 'ours-other' || (id === 'ours-tiled' && ctx.adapterInfo.isFallbackAdapter),
    async prepare(inputs) {
      const { q, k, v } = upload(ctx, inputs);
      const { causal } = inputs.shape;
      const plan = planAttention(q, k, v, { causal });
      const kernel =
        plan.path === 'flash' || plan.path === 'decode'
          ? `${plan.path === 'decode' ? 'split-K decode' : 'flash'} (${plan.kernel})`
          : plan.path;
      const call = async () => [(await attention(q, k, v, { causal })).output];
      return {
        device: ctx.device,
        run: async () => ({ ...(await measured(ctx, probe, call)), kernel }),
        output: async () => {
          const { output } = await attention(q, k, v, { causal });
          const data = (await output.read()) as Float32Array;
          output.destroy();
          return data;
        },
        dispose: () => {
          for (const t of [q, k, v]) t.destroy();
        },
      };
    },
    dispose() {
      if (id !== 'ours') ctx.destroy();
    },
  };
}

/**
 * The composed path a user would write without a fused op: scores = q·kᵀ·scale, softmax (causal
 * in the softmax op), output = weights·v. GQA without causal folds the query heads of a group into
 * rows ([B, Hkv, group·Lq, D] is the same buffer), so k and v are not repeated.
 */
export function oursComposed(ctx: Context, probe: PassProbe): Impl {
  return {
    id: 'composed',
    label: 'ours composed',
    kind: 'ours',
    slow: true,
    unsupported: (s) =>
      s.causal && s.Hq !== s.Hkv ? 'causal GQA would need k, v repeated (not benchmarked)' : undefined,
    async prepare(inputs) {
      const { B, Hq, Hkv, Lq, D, causal } = inputs.shape;
      const { q, k, v } = upload(ctx, inputs);
      const qRows = ctx.wrap(q.buffer, [B, Hkv, (Hq / Hkv) * Lq, D]);
      const call = async () => {
        const scores = await matmul(qRows, k, { transposeB: true, alpha: 1 / Math.sqrt(D) });
        const weights = await softmax(scores, { causal });
        scores.destroy();
        const out = await matmul(weights, v);
        weights.destroy();
        return [out];
      };
      return {
        device: ctx.device,
        run: () => measured(ctx, probe, call),
        output: async () => {
          const [out] = await call();
          const data = (await out.read()) as Float32Array;
          out.destroy();
          return data;
        },
        dispose: () => {
          for (const t of [q, k, v]) t.destroy();
        },
      };
    },
    dispose() {},
  };
}
