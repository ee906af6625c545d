// attention(): check -> plan -> programs -> run. The plan (attention_plan.ts) decides how the call
// runs; the executors record its programs into one Recording, submitted as one command buffer.
import { Recording } from '../program';
import type { Tensor } from '../tensor';
import { type AttentionOptions, type AttentionResult, checkAttentionInputs, plan } from './attention_plan';
import { recordBlocks, recordCore, recordHeads } from './attention_split';

export type { AttentionOptions, AttentionResult };

/**
 * Scaled dot-product attention: softmax(q kᵀ · scale + mask) v, fused: one dispatch of the flash
 * kernel, or for few queries against many keys the split-K decode kernel (two dispatches), each
 * in the form the context chose ({@link Context.attentionKernel}); {@link planAttention} tells
 * which. q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> output [B, Hq, Lq, Dv].
 * Hq must be a multiple of Hkv (query head h reads kv head floor(h / (Hq / Hkv))).
 * q, k and v are all 'f32' or all 'f16' (halves in memory; max, sum and output accumulate in f32);
 * the output has their dtype, lse and weights are 'f32'. k and v may be a `KVCache`'s views
 * (`cache.keys`, `cache.values`, or what `cache.append` returns), read in place. The promise
 * resolves once the work is submitted; `read()` of a result waits for the GPU.
 *
 * @example
 * const { output } = await attention(q, k, v, { causal: true });
 * const values = await output.read();
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  return runAttention(q, k, v, options);
}

/**
 * @internal `attention` through the split-K decode kernel whatever the sizes (tests run that
 * kernel on shapes `attention` would give the flash kernel).
 */
export async function decodeAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  if (options.returnWeights) {
    throw new Error('decodeAttention: returnWeights is not supported by the split-K kernel, received true');
  }
  return runAttention(q, k, v, options, 'decode');
}

async function runAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
  force?: 'decode',
): Promise<AttentionResult> {
  const shape = checkAttentionInputs(q, k, v, options);
  const { ctx } = q;
  const { mask } = options;
  const p = plan({ ctx, shape, dtype: q.dtype, mask }, options, force);
  const { B, Hq, Lq, Lk, Dv } = shape;
  const output = ctx.zeros([B, Hq, Lq, Dv], q.dtype, 'attention:output');
  const lse = options.returnLse ? ctx.zeros([B, Hq, Lq], 'f32', 'attention:lse') : undefined;
  const weights = options.returnWeights ? ctx.zeros([B, Hq, Lq, Lk], 'f32', 'attention:weights') : undefined;
  const rec = new Recording(ctx, 'attention');
  try {
    const call = { q, k, v, mask, output: output.buffer, lse: lse?.buffer, weights: weights?.buffer };
    if (p.path === 'heads') recordHeads(rec, p, call);
    else if (p.path === 'blocks') recordBlocks(rec, p, call, options);
    else {
      const io = { ...call, q: q.buffer, k: k.buffer, v: v.buffer, mask: mask?.buffer };
      recordCore(rec, p, { ...io, kStride: k.rowStride, vStride: v.rowStride });
    }
    await rec.submit();
  } catch (e) {
    for (const t of [output, lse, weights]) t?.destroy();
    throw e;
  }
  return { output, lse, weights };
}
