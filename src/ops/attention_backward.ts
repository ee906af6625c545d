// attentionBackward(): FlashAttention-2's backward without atomics (WebGPU has no f32 atomics;
// only modDataGrad's sums, in the dQ pass, add by compare-and-swap):
// check -> plan -> three programs in one recording:
//   1. delta pass: per query row (lse, delta = rowsum(dO * O)) into a [B, Hq, Lq] scratch buffer;
//   2. dK/dV pass: each invocation owns keys of one kv head and walks all query heads of its GQA
//      group and all query rows, recomputing P from lse, accumulating dK and dV in registers;
//   3. dQ pass: each invocation owns query rows and walks their keys, accumulating dQ.
// P (L x L) is recomputed in both passes, never stored. Scores go through key_rules.wgsl's
// keyScore with the forward's scoringUniforms, so options added there reach the backward. A call
// with a binding larger than the device allows runs as units of slices that fit
// (attention_backward_plan.ts), their gradients accumulated in f32 and stored into place.
import commonSource from '../../shaders/attention_backward_common.wgsl?raw';
import deltaSource from '../../shaders/attention_backward_delta.wgsl?raw';
import dkdvSource from '../../shaders/attention_backward_dkdv.wgsl?raw';
import dkdvRegistersSource from '../../shaders/attention_backward_dkdv_registers.wgsl?raw';
import dqSource from '../../shaders/attention_backward_dq.wgsl?raw';
import dqRegistersSource from '../../shaders/attention_backward_dq_registers.wgsl?raw';
import dsinksSource from '../../shaders/attention_backward_dsinks.wgsl?raw';
import rowsSource from '../../shaders/attention_backward_rows.wgsl?raw';
import storeSource from '../../shaders/attention_backward_store.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import modDataGradsSource from '../../shaders/mod_data_grads.wgsl?raw';
import { chunkPrelude, type ElementStorage, elementPrelude } from '../f16';
import type { RunOptions } from '../options';
import { type Bindable, Recording, wordRange } from '../program';
import { fmt } from '../shape';
import { bytesPerElement, type DType, expectTensor, Tensor } from '../tensor';
import { recordRuleData } from './attention';
import {
  type AttentionBackwardPlan,
  type BackwardPasses,
  type BackwardUnit,
  BINDING_ALIGN,
  backwardPasses,
  backwardPlan,
  backwardWork,
  BACKWARD_REGISTERS_WG as REGISTERS_WG,
  type SplitBackwardPlan,
  BACKWARD_WG as WG,
} from './attention_backward_plan';
import {
  type AttentionBuffers,
  type AttentionOptions,
  type AttentionShape,
  checkAttentionInputs,
  chunked,
  corePlan,
  denseStrides,
  type HeadStrides,
  headStrides,
  layoutShape,
  type ModData,
  modDataGradFunctions,
  modDataLength,
  scoringRules,
  tensorStrides,
  trainableModData,
} from './attention_plan';
import { copyElements, copyHeadRows, type HeadRows, headRows } from './attention_split';
import { rowConstants, rowUniforms, scoringSources, scoringUniforms, withRules } from './flash_attention';
import { checkResults, resultTensor } from './output';
import { checkSnippets } from './score_snippets';

/**
 * The forward's options (the same values as the forward call), plus its log-sum-exp, and where the
 * call's work and results go.
 */
export type AttentionBackwardOptions = Omit<AttentionOptions, 'returnLse' | 'returnWeights'> &
  RunOptions & {
    /** The forward's `lse` [B, Hq, Lq] ('f32'), from `attention(..., { returnLse: true })`. */
    lse: Tensor;
    /**
     * Write the gradients into these tensors instead of new ones: dq [B, Hq, Lq, D], dk
     * [B, Hkv, Lk, D], dv [B, Hkv, Lk, Dv] of q's dtype, dsinks [Hq] 'f32' (with sinks).
     */
    out?: { dq?: Tensor; dk?: Tensor; dv?: Tensor; dsinks?: Tensor };
    /**
     * With `scoreMod`: WGSL `fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32`,
     * the derivative of score_mod in s (same arguments). Required with scoreMod: the backward does
     * not differentiate WGSL by itself.
     */
    scoreModGrad?: string;
    /**
     * Gradients of modData's f32 entries (a learned bias table that scoreMod reads): WGSL
     * `fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32)`, called for each attended
     * key with score_mod's arguments and ds = d loss / d score_mod's output, which adds
     * ds · d score_mod / d data[index] to element `index` of entry `name` by calling
     * `name_grad(index, x)` (one such function per f32 entry). The result's `dModData` then holds
     * a gradient per f32 entry (the entry's shape, 'f32'; zeros where nothing was added). The sums
     * run in no fixed order (atomic adds): they may differ in their last bits between runs.
     */
    modDataGrad?: string;
  };

