// attention(): check -> plan -> programs -> run. The plan (attention_plan.ts) decides how the call
// runs; the executors record its programs into one Recording, submitted as one command buffer.

import type { Context } from '../context';
import { IntTensor } from '../int_tensor';
import type { RunOptions } from '../options';
import { Recording } from '../program';
import { bytesPerElement, type DType, expectTensor, Tensor } from '../tensor';
import { Usage } from '../usage';
import {
  type AttentionOptions,
  type AttentionResult,
  checkAttentionInputs,
  chunked,
  layoutShape,
  modDataWords,
  noKeysCall,
  plan,
  RULE_NONE,
  ruleDataBytes,
  type ScoringRules,
  scoringRules,
  tensorStrides,
} from './attention_plan';
import { recordBlocks, recordCore, recordHeads } from './attention_split';
import { checkResults, resultTensor } from './output';
import { checkSnippets } from './score_snippets';

export type { AttentionOptions, AttentionResult };

/** {@link AttentionOptions} plus where the call's work and results go. */
export interface AttentionCallOptions extends AttentionOptions, RunOptions {
  /**
   * Write the results into these tensors instead of new ones: `output` [B, Hq, Lq, Dv] (in the
   * call's `layout`) of q's dtype, `lse` [B, Hq, Lq] and `weights` [B, Hq, Lq, Lk] of f32 (when
   * asked for).
   */
  out?: { output?: Tensor; lse?: Tensor; weights?: Tensor };
}

/** The result of a call that asked for lse and/or weights: those are then present. */
export type AttentionResultWith<K extends 'lse' | 'weights'> = AttentionResult &
  Required<Pick<AttentionResult, K>>;

/**
 * Scaled dot-product attention: softmax(q kᵀ · scale + mask) v, fused: one dispatch of the flash
 * kernel, or for few queries against many keys the split-K decode kernel (two dispatches), each
 * in the form the context chose ({@link Context.attentionKernel}); {@link planAttention} tells
 * which. q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> output [B, Hq, Lq, Dv], or
 * with `layout: 'blhd'` q [B, Lq, Hq, D], k [B, Lk, Hkv, D], v [B, Lk, Hkv, Dv] -> output
 * [B, Lq, Hq, Dv], read and written in place.
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
  options: AttentionCallOptions & { returnLse: true; returnWeights: true },
): Promise<AttentionResultWith<'lse' | 'weights'>>;
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionCallOptions & { returnLse: true },
): Promise<AttentionResultWith<'lse'>>;
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionCallOptions & { returnWeights: true },
): Promise<AttentionResultWith<'weights'>>;
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options?: AttentionCallOptions,
): Promise<AttentionResult>;
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionCallOptions = {},
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
  options: AttentionCallOptions = {},
): Promise<AttentionResult> {
  if (options.returnWeights) {
    throw new Error('decodeAttention: returnWeights is not supported by the split-K kernel, received true');
  }
  return runAttention(q, k, v, options, 'decode');
}

/** `force: 'decode'` runs the split-K decode kernel whatever the sizes. */
async function runAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  callOptions: AttentionCallOptions,
  force?: 'decode',
): Promise<AttentionResult> {
  // a non-object is rejected by the checks below with the usual message
  const { out, encoder, ...options } = (callOptions ?? {}) as AttentionCallOptions;
  if (callOptions === null || typeof callOptions !== 'object') {
    checkAttentionInputs(q, k, v, callOptions as unknown as AttentionOptions);
  }
  expectTensor('attention: q', q);
  expectTensor('attention: k', k);
  expectTensor('attention: v', v);
  if (options?.mask !== undefined) expectTensor('attention: options.mask', options.mask);
  const shape = checkAttentionInputs(q, k, v, options);
  const { ctx } = q;
  if (options.scoreMod !== undefined || options.maskMod !== undefined) await checkSnippets(ctx, options);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
  const layout = options.layout ?? 'bhld';
  // Keys of length 0 (with rows): the call runs as noKeysCall, on one key per batch item that no
  // row attends (zeros on buffers of their own, never read); weights [B, Hq, Lq, 0] are not computed.
  const noKeys = Lk === 0 && B * Hq * Lq > 0;
  const run = noKeys ? noKeysCall(shape, options) : { shape, options };
  const keyBuffers: GPUBuffer[] = [];
  const oneKey = (d: number) => {
    const keyShape = layoutShape(layout, B, Hkv, 1, d);
    const bytes = keyShape.reduce((a, n) => a * n, 1) * bytesPerElement(q.dtype);
    const buffer = ctx.device.createBuffer({
      size: Math.ceil(Math.max(bytes, 16) / 4) * 4,
      usage: Usage.STORAGE,
      label: 'attention:no-keys',
    });
    keyBuffers.push(buffer);
    return ctx.wrap(buffer, keyShape, q.dtype);
  };
  const [keys, values] = noKeys ? [oneKey(D), oneKey(Dv)] : [k, v];
  const { mask } = run.options;
  // createContext({ autotune }): the first call of a class not tuned yet waits for its tuning
  const tuning =
    force || noKeys || !(B * Hq * Lq) ? undefined : ctx.tuneFirstUse(shape, q.dtype, options.causal ?? false);
  if (tuning) await tuning;
  const p = plan(
    { ctx, shape: run.shape, dtype: q.dtype, mask, chunked: chunked(q, keys, values) },
    run.options,
    force,
  );
  const rec = new Recording(ctx, 'attention');
  rec.watch(q, k, v, mask, out?.output, out?.lse, out?.weights);
  const made: Tensor[] = [];
  const result = (name: 'output' | 'lse' | 'weights', shape: number[], dtype: DType) => {
    const t = resultTensor(ctx, rec, `attention: out.${name}`, out?.[name], shape, dtype);
    if (t !== out?.[name]) made.push(t);
    return t;
  };
  checkResults('attention', out, ['output', 'lse', 'weights']);
  const output = result('output', layoutShape(layout, B, Hq, Lq, Dv), q.dtype);
  const lse = options.returnLse ? result('lse', [B, Hq, Lq], 'f32') : undefined;
  const weights = options.returnWeights ? result('weights', [B, Hq, Lq, Lk], 'f32') : undefined;
  try {
    const rules =
      p.path === 'empty'
        ? undefined
        : recordRuleData(rec, ctx, run.options, scoringRules(run.options, run.shape))?.buffer;
    const computed = run.options.returnWeights ? weights : undefined;
    const call = { q, k: keys, v: values, mask, rules, output, lse, weights: computed, layout };
    if (p.path === 'empty') {
      // no rows: results with no elements, nothing to run
    } else if (p.path === 'heads') recordHeads(rec, p, call);
    else if (p.path === 'blocks') recordBlocks(rec, p, call, run.options);
    else {
      recordCore(rec, p, {
        q: q.binding,
        k: keys.binding,
        v: values.binding,
        strides: tensorStrides(call),
        mask: mask?.binding,
        output: output.binding,
        lse: lse?.binding,
        weights: computed?.binding,
        rules,
      });
    }
    await rec.submit(encoder);
  } catch (e) {
    for (const t of made) t.destroy();
    throw e;
  } finally {
    // submitted work keeps its buffers alive; an app's encoder is submitted later: left to the GC
    if (!encoder) for (const b of keyBuffers) b.destroy();
  }
  return { output, lse, weights };
}

