// Attention on inputs larger than the device lets one binding hold. `heads`: groups of heads of
// one batch item at a time, each group's slices copied into buffers that fit, and the group's
// results copied back into place. `blocks` (when even one head does not fit): each head as blocks
// of queries against chunks of keys, whose partial results are merged by their log-sum-exp
// (shaders/merge_lse.wgsl). The result is the same as an unsplit call. Every copy and dispatch
// goes into the call's one recording; the slice buffers are reused from group to group (the
// command buffer orders each reuse after the work that read them).
import maskedSource from '../../shaders/masked.wgsl?raw';
import mergeSource from '../../shaders/merge_lse.wgsl?raw';
import { elementPrelude } from '../f16';
import type { Bindable, Recording } from '../program';
import { bytesPerElement, type Tensor } from '../tensor';
import {
  type AttentionBuffers,
  type AttentionLayout,
  type AttentionOptions,
  type BlocksPlan,
  corePlan,
  type DecodePlan,
  denseStrides,
  type FlashPlan,
  type HeadStrides,
  type HeadsPlan,
  RULE_NONE,
  scoringRules,
  tensorStrides,
} from './attention_plan';
import { recordByteCopy } from './copy_bytes';
import { recordDecode } from './decode_attention';
import { recordFlash } from './flash_attention';

/** Invocations per workgroup of the merge kernel. */
const MERGE_WG = 64;

/** The inputs of a call, and the tensors its results go to. */
export interface SplitCall {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  mask?: Tensor;
  /** The rule data of the whole call (see `ScoringRules`). */
  rules?: GPUBuffer;
  output: Tensor;
  lse?: Tensor;
  weights?: Tensor;
  /** How q, k, v and output are laid out. */
  layout: AttentionLayout;
}

/** Elements of `dtype` in a buffer from `byteOffset` on: a tensor, or a scratch buffer. */
interface Span {
  buffer: GPUBuffer;
  dtype: Tensor['dtype'];
  byteOffset?: number;
}

/** Records the flash kernel or the decode passes of a plan that fits its bindings. */
export function recordCore(rec: Recording, plan: FlashPlan | DecodePlan, io: AttentionBuffers): void {
  if (plan.path === 'flash') recordFlash(rec, plan, io);
  else recordDecode(rec, plan, io);
}

/**
 * Records a `heads` plan: each group of heads through the group's plan, its slices copied into
 * buffers laid out like the call's tensors (a group of a [B, L, H, D] tensor is a run of heads in
 * each row).
 */
export function recordHeads(rec: Recording, plan: HeadsPlan, call: SplitCall): void {
  const { shape: s, heads, kvHeads, maskDims } = plan;
  const { q, k, v, mask } = call;
  const bpe = bytesPerElement(q.dtype);
  const group = s.Hq / s.Hkv;
  const qs = rec.buffer(heads * s.Lq * s.D * bpe, 'attention:q-slice');
  const ks = rec.buffer(kvHeads * s.Lk * s.D * bpe, 'attention:k-slice');
  const vs = rec.buffer(kvHeads * s.Lk * s.Dv * bpe, 'attention:v-slice');
  const os = rec.buffer(heads * s.Lq * s.Dv * bpe, 'attention:output-slice');
  const ls = call.lse && rec.buffer(heads * s.Lq * 4, 'attention:lse-slice');
  const ws = call.weights && rec.buffer(heads * s.Lq * s.Lk * 4, 'attention:weights-slice');
  const [mb, mh, mi, mj] = maskDims;
  const mHeads = mh === 1 ? 1 : heads;
  const ms = mask && rec.buffer(mHeads * mi * mj * bytesPerElement(mask.dtype), 'attention:mask-slice');
  const strides = tensorStrides(call);
  const sliced = denseStrides({ ...s, B: 1, Hq: heads, Hkv: kvHeads }, call.layout);
  const io = {
    q: qs,
    k: ks,
    v: vs,
    strides: sliced,
    mask: ms,
    rules: call.rules,
    output: os,
    lse: ls,
    weights: ws,
  };
  const slice = (buffer: GPUBuffer, strides: HeadStrides): HeadRows => ({
    span: { buffer, dtype: q.dtype },
    at: 0,
    strides,
  });

  for (let b = 0; b < s.B; b++) {
    for (let h0 = 0; h0 < s.Hq; h0 += heads) {
      const hk0 = Math.floor(h0 / group);
      copyHeadRows(rec, headRows(q, strides.q, b, h0), slice(qs, sliced.q), heads, s.Lq, s.D);
      copyHeadRows(rec, headRows(k, strides.k, b, hk0), slice(ks, sliced.k), kvHeads, s.Lk, s.D);
      copyHeadRows(rec, headRows(v, strides.v, b, hk0), slice(vs, sliced.v), kvHeads, s.Lk, s.Dv);
      if (mask && ms) {
        const start = ((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h0)) * mi * mj;
        copyElements(rec, mask, start, { buffer: ms, dtype: mask.dtype }, 0, mHeads * mi * mj);
      }
      rec.clear(os); // packed f16 results are ORed into zeroed words
      const origin: [number, number, number, number] = [b, h0, 0, 0];
      recordCore(rec, { ...plan.group, rules: { ...plan.group.rules, origin } }, io);
      copyHeadRows(rec, slice(os, sliced.o), headRows(call.output, strides.o, b, h0), heads, s.Lq, s.Dv);
      const row = b * s.Hq + h0;
      if (call.lse && ls)
        copyElements(rec, { buffer: ls, dtype: 'f32' }, 0, call.lse, row * s.Lq, heads * s.Lq);
      if (call.weights && ws) {
        const n = heads * s.Lq * s.Lk;
        copyElements(rec, { buffer: ws, dtype: 'f32' }, 0, call.weights, row * s.Lq * s.Lk, n);
      }
    }
  }
}