export interface AttentionGradients {
  /** [B, Hq, Lq, D] */
  dq: Tensor;
  /** [B, Hkv, Lk, D], summed over the query heads that read each kv head. */
  dk: Tensor;
  /** [B, Hkv, Lk, Dv], summed over the query heads that read each kv head. */
  dv: Tensor;
  /** [Hq] ('f32'), with `sinks`: d loss / d sink of each head. */
  dsinks?: Tensor;
  /** With `modDataGrad`: d loss / d each f32 entry of modData, by name (the entry's shape, 'f32'). */
  dModData?: Record<string, Tensor<'f32'>>;
}

/** score_mod_grad of calls without scoreMod (never called: keyScoreGrad checks p.score_mod). */
const IDENTITY_SCORE_MOD_GRAD =
  'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }';
const SCORE_MOD_GRAD_SIGNATURE =
  /fn\s+score_mod_grad\s*\(\s*\w+\s*:\s*f32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*\)\s*->\s*f32/;
/** mod_data_grad and flushModGrads of calls without modDataGrad (never called: DATA_GRAD is false). */
const IDENTITY_MOD_DATA_GRAD =
  'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) {}\nfn flushModGrads() {}';
const MOD_DATA_GRAD_SIGNATURE =
  /fn\s+mod_data_grad\s*\(\s*\w+\s*:\s*f32\s*(,\s*\w+\s*:\s*u32\s*){4},\s*\w+\s*:\s*f32\s*,?\s*\)\s*\{/;

export type { AttentionBackwardPlan };

/**
 * Gradients of `attention(q, k, v, options)` given `dOutput` = d loss / d output, fused
 * (FlashAttention-2's structure: a delta pre-pass, a dK/dV pass over key blocks and a dQ pass over
 * query blocks; no atomics but modDataGrad's, the L x L probabilities are recomputed from `lse`,
 * never stored).
 * `output` and `options.lse` are the forward's results for the same inputs and options
 * (`returnLse: true`); with the forward's `dropout` (same p and seed) its mask is regenerated. Query rows that attend no key (lse = -Infinity) get zero gradients. dk and
 * dv of a kv head sum over its query heads (GQA/MQA). Results have q's dtype (f16 storage
 * accumulates in f32). The kernel form follows the context ({@link Context.attentionKernel}).
 *
 * @example
 * const { output, lse } = await attention(q, k, v, { causal: true, returnLse: true });
 * const { dq, dk, dv } = await attentionBackward(q, k, v, output, dOutput, { causal: true, lse: lse! });
 */
export async function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): Promise<AttentionGradients> {
  const plan = planAttentionBackward(q, k, v, output, dOutput, options);
  const { ctx } = q;
  if (options.scoreMod !== undefined || options.maskMod !== undefined) {
    await checkSnippets(ctx, options, 'attentionBackward: options.');
  }
  const { out, encoder } = options;
  checkResults('attentionBackward', out, ['dq', 'dk', 'dv', 'dsinks']);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = plan.path === 'whole' ? plan.core.shape : plan.shape;
  const layout = options.layout ?? 'bhld';
  const rec = new Recording(ctx, 'attentionBackward');
  rec.watch(q, k, v, output, dOutput, options.mask, options.lse, out?.dq, out?.dk, out?.dv, out?.dsinks);
  const made: Tensor[] = [];
  const result = <T extends DType>(name: keyof NonNullable<typeof out>, shape: number[], dtype: T) => {
    const t = resultTensor(ctx, rec, `attentionBackward: out.${name}`, out?.[name], shape, dtype);
    if (t === out?.[name]) {
      // the dsinks pass subtracts from it; a call with no rows or keys writes nothing
      if (name === 'dsinks' || plan.path === 'empty') rec.clear(t.binding);
    } else made.push(t);
    return t;
  };
  try {
    const dq = result('dq', layoutShape(layout, B, Hq, Lq, D), q.dtype);
    const dk = result('dk', layoutShape(layout, B, Hkv, Lk, D), q.dtype);
    const dv = result('dv', layoutShape(layout, B, Hkv, Lk, Dv), q.dtype);
    const dsinks = options.sinks !== undefined ? result('dsinks', [Hq], 'f32') : undefined;
    const { lse, scoreModGrad, modDataGrad, out: _, encoder: __, ...forward } = options;
    const call = { q, k, v, output, dOutput, lse, mask: options.mask, dq, dk, dv, dsinks };
    const snippets: BackwardSnippets = { scoreModGrad };
    let dModData: Record<string, Tensor<'f32'>> | undefined;
    let grads: GPUBuffer | undefined;
    const trained = modDataGrad !== undefined ? trainableModData(forward.modData) : [];
    if (modDataGrad !== undefined) {
      // added up (atomically) at the words of modData's elements in the rule data, copied out after
      grads = rec.buffer(modDataLength(forward.modData) * 4, 'attentionBackward:modData-grads');
      rec.clear(grads);
      snippets.modDataGrad = {
        text: modDataGrad,
        buffer: grads,
        data: forward.modData,
        slots: trained.length,
      };
      dModData = {};
      for (const [name, , size] of trained) {
        const entry = forward.modData![name];
        const shape = entry instanceof Tensor ? entry.shape : [size];
        dModData[name] = ctx.zeros(shape, { dtype: 'f32', label: `attentionBackward: dModData.${name}` });
        made.push(dModData[name]);
      }
    }
    if (plan.path === 'whole') recordWhole(rec, plan, call, forward, snippets);
    else if (plan.path !== 'empty') recordSplit(rec, plan, call, forward, snippets);
    if (grads && dModData && plan.path !== 'empty') {
      for (const [name, at, size] of trained) {
        const grad = dModData[name]!;
        rec.copy(grads, at * 4, grad.buffer, grad.byteOffset, size * 4);
      }
    }
    await rec.submit(encoder);
    return { dq, dk, dv, ...(dsinks ? { dsinks } : {}), ...(dModData ? { dModData } : {}) };
  } catch (e) {
    for (const t of made) t.destroy();
    throw e;
  }
}

