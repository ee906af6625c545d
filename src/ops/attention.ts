// attention(): check -> plan -> programs -> run. The plan (attention_plan.ts) decides how the call
// runs; the executors record its programs into one Recording, submitted as one command buffer.
import type { Context } from '../context';
import { Recording } from '../program';
import { Tensor } from '../tensor';
import {
  type AttentionOptions,
  type AttentionResult,
  checkAttentionInputs,
  plan,
  RULE_NONE,
  type ScoringRules,
  scoringRules,
} from './attention_plan';
import { recordBlocks, recordCore, recordHeads } from './attention_split';
import { checkSnippets } from './score_snippets';

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
  await checkSnippets(ctx, options);
  const p = plan({ ctx, shape, dtype: q.dtype, mask }, options, force);
  const { B, Hq, Lq, Lk, Dv } = shape;
  const output = ctx.zeros([B, Hq, Lq, Dv], q.dtype, 'attention:output');
  const lse = options.returnLse ? ctx.zeros([B, Hq, Lq], 'f32', 'attention:lse') : undefined;
  const weights = options.returnWeights ? ctx.zeros([B, Hq, Lq, Lk], 'f32', 'attention:weights') : undefined;
  const rec = new Recording(ctx, 'attention');
  try {
    const rules = recordRuleData(rec, ctx, options, scoringRules(options, shape));
    const call = { q, k, v, mask, rules, output: output.buffer, lse: lse?.buffer, weights: weights?.buffer };
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

/**
 * The rule data of a call (ALiBi slopes, sinks, document starts; layout in `ScoringRules`) in a
 * buffer that lives until the recording is submitted: arrays written, tensors copied on the GPU.
 * Undefined when the call has none.
 */
function recordRuleData(
  rec: Recording,
  ctx: Context,
  options: AttentionOptions,
  rules: ScoringRules,
): GPUBuffer | undefined {
  const parts: [at: number, x: ArrayLike<number> | Tensor | undefined, f32: boolean][] = [
    [rules.alibiAt, options.alibiSlopes, true],
    [rules.sinksAt, options.sinks, true],
    [rules.docsQAt, options.cuSeqlensQ, false],
    [rules.docsKAt, options.cuSeqlensK, false],
    [rules.blockMaskAt, options.blockMask?.states, true],
  ];
  const present = parts.filter(([at, x]) => at !== RULE_NONE && x !== undefined);
  if (!present.length) return undefined;
  const words = Math.max(...present.map(([at, x]) => at + (x instanceof Tensor ? x.size : x!.length)));
  const data = new ArrayBuffer(words * 4);
  const buffer = rec.buffer(data.byteLength, 'attention:rules');
  for (const [at, x, isF32] of present) {
    if (x instanceof Tensor) {
      rec.copy(x.buffer, 0, buffer, at * 4, x.size * 4);
    } else if (isF32) {
      new Float32Array(data, at * 4, x!.length).set(Array.from(x!, Number));
    } else {
      new Uint32Array(data, at * 4, x!.length).set(Array.from(x!, Number));
    }
  }
  ctx.device.queue.writeBuffer(buffer, 0, data);
  return buffer;
}