/**
 * The rule data of a call (ALiBi slopes, sinks, document starts, block-mask states, modData; layout in
 * `ScoringRules`) in a buffer that lives until the recording is submitted: arrays written,
 * tensors (and IntTensor document starts) copied on the GPU. Undefined when the call has none and
 * `reserve` is 0. With `reserve`, the buffer also has that many bytes for the caller from
 * `reservedAt` (a multiple of 256 bytes, bindable on its own) on.
 */
export function recordRuleData(
  rec: Recording,
  ctx: Context,
  options: AttentionOptions,
  rules: ScoringRules,
  reserve = 0,
): { buffer: GPUBuffer; reservedAt: number } | undefined {
  const parts: [at: number, x: ArrayLike<number> | Tensor | IntTensor | undefined, f32: boolean][] = [
    [rules.alibiAt, options.alibiSlopes, true],
    [rules.sinksAt, options.sinks, true],
    [rules.docsQAt, options.cuSeqlensQ, false],
    [rules.docsKAt, options.cuSeqlensK, false],
    [rules.usedAt, options.sequsedK, false],
    [rules.leftpadAt, options.cacheLeftpad, false],
    [rules.blockMaskAt, options.blockMask?.states, true],
  ];
  const { words } = rules;
  if (!words && !reserve) return undefined;
  const present = parts.filter(([at, x]) => at !== RULE_NONE && x !== undefined);
  const onGpu = (x: unknown): x is Tensor | IntTensor => x instanceof Tensor || x instanceof IntTensor;
  const reservedAt = ruleDataBytes(rules);
  const data = new ArrayBuffer(words * 4);
  const buffer = rec.buffer(reservedAt + reserve, 'attention:rules');
  for (const [at, x, isF32] of present) {
    if (onGpu(x)) {
      rec.copy(x.buffer, x instanceof Tensor ? x.byteOffset : 0, buffer, at * 4, x.size * 4);
    } else if (isF32) {
      new Float32Array(data, at * 4, x!.length).set(Array.from(x!, Number));
    } else {
      new Uint32Array(data, at * 4, x!.length).set(Array.from(x!, Number));
    }
  }
  if (rules.modAt !== RULE_NONE) {
    const mods = modDataWords(options.modData);
    new Uint32Array(data, rules.modAt * 4, mods.words.length).set(mods.words);
    for (const [at, x] of mods.tensors) {
      rec.copy(x.buffer, x instanceof Tensor ? x.byteOffset : 0, buffer, (rules.modAt + at) * 4, x.size * 4);
    }
  }
  if (words) ctx.device.queue.writeBuffer(buffer, 0, data);
  return { buffer, reservedAt };
}