/**
 * How `attentionBackward` would run on these inputs: `path` 'whole' (the passes over the full
 * tensors: kernel form, tiles, workgroups), or for a binding larger than
 * maxStorageBufferBindingSize 'heads' (groups of `heads` query heads) or 'blocks' (one head as
 * `rows` x `keys` blocks); 'empty' for a call with no rows or no keys (zero gradients, nothing
 * runs). Validates like `attentionBackward` does.
 */
export function planAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): AttentionBackwardPlan {
  const { forward, shape } = checkBackwardInputs(q, k, v, output, dOutput, options);
  const inputs = { ctx: q.ctx, shape, dtype: q.dtype, mask: options.mask };
  const plan = backwardPlan(
    { ...inputs, kSpan: k.spanElements, vSpan: v.spanElements, chunked: chunked(q, k, v, output, dOutput) },
    forward,
  );
  if ((plan.path === 'heads' || plan.path === 'blocks') && forward.layout === 'blhd') {
    throw new Error(
      `attentionBackward: this call needs more than maxStorageBufferBindingSize (${q.ctx.limits.maxStorageBufferBindingSize} bytes) in one binding; the backward splits such calls in layout 'bhld' only, received layout 'blhd'`,
    );
  }
  return plan;
}

/** The tensors of one call. */
interface BackwardCall {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  output: Tensor;
  dOutput: Tensor;
  lse: Tensor;
  mask?: Tensor;
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  dsinks?: Tensor;
}

/** Records a call whose bindings fit: the passes over the full tensors. */
function recordWhole(
  rec: Recording,
  plan: BackwardPasses,
  call: BackwardCall,
  forward: AttentionOptions,
  snippets: BackwardSnippets,
): void {
  const { B, Hq, Lq } = plan.core.shape;
  // The rule data of the forward's options, with room for the row stats after it.
  const statsBytes = B * Hq * Lq * 8;
  const data = recordRuleData(rec, rec.ctx, forward, plan.core.rules, statsBytes)!;
  const { q, k, v, output } = call;
  const layout = forward.layout ?? 'bhld';
  const io: AttentionBuffers = {
    q: q.binding,
    k: k.binding,
    v: v.binding,
    // dOutput and dq have the strides of output and q (all dense in the layout)
    strides: tensorStrides({ q, k, v, output, layout }),
    mask: call.mask?.binding,
    output: call.output.binding,
    rules: data.buffer,
  };
  recordBackward(rec, plan, io, {
    dOutput: call.dOutput.binding,
    lse: call.lse.binding,
    stats: { buffer: data.buffer, offset: data.reservedAt, size: statsBytes },
    statsAt: data.reservedAt / 4,
    snippets,
    dq: call.dq.binding,
    dk: call.dk.binding,
    dv: call.dv.binding,
    dkStrides: headStrides(call.dk.strides, layout),
    dvStrides: headStrides(call.dv.strides, layout),
    dsinks: call.dsinks?.binding,
  });
}