/**
 * Records a `blocks` plan: per head, each block of query rows against each chunk of keys, the
 * partial results merged by their log-sum-exp into an accumulator (two buffers, ping-ponged).
 */
export function recordBlocks(
  rec: Recording,
  plan: BlocksPlan,
  call: SplitCall,
  options: AttentionOptions,
): void {
  const { shape: s, rows, keys, maskDims } = plan;
  const { q, k, v, mask } = call;
  const { ctx, dtype } = q;
  const bpe = bytesPerElement(dtype);
  const [mb, mh, mi, mj] = maskDims;
  const qs = rec.buffer(rows * s.D * bpe, 'attention:q-block');
  const ks = rec.buffer(keys * s.D * bpe, 'attention:k-chunk');
  const vs = rec.buffer(keys * s.Dv * bpe, 'attention:v-chunk');
  const maskBpe = mask ? bytesPerElement(mask.dtype) : 0;
  const ms =
    mask && rec.buffer((mi === 1 ? 1 : rows) * (mj === 1 ? 1 : keys) * maskBpe, 'attention:mask-block');
  const partial = () => ({
    output: rec.buffer(rows * s.Dv * bpe, 'attention:partial-output'),
    lse: rec.buffer(rows * 4, 'attention:partial-lse'),
  });
  let acc = partial();
  let next = partial();
  const part = partial();
  const group = s.Hq / s.Hkv;
  const rules = scoringRules(options, s);
  const strides = tensorStrides(call);
  // a block, a chunk or a partial result: rows of one head, dense
  const dense = (buffer: GPUBuffer, width: number): HeadRows => ({
    span: { buffer, dtype },
    at: 0,
    strides: [0, 0, width],
  });

  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.Hq; h++) {
      const kvHead = Math.floor(h / group);
      for (let i0 = 0; i0 < s.Lq; i0 += rows) {
        const n = Math.min(rows, s.Lq - i0);
        copyHeadRows(rec, headRows(q, strides.q, b, h, i0), dense(qs, s.D), 1, n, s.D);
        for (let j0 = 0; j0 < s.Lk; j0 += keys) {
          // Causal: keys past the block's last row's limit add nothing. The first chunk always
          // runs, so that rows attending no key still get zeros and -Infinity.
          // (Documents have their own offsets: no shortcut then.)
          const docs = options.cuSeqlensQ !== undefined;
          if (options.causal && !docs && j0 > 0 && j0 > i0 + n - 1 + s.Lk - s.Lq) break;
          const m = Math.min(keys, s.Lk - j0);
          copyHeadRows(rec, headRows(k, strides.k, b, kvHead, j0), dense(ks, s.D), 1, m, s.D);
          copyHeadRows(rec, headRows(v, strides.v, b, kvHead, j0), dense(vs, s.Dv), 1, m, s.Dv);
          const rowsM = mi === 1 ? 1 : n;
          const colsM = mj === 1 ? 1 : m;
          if (mask && ms) {
            const first =
              (((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h)) * mi + (mi === 1 ? 0 : i0)) * mj +
              (mj === 1 ? 0 : j0);
            const to = { buffer: ms, dtype: mask.dtype };
            if (colsM === mj) copyElements(rec, mask, first, to, 0, rowsM * colsM);
            else
              for (let r = 0; r < rowsM; r++) copyElements(rec, mask, first + r * mj, to, r * colsM, colsM);
          }
          // key j' of the chunk is allowed for row i' of the block iff j0 + j' <= i0 + i' + Lk - Lq
          const inner = corePlan(
            {
              ctx,
              shape: { B: 1, Hq: 1, Hkv: 1, Lq: n, Lk: m, D: s.D, Dv: s.Dv },
              dtype,
              mask: mask && { shape: [1, 1, rowsM, colsM], dtype: mask.dtype, size: rowsM * colsM },
            },
            { ...options, returnLse: true },
            s.Lk - s.Lq + i0 - j0,
            undefined,
            // the sink joins the first chunk's denominator only: the merge adds the rest
            { ...rules, origin: [b, h, i0, j0], sinksAt: j0 === 0 ? rules.sinksAt : RULE_NONE },
          );
          const target = j0 === 0 ? acc : part;
          rec.clear(target.output);
          recordCore(rec, inner, {
            q: qs,
            k: ks,
            v: vs,
            strides: denseStrides(inner.shape, 'bhld'),
            mask: ms,
            rules: call.rules,
            ...target,
          });
          if (j0 > 0) {
            rec.clear(next.output);
            recordMerge(rec, plan, acc, part, next, n);
            [acc, next] = [next, acc];
          }
        }
        const row = (b * s.Hq + h) * s.Lq + i0;
        copyHeadRows(rec, dense(acc.output, s.Dv), headRows(call.output, strides.o, b, h, i0), 1, n, s.Dv);
        if (call.lse) copyElements(rec, { buffer: acc.lse, dtype: 'f32' }, 0, call.lse, row, n);
      }
    }
  }
}