/**
 * Records a split plan unit by unit (backwardWork): slices of the unit copied into buffers that
 * fit, its passes run with f32 outputs that add to the target's accumulators, each accumulator
 * stored into place once its units are done. dq first, with the row stats of each block of rows
 * (also kept, for the dk/dv units, in a buffer never bound whole), then dk and dv. The slice
 * buffers are reused from unit to unit (the command buffer orders each reuse after its readers).
 */
function recordSplit(
  rec: Recording,
  plan: SplitBackwardPlan,
  call: BackwardCall,
  forward: AttentionOptions,
  snippets: BackwardSnippets,
): void {
  const { shape: s, heads, kvHeads, rows, keys, maskDims } = plan;
  const { ctx } = rec;
  const { q, k, v, output, dOutput, lse, mask } = call;
  const { dtype } = q;
  const what = 'attentionBackward';
  const bpe = bytesPerElement(dtype);
  const rules = scoringRules(forward, s);
  const statsBytes = heads * rows * 8;
  const data = recordRuleData(rec, ctx, forward, rules, statsBytes)!;
  const stats = { buffer: data.buffer, offset: data.reservedAt, size: statsBytes };
  const allStats = rec.buffer(s.B * s.Hq * s.Lq * 8, `${what}:stats`);
  const slice = (n: number, name: string) => rec.buffer(n * bpe, `${what}:${name}-slice`);
  const qs = slice(heads * rows * s.D, 'q');
  const dOs = slice(heads * rows * s.Dv, 'dOutput');
  const os = slice(heads * rows * s.Dv, 'output');
  const ls = rec.buffer(heads * rows * 4, `${what}:lse-slice`);
  const ks = slice(kvHeads * keys * s.D, 'k');
  const vs = slice(kvHeads * keys * s.Dv, 'v');
  const [mb, mh, mi, mj] = maskDims;
  const ms =
    mask &&
    rec.buffer(
      (mh === 1 ? 1 : heads) * (mi === 1 ? 1 : rows) * (mj === 1 ? 1 : keys) * bytesPerElement(mask.dtype),
      `${what}:mask-slice`,
    );
  const dqAcc = rec.buffer(heads * rows * s.D * 4, `${what}:dq-sum`);
  const dkAcc = rec.buffer(kvHeads * keys * s.D * 4, `${what}:dk-sum`);
  const dvAcc = rec.buffer(kvHeads * keys * s.Dv * 4, `${what}:dv-sum`);

  /** A slice buffer as dense [heads, rows, width]. */
  const dense = (buffer: GPUBuffer, rows: number, width: number): HeadRows => ({
    span: { buffer, dtype },
    at: 0,
    strides: [0, rows * width, width],
  });
  /** Heads [h, h + heads), rows [i, i + rows) of batch item b of t (bhld, maybe a strided view). */
  const copySlice = (
    t: Tensor,
    b: number,
    h: number,
    heads: number,
    i: number,
    rows: number,
    to: GPUBuffer,
  ) => {
    const width = t.shape[3];
    const from = headRows(t, headStrides(t.strides, 'bhld'), b, h, i);
    copyHeadRows(rec, from, dense(to, rows, width), heads, rows, width);
  };
  /** Rows [u.i, u.i + u.rows) of heads [u.h, u.h + u.heads) of a [B, Hq, Lq, X] tensor. */
  const rowSlice = (t: Tensor, u: BackwardUnit, to: GPUBuffer) =>
    copySlice(t, u.b, u.h, u.heads, u.i, u.rows, to);
  /** Keys [u.j, u.j + u.keys) of kv heads [u.hk, u.hk + u.kvHeads) of k and v. */
  const keySlices = (u: BackwardUnit) => {
    copySlice(k, u.b, u.hk, u.kvHeads, u.j, u.keys, ks);
    copySlice(v, u.b, u.hk, u.kvHeads, u.j, u.keys, vs);
  };
  /** The unit's slices and accumulators are dense [B = 1, heads, rows or keys, ·]. */
  const unitShape = (u: BackwardUnit) => ({
    ...s,
    B: 1,
    Hq: u.heads,
    Hkv: u.kvHeads,
    Lq: u.rows,
    Lk: u.keys,
  });
  /** The unit's block of the mask, [heads or 1, rows or 1, keys or 1]. */
  const maskSlice = (u: BackwardUnit) => {
    if (!mask || !ms) return undefined;
    const [nh, ni, nj] = [mh === 1 ? 1 : u.heads, mi === 1 ? 1 : u.rows, mj === 1 ? 1 : u.keys];
    const to = { buffer: ms, dtype: mask.dtype };
    for (let x = 0; x < nh; x++) {
      const head = (mb === 1 ? 0 : u.b) * mh + (mh === 1 ? 0 : u.h + x);
      const first = (head * mi + (mi === 1 ? 0 : u.i)) * mj + (mj === 1 ? 0 : u.j);
      if (nj === mj) copyElements(rec, mask, first, to, x * ni * nj, ni * nj);
      else for (let r = 0; r < ni; r++) copyElements(rec, mask, first + r * mj, to, (x * ni + r) * nj, nj);
    }
    return { shape: [1, nh, ni, nj], dtype: mask.dtype, size: nh * ni * nj };
  };
  /** The unit's passes: its shape, causal offset and place in the full problem. */
  const unitPasses = (u: BackwardUnit, unitMask: ReturnType<typeof maskSlice>) => {
    const shape = unitShape(u);
    const origin: [number, number, number, number] = [u.b, u.h, u.i, u.j];
    const shift = s.Lk - s.Lq + u.i - u.j;
    const core = corePlan({ ctx, shape, dtype, mask: unitMask }, forward, shift, 'flash', {
      ...rules,
      origin,
    });
    return backwardPasses(ctx, core);
  };
  const io = (u: BackwardUnit): AttentionBuffers => ({
    q: qs,
    k: ks,
    v: vs,
    strides: denseStrides(unitShape(u), 'bhld'),
    mask: ms,
    output: os,
    rules: data.buffer,
  });
  const out = (u: BackwardUnit, only: BackwardPass[]): BackwardBuffers => ({
    dOutput: dOs,
    lse: ls,
    stats,
    statsAt: data.reservedAt / 4,
    snippets,
    dq: dqAcc,
    dk: dkAcc,
    dv: dvAcc,
    dkStrides: denseStrides(unitShape(u), 'bhld').k,
    dvStrides: denseStrides(unitShape(u), 'bhld').v,
    dsinks: call.dsinks?.binding,
    only,
    accumulate: true,
  });
  /** Copies the row stats between the unit's stats and the call's (`toUnit`: into the unit's). */
  const copyStats = (u: BackwardUnit, toUnit: boolean) => {
    for (let x = 0; x < u.heads; x++) {
      const at = ((u.b * s.Hq + u.h + x) * s.Lq + u.i) * 8;
      const unitAt = stats.offset + x * u.rows * 8;
      if (toUnit) rec.copy(allStats, at, stats.buffer, unitAt, u.rows * 8);
      else rec.copy(stats.buffer, unitAt, allStats, at, u.rows * 8);
    }
  };

  const work = backwardWork(plan, forward);
  for (const { target, units } of work.dq) {
    rowSlice(q, target, qs);
    rowSlice(dOutput, target, dOs);
    rowSlice(output, target, os);
    for (let x = 0; x < target.heads; x++) {
      const at = (target.b * s.Hq + target.h + x) * s.Lq + target.i;
      copyElements(rec, lse, at, { buffer: ls, dtype: 'f32' }, x * target.rows, target.rows);
    }
    const rowsPasses = unitPasses(target, undefined);
    recordBackward(rec, rowsPasses, io(target), out(target, ['delta', 'dsinks']));
    copyStats(target, false);
    rec.clear(dqAcc);
    for (const u of units) {
      keySlices(u);
      const passes = unitPasses(u, maskSlice(u));
      recordBackward(rec, passes, io(u), out(u, ['dq']));
    }
    const at = ((target.b * s.Hq + target.h) * s.Lq + target.i) * s.D;
    recordStore(rec, plan.storage, dqAcc, call.dq, at, target.heads * target.rows * s.D);
  }
  for (const { target, units } of work.dkdv) {
    keySlices(target);
    rec.clear(dkAcc);
    rec.clear(dvAcc);
    for (const u of units) {
      rowSlice(q, u, qs);
      rowSlice(dOutput, u, dOs);
      copyStats(u, true);
      const passes = unitPasses(u, maskSlice(u));
      recordBackward(rec, passes, io(u), out(u, ['dkdv']));
    }
    const first = (target.b * s.Hkv + target.hk) * s.Lk + target.j;
    const n = target.kvHeads * target.keys;
    recordStore(rec, plan.storage, dkAcc, call.dk, first * s.D, n * s.D);
    recordStore(rec, plan.storage, dvAcc, call.dv, first * s.Dv, n * s.Dv);
  }
}

/**
 * Records the store of `count` f32 values of `from` into elements [first, first + count) of `to`
 * (in `storage`), bound as a range that starts at a multiple of BINDING_ALIGN bytes.
 */
function recordStore(
  rec: Recording,
  storage: ElementStorage,
  from: GPUBuffer,
  to: Tensor,
  first: number,
  count: number,
): void {
  const bpe = bytesPerElement(to.dtype);
  const { binding, at } = wordRange(to.buffer, to.byteOffset + first * bpe, count * bpe, BINDING_ALIGN);
  rec.dispatch({
    name: 'attention_backward_store',
    sources: [outputBinding(storage, 2, 'out', 'store'), storeSource],
    constants: { WG },
    uniforms: { count, at: at / bpe },
    bindings: [from, binding],
    workgroups: Math.ceil(count / WG),
  });
}

/** The backward's own WGSL options: scoreMod's derivative, modData's gradients and their buffer. */
interface BackwardSnippets {
  scoreModGrad?: string;
  /** slots: modData's f32 entries (GRAD_SLOTS) */
  modDataGrad?: { text: string; buffer: GPUBuffer; data: ModData | undefined; slots: number };
}

/** The passes of recordBackward. */
type BackwardPass = 'delta' | 'dkdv' | 'dq' | 'dsinks';