/** A partial result over some keys: output rows and their log-sum-exp. */
export type Partial = { output: Bindable; lse: Bindable };

/** Records out = the log-sum-exp merge of a and b, n rows of Dv over disjoint keys. */
export function recordMerge(
  rec: Recording,
  plan: BlocksPlan,
  a: Partial,
  b: Partial,
  out: Partial,
  n: number,
): void {
  rec.dispatch({
    name: 'merge_lse',
    sources: [elementPrelude(plan.storage, true), mergeSource, maskedSource],
    constants: { WG: MERGE_WG },
    uniforms: { rows: n, Dv: plan.shape.Dv },
    bindings: [a.output, a.lse, b.output, b.lse, out.output, out.lse],
    workgroups: Math.ceil((n * plan.shape.Dv) / MERGE_WG),
  });
}

/** Rows of heads of an operand in a tensor or a scratch buffer: the first row and the strides. */
export interface HeadRows {
  span: Span;
  /** element of the first row's first element */
  at: number;
  strides: HeadStrides;
}

/** Rows from row `l0` of heads from `h0` of batch item `b` of tensor `t` (strides `at`). */
export function headRows(t: Tensor, at: HeadStrides, b: number, h0: number, l0 = 0): HeadRows {
  return { span: t, at: b * at[0] + h0 * at[1] + l0 * at[2], strides: at };
}

/**
 * Copies `rows` rows of `width` elements of each of `heads` heads from `from` to `to`, in runs as
 * long as both sides are contiguous: one copy for a dense block, one per head of a KV-cache view,
 * one per row of a group of heads of a [B, L, H, D] tensor.
 */
export function copyHeadRows(
  rec: Recording,
  from: HeadRows,
  to: HeadRows,
  heads: number,
  rows: number,
  width: number,
): void {
  // in the order of `from` in memory
  const headsOuter = heads === 1 || from.strides[1] >= from.strides[2];
  const [outer, inner] = headsOuter ? [heads, rows] : [rows, heads];
  let run: [src: number, dst: number, count: number] | undefined;
  for (let x = 0; x < outer; x++) {
    for (let y = 0; y < inner; y++) {
      const [h, l] = headsOuter ? [x, y] : [y, x];
      const src = from.at + h * from.strides[1] + l * from.strides[2];
      const dst = to.at + h * to.strides[1] + l * to.strides[2];
      if (run && src === run[0] + run[2] && dst === run[1] + run[2]) {
        run[2] += width;
      } else {
        if (run) copyElements(rec, from.span, run[0], to.span, run[1], run[2]);
        run = [src, dst, width];
      }
    }
  }
  if (run) copyElements(rec, from.span, run[0], to.span, run[1], run[2]);
}

/** Records a copy of `count` elements of `from`'s dtype. */
export function copyElements(
  rec: Recording,
  from: Span,
  fromStart: number,
  to: Span,
  toStart: number,
  count: number,
): void {
  const bpe = bytesPerElement(from.dtype);
  const src = fromStart * bpe + (from.byteOffset ?? 0);
  const dst = toStart * bpe + (to.byteOffset ?? 0);
  const size = count * bpe;
  // f16 and bool slices that do not start or end on a word: copied by a kernel
  if (src % 4 || dst % 4 || size % 4) recordByteCopy(rec, from.buffer, src, to.buffer, dst, size);
  else rec.copy(from.buffer, src, to.buffer, dst, size);
}