interface BackwardBuffers {
  dOutput: Bindable;
  lse: Bindable;
  /** [B, Hq, Lq] of (lse, delta), written by the delta pass: a range of the rule data */
  stats: GPUBufferBinding;
  /** where `stats` starts in the rule data, in u32 words */
  statsAt: number;
  snippets: BackwardSnippets;
  dq: Bindable;
  dk: Bindable;
  dv: Bindable;
  /** Strides of dk and dv: dense, where k and v may be views. */
  dkStrides: HeadStrides;
  dvStrides: HeadStrides;
  /** [Hq] of the full call, with sinks: the dsinks pass subtracts from it (zeroed first). */
  dsinks?: Bindable;
  /** The passes to record (default all). */
  only?: readonly BackwardPass[];
  /** dq, dk and dv are f32 sums that the passes add to (units of split calls). */
  accumulate?: boolean;
}

/**
 * Records the passes of `plan`. dq, dk and dv must start zeroed (packed f16 stores OR), and
 * dsinks too.
 */
function recordBackward(rec: Recording, plan: BackwardPasses, io: AttentionBuffers, out: BackwardBuffers) {
  const { core, kernel } = plan;
  const { B, Hq, Lq, D, Dv } = core.shape;
  const storage = core.storage;
  const runs = (pass: BackwardPass) => !out.only || out.only.includes(pass);
  const stored = out.accumulate ? 'f32-sum' : storage;
  const [o_b, o_h, o_l] = io.strides.o;
  if (runs('delta')) {
    rec.dispatch({
      name: 'attention_backward_delta',
      sources: [elementPrelude(storage, false), deltaSource, maskedSource],
      constants: { WG },
      uniforms: { rows: B * Hq * Lq, Dv, Hq, Lq, o_b, o_h, o_l },
      bindings: [out.dOutput, io.output, out.lse, out.stats],
      workgroups: plan.deltaWorkgroups,
    });
  }
  const [dk_b, dk_h, dk_l] = out.dkStrides;
  const [dv_b, dv_h, dv_l] = out.dvStrides;
  const registers = kernel === 'registers';
  // row strides: constants of the registers passes, uniforms of the workgroup ones
  const uniforms = {
    ...scoringUniforms(core, io),
    ...(registers ? {} : rowUniforms(io)),
    stats_at: out.statsAt,
  };
  const gradUniforms = { ...uniforms, dk_b, dk_h, dk_l, dv_b, dv_h, dv_l };
  // the rule data (with the stats) at binding 6, where key_rules.wgsl's `rules` is declared
  const { bindings: inputs, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, out.dOutput], io);
  const shared = [
    commonSource,
    ...scoringSources(core),
    out.snippets.scoreModGrad ?? IDENTITY_SCORE_MOD_GRAD,
    maskedSource,
  ];
  const dataGrad = out.snippets.modDataGrad;
  const prelude = registers
    ? [elementPrelude(storage, false), chunkPrelude(storage)]
    : [elementPrelude(storage, false)];
  const common = {
    D4: Math.ceil(D / 4),
    DV4: Math.ceil(Dv / 4),
    MASK: core.maskKind,
    DROPOUT: core.dropout !== undefined,
    RULES_BINDING,
  };
  if (runs('dkdv')) {
    rec.dispatch({
      name: registers ? 'attention_backward_dkdv_registers' : 'attention_backward_dkdv',
      sources: [
        ...prelude,
        outputBinding(stored, 7, 'dk', 'storeDk'),
        outputBinding(stored, 8, 'dv', 'storeDv'),
        ...(registers ? [dkdvRegistersSource] : [dkdvSource, rowsSource]),
        ...shared,
        IDENTITY_MOD_DATA_GRAD,
      ],
      constants: registers
        ? { WG: REGISTERS_WG, ...common, ...rowConstants(io) }
        : { WG, BR: plan.rowsPerTile, ...common },
      uniforms: gradUniforms,
      bindings: [...inputs, out.dk, out.dv],
      workgroups: plan.dkdvWorkgroups,
    });
  }
  if (runs('dq')) {
    rec.dispatch({
      name: registers ? 'attention_backward_dq_registers' : 'attention_backward_dq',
      sources: [
        ...prelude,
        outputBinding(stored, 7, 'dq', 'storeDq'),
        ...(registers ? [dqRegistersSource] : [dqSource, rowsSource]),
        ...shared,
        ...(dataGrad
          ? [dataGrad.text, modDataGradFunctions(dataGrad.data), modDataGradsSource]
          : [IDENTITY_MOD_DATA_GRAD]),
      ],
      constants: {
        ...(registers
          ? { WG: REGISTERS_WG, ...common, ...rowConstants(io) }
          : { WG, BC: plan.keysPerTile, ...common }),
        DATA_GRAD: dataGrad !== undefined,
        ...(dataGrad ? { GRAD_SLOTS: dataGrad.slots } : {}),
      },
      uniforms,
      // modData's gradients at binding 8, after dq (mod_data_grads.wgsl declares it)
      bindings: dataGrad ? [...inputs, out.dq, dataGrad.buffer] : [...inputs, out.dq],
      workgroups: plan.dqWorkgroups,
    });
  }
  if (out.dsinks && runs('dsinks')) {
    rec.dispatch({
      name: 'attention_backward_dsinks',
      sources: [dsinksSource],
      constants: { WG },
      uniforms: {
        B,
        Hq,
        Lq,
        sinks_at: core.rules.sinksAt,
        stats_at: out.statsAt,
        h0: core.rules.origin[1],
      },
      bindings: [io.rules, out.dsinks],
      workgroups: Math.ceil(Hq / WG),
    });
  }
}

/**
 * WGSL of an output binding `array` at `binding` and its store function `store(e, x)`, which
 * writes element e: packed f16 ORs each half into its (zeroed) word, so that two invocations
 * whose rows share a word never race; 'f32-sum' adds x to an f32 element.
 */
function outputBinding(
  storage: ElementStorage | 'f32-sum',
  binding: number,
  array: string,
  store: string,
): string {
  const type = storage === 'f16' ? 'f16' : storage === 'f16-packed' ? 'atomic<u32>' : 'f32';
  const body =
    storage === 'f16-packed'
      ? `atomicOr(&${array}[e >> 1u], (pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu) << ((e & 1u) * 16u));`
      : storage === 'f16'
        ? `${array}[e] = f16(x);`
        : storage === 'f32-sum'
          ? `${array}[e] += x;`
          : `${array}[e] = x;`;
  // (a kernel's own `enable f16;` and this one are merged into one)
  const enable = storage === 'f16' ? 'enable f16;\n' : '';
  return `${enable}@group(0) @binding(${binding}) var<storage, read_write> ${array}: array<${type}>;
fn ${store}(e: u32, x: f32) { ${body} }
`;
}

/** Validates the inputs of attentionBackward; returns the forward's options and the sizes. */
function checkBackwardInputs(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): { forward: AttentionOptions; shape: AttentionShape } {
  const what = 'attentionBackward';
  if (options === null || typeof options !== 'object') {
    throw new Error(
      `${what}: options must be an object with the forward's lse, received ${options === null ? 'null' : typeof options}`,
    );
  }
  for (const key of ['returnLse', 'returnWeights'] as const) {
    const value = (options as AttentionOptions)[key];
    if (value !== undefined) {
      throw new Error(
        `${what}: options.${key} is an option of the forward only (the backward returns dq, dk, dv), received ${String(value)}`,
      );
    }
  }
  const { lse, scoreModGrad, modDataGrad, out: _, encoder: __, ...forward } = options;
  if (forward.scoreMod !== undefined && scoreModGrad === undefined) {
    throw new Error(
      `${what}: options.scoreMod needs options.scoreModGrad, WGSL 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32' (its derivative in s), received undefined`,
    );
  }
  if (scoreModGrad !== undefined) {
    if (forward.scoreMod === undefined) {
      throw new Error(
        `${what}: options.scoreModGrad is only used with options.scoreMod, received it without`,
      );
    }
    if (typeof scoreModGrad !== 'string' || !SCORE_MOD_GRAD_SIGNATURE.test(scoreModGrad)) {
      throw new Error(
        `${what}: options.scoreModGrad must be WGSL text defining 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32', received ${typeof scoreModGrad === 'string' ? JSON.stringify(scoreModGrad.slice(0, 80)) : typeof scoreModGrad}`,
      );
    }
  }
  if (modDataGrad !== undefined) {
    const trained = trainableModData(forward.modData).map(([name]) => name);
    if (forward.scoreMod === undefined || !trained.length) {
      throw new Error(
        `${what}: options.modDataGrad trains modData's f32 entries that scoreMod reads: it needs options.scoreMod and an f32 entry in options.modData, received ${forward.scoreMod === undefined ? 'no scoreMod' : 'no f32 entry'}`,
      );
    }
    if (typeof modDataGrad !== 'string' || !MOD_DATA_GRAD_SIGNATURE.test(modDataGrad)) {
      throw new Error(
        `${what}: options.modDataGrad must be WGSL text defining 'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32)' (no result: it calls name_grad(index, x) of modData's f32 entries), received ${typeof modDataGrad === 'string' ? JSON.stringify(modDataGrad.slice(0, 80)) : typeof modDataGrad}`,
      );
    }
    const names = Object.keys(forward.modData!);
    const clash = trained.find((name) => names.includes(`${name}_grad`));
    if (clash !== undefined) {
      throw new Error(
        `${what}: options.modDataGrad adds to '${clash}' through a function named ${clash}_grad, which options.modData also names: rename one of them`,
      );
    }
  }
  let shape: AttentionShape;
  try {
    shape = checkAttentionInputs(q, k, v, forward);
  } catch (e) {
    // The forward's checks, reported as this op's.
    if (e instanceof Error && e.message.startsWith('attention:')) {
      throw new Error(`${what}:${e.message.slice('attention:'.length)}`);
    }
    throw e;
  }
  // dq is written through q's strides
  q.assertUsable(`${what}: q`, q.ctx, false, true);
  const { B, Hq, Lq, Dv } = shape;
  const blhd = forward.layout === 'blhd';
  const want = layoutShape(forward.layout ?? 'bhld', B, Hq, Lq, Dv);
  const same = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((n, i) => n === b[i]);
  for (const [name, t] of [
    ['output', output],
    ['dOutput', dOutput],
  ] as const) {
    expectTensor(`${what}: ${name}`, t);
    t.assertUsable(`${what}: ${name}`, q.ctx, false, true);
    if (!same(t.shape, want)) {
      throw new Error(
        `${what}: ${name} must have shape ${fmt(want)} (the forward's output${blhd ? ", layout 'blhd'" : ''}), received ${fmt(t.shape)}`,
      );
    }
    if (t.dtype !== q.dtype) {
      throw new Error(`${what}: ${name} must have dtype '${q.dtype}' like q, received '${t.dtype}'`);
    }
  }
  if (lse === undefined) {
    throw new Error(
      `${what}: options.lse is required: the forward's log-sum-exp [${B}, ${Hq}, ${Lq}] from attention(..., { returnLse: true }), received undefined`,
    );
  }
  expectTensor(`${what}: options.lse`, lse);
  lse.assertUsable(`${what}: options.lse`, q.ctx, false, true);
  if (!same(lse.shape, [B, Hq, Lq])) {
    throw new Error(`${what}: options.lse must have shape ${fmt([B, Hq, Lq])}, received ${fmt(lse.shape)}`);
  }
  if (lse.dtype !== 'f32') {
    throw new Error(`${what}: options.lse must have dtype 'f32', received '${lse.dtype}'`);
  }
  return { forward, shape };
}
