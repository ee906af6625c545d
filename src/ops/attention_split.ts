// Attention on inputs larger than the device lets one binding hold: run it on groups of heads of
// one batch item at a time, each group's slices copied into buffers that fit, and copy the
// group's results back into place. When even one head does not fit, each head runs as blocks of
// queries against chunks of keys, whose partial results are merged by their log-sum-exp
// (shaders/merge_lse.wgsl). The result is the same as an unsplit call.
import mergeSource from '../../shaders/merge_lse.wgsl?raw';
import type { Context } from '../context';
import { elementPrelude, elementStorage } from '../f16';
import { broadcastStrides } from '../shape';
import { bytesPerElement, type Tensor } from '../tensor';
import type { AttentionOptions, AttentionResult, AttentionShape } from './attention';
import { specialise } from './common';
import { prefersDecode } from './decode_attention';

type Core = (
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
  causalShift?: number,
) => Promise<AttentionResult>;

/** Invocations per workgroup of the merge kernel. */
const MERGE_WG = 64;
/** Most bytes of partials per query row the split-K decode kernel may bind (see decode_attention.ts). */
const DECODE_PARTIAL_BYTES = 1024;

/** Bytes each binding of one call over `heads` query heads (of one batch item) would need. */
function groupBytes(s: AttentionShape, heads: number, bpe: number, options: AttentionOptions): number[] {
  const kvHeads = Math.max(1, heads / (s.Hq / s.Hkv));
  const mask = options.mask;
  const maskBytes = mask ? mask.size * bytesPerElement(mask.dtype) : 0;
  return [
    heads * s.Lq * s.D * bpe,
    kvHeads * s.Lk * s.D * bpe,
    kvHeads * s.Lk * s.Dv * bpe,
    heads * s.Lq * s.Dv * bpe,
    options.returnWeights ? heads * s.Lq * s.Lk * 4 : 0,
    // a mask with batch or head dims is sliced like q; a broadcast one is bound whole
    Math.min(maskBytes, heads * s.Lq * s.Lk * (mask ? bytesPerElement(mask.dtype) : 0)) || maskBytes,
  ];
}

/** True when some binding of a whole call would exceed maxStorageBufferBindingSize. */
export function needsSplit(ctx: Context, s: AttentionShape, q: Tensor, options: AttentionOptions): boolean {
  const all = groupBytes(s, s.Hq, bytesPerElement(q.dtype), options).map((b) => b * s.B);
  return Math.max(...all) > ctx.limits.maxStorageBufferBindingSize;
}

/** `core` over the largest groups of heads whose slices fit one binding each. */
export async function attentionInGroups(
  core: Core,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  s: AttentionShape,
  options: AttentionOptions,
): Promise<AttentionResult> {
  const { ctx } = q;
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const bpe = bytesPerElement(q.dtype);
  const group = s.Hq / s.Hkv;
  // Head counts that keep kv heads whole: divisors of the GQA group, then multiples of it.
  const candidates = [...Array(s.Hq).keys()]
    .map((i) => i + 1)
    .filter((n) => s.Hq % n === 0 && (group % n === 0 || n % group === 0));
  const heads = candidates.filter((n) => Math.max(...groupBytes(s, n, bpe, options)) <= limit).at(-1);
  if (heads === undefined) return attentionInBlocks(core, q, k, v, s, options);
  const kvHeads = Math.max(1, heads / group);
  const output = ctx.zeros([s.B, s.Hq, s.Lq, s.Dv], q.dtype, 'attention:output');
  const lse = options.returnLse ? ctx.zeros([s.B, s.Hq, s.Lq], 'f32', 'attention:lse') : undefined;
  const weights = options.returnWeights
    ? ctx.zeros([s.B, s.Hq, s.Lq, s.Lk], 'f32', 'attention:weights')
    : undefined;
  const mask = options.mask;
  const maskDims = mask ? broadcastDims(mask, s) : undefined;

  for (let b = 0; b < s.B; b++) {
    for (let h0 = 0; h0 < s.Hq; h0 += heads) {
      const hk0 = Math.floor(h0 / group);
      await ctx.scope(async () => {
        const qs = slice(q, (b * s.Hq + h0) * s.Lq * s.D, [1, heads, s.Lq, s.D]);
        const ks = sliceHeads(k, b * s.Hkv + hk0, [1, kvHeads, s.Lk, s.D]);
        const vs = sliceHeads(v, b * s.Hkv + hk0, [1, kvHeads, s.Lk, s.Dv]);
        let ms = mask;
        if (mask && maskDims) {
          const [mb, mh, mi, mj] = maskDims;
          const mHeads = mh === 1 ? 1 : heads;
          const start = ((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h0)) * mi * mj;
          ms = slice(mask, start, [1, mHeads, mi, mj]);
        }
        const r = await core(qs, ks, vs, { ...options, mask: ms });
        const row = b * s.Hq + h0;
        copyInto(r.output, output, row * s.Lq * s.Dv);
        if (lse && r.lse) copyInto(r.lse, lse, row * s.Lq);
        if (weights && r.weights) copyInto(r.weights, weights, row * s.Lq * s.Lk);
      });
    }
  }
  return { output, lse, weights };
}

/** The mask's shape right-aligned to 4 dims [B', H', Lq', Lk'] (1 where it broadcasts). */
function broadcastDims(mask: Tensor, s: AttentionShape): number[] {
  broadcastStrides('attention: mask', mask.shape, [s.B, s.Hq, s.Lq, s.Lk]);
  return [...Array(4 - mask.rank).fill(1), ...mask.shape];
}

/** A new tensor holding `shape`-many elements of `t` from element `start` on. */
function slice(t: Tensor, start: number, shape: number[]): Tensor {
  const out = t.ctx.zeros(shape, t.dtype, `${t.buffer.label}:slice`);
  copyBytes(t, start, out, 0, out.size);
  return out;
}

/**
 * Rows [firstRow, firstRow + shape[2]) of heads [first, first + shape[1]) of a [.., H, L, D]
 * tensor, which may be a strided view (a KV cache).
 */
function sliceHeads(t: Tensor, first: number, shape: number[], firstRow = 0): Tensor {
  const [, heads, rows, dim] = shape;
  const out = t.ctx.zeros(shape, t.dtype, `${t.buffer.label}:slice`);
  for (let h = 0; h < heads; h++)
    copyBytes(t, ((first + h) * t.rowStride + firstRow) * dim, out, h * rows * dim, rows * dim);
  return out;
}

function copyInto(from: Tensor, to: Tensor, start: number): void {
  copyBytes(from, 0, to, start, from.size);
}

function copyBytes(from: Tensor, fromStart: number, to: Tensor, toStart: number, count: number): void {
  const bpe = bytesPerElement(from.dtype);
  const [src, dst, size] = [fromStart * bpe, toStart * bpe, count * bpe];
  if (src % 4 || dst % 4 || size % 4) {
    throw new Error(
      `attention: splitting this call needs 4-byte-aligned head slices; ${from.dtype} slices of ${count} elements are not (use f32, or sizes with an even element count)`,
    );
  }
  const encoder = from.ctx.device.createCommandEncoder({ label: 'attention:split-copy' });
  encoder.copyBufferToBuffer(from.buffer, src, to.buffer, dst, size);
  from.ctx.device.queue.submit([encoder.finish()]);
}

/**
 * `core` on one head at a time, as blocks of query rows against chunks of keys whose partial
 * results are merged by their log-sum-exp: for heads too large for one binding.
 */
async function attentionInBlocks(
  core: Core,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  s: AttentionShape,
  options: AttentionOptions,
): Promise<AttentionResult> {
  const { ctx } = q;
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const heads = `q [${s.Lq}, ${s.D}], k [${s.Lk}, ${s.D}], v [${s.Lk}, ${s.Dv}]`;
  if (options.returnWeights) {
    throw new Error(
      `attention: returnWeights is not supported when one head needs more than maxStorageBufferBindingSize (${limit} bytes), received true for ${heads}`,
    );
  }
  const mask = options.mask;
  const maskDims = mask ? broadcastDims(mask, s) : [1, 1, 1, 1];
  const sizes = blockSizes(
    s,
    bytesPerElement(q.dtype),
    mask ? bytesPerElement(mask.dtype) : 0,
    maskDims,
    limit,
  );
  if (!sizes) {
    throw new Error(
      `attention: one query row against one key needs more than maxStorageBufferBindingSize (${limit} bytes) for ${heads}`,
    );
  }
  const [rows, keys] = sizes;
  const merge = await mergePipeline(ctx, q.dtype);
  const output = ctx.zeros([s.B, s.Hq, s.Lq, s.Dv], q.dtype, 'attention:output');
  const lse = options.returnLse ? ctx.zeros([s.B, s.Hq, s.Lq], 'f32', 'attention:lse') : undefined;
  const group = s.Hq / s.Hkv;

  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.Hq; h++) {
      const kvHead = b * s.Hkv + Math.floor(h / group);
      for (let i0 = 0; i0 < s.Lq; i0 += rows) {
        const n = Math.min(rows, s.Lq - i0);
        await ctx.scope(async () => {
          const qs = slice(q, ((b * s.Hq + h) * s.Lq + i0) * s.D, [1, 1, n, s.D]);
          let acc: AttentionResult | undefined;
          for (let j0 = 0; j0 < s.Lk; j0 += keys) {
            // Causal: keys past the block's last row's limit add nothing. The first chunk always
            // runs, so that rows attending no key still get zeros and -Infinity.
            if (options.causal && j0 > 0 && j0 > i0 + n - 1 + s.Lk - s.Lq) break;
            const m = Math.min(keys, s.Lk - j0);
            const ks = sliceHeads(k, kvHead, [1, 1, m, s.D], j0);
            const vs = sliceHeads(v, kvHead, [1, 1, m, s.Dv], j0);
            const ms = mask && maskBlock(mask, maskDims, [b, h, i0, j0], [n, m]);
            // key j' of the chunk is allowed for row i' of the block iff j0 + j' <= i0 + i' + Lk - Lq
            const shift = s.Lk - s.Lq + i0 - j0;
            const r = await core(qs, ks, vs, { ...options, mask: ms, returnLse: true }, shift);
            acc = acc ? mergeLse(merge, acc, r, n, s.Dv) : r;
          }
          if (!acc?.lse) throw new Error('attention: internal error, a query block ran no key chunk');
          const row = (b * s.Hq + h) * s.Lq + i0;
          copyInto(acc.output, output, row * s.Dv);
          if (lse) copyInto(acc.lse, lse, row);
        });
      }
    }
  }
  return { output, lse };
}

/**
 * The most query rows per block and keys per chunk (keys as large as fit, then rows) whose
 * slices, partial results and mask block each fit one binding; undefined when none do.
 */
function blockSizes(
  s: AttentionShape,
  bpe: number,
  maskBpe: number,
  [, , mi, mj]: number[],
  limit: number,
): [number, number] | undefined {
  for (let keys = s.Lk; keys >= 1; keys = keys === s.Lk ? 2 ** Math.floor(Math.log2(keys - 1)) : keys / 2) {
    const maskCols = mj === 1 ? 1 : keys;
    if (keys * Math.max(s.D, s.Dv) * bpe > limit || maskCols * maskBpe > limit) continue;
    const perRow = Math.max(s.D * bpe, s.Dv * bpe, 4, mi === 1 ? 0 : maskCols * maskBpe);
    let rows = Math.min(s.Lq, Math.floor(limit / perRow));
    if (rows < s.Lq && rows >= 4) rows -= rows % 4; // keeps f16 and bool slices 4-byte aligned
    // few rows against many keys run the split-K decode kernel, whose partials need a binding too
    // (in the workgroup form: the registers form sizes its partials to the binding by itself)
    const oneHead = { ...s, B: 1, Hq: 1, Hkv: 1, Lk: keys };
    for (let n = 1; n <= rows && prefersDecode({ ...oneHead, Lq: n }, {}, 'workgroup'); n++) {
      if (n * DECODE_PARTIAL_BYTES > limit) rows = n - 1;
    }
    if (rows >= 1) return [rows, keys];
  }
  return undefined;
}

/** Rows [i0, i0 + n) and keys [j0, j0 + m) of head h of batch item b of a broadcast mask. */
function maskBlock(
  mask: Tensor,
  [mb, mh, mi, mj]: number[],
  [b, h, i0, j0]: number[],
  [n, m]: number[],
): Tensor {
  const rows = mi === 1 ? 1 : n;
  const cols = mj === 1 ? 1 : m;
  const first =
    (((mb === 1 ? 0 : b) * mh + (mh === 1 ? 0 : h)) * mi + (mi === 1 ? 0 : i0)) * mj + (mj === 1 ? 0 : j0);
  const out = mask.ctx.zeros([1, 1, rows, cols], mask.dtype, `${mask.buffer.label}:slice`);
  if (cols === mj) copyBytes(mask, first, out, 0, rows * cols);
  else for (let r = 0; r < rows; r++) copyBytes(mask, first + r * mj, out, r * cols, cols);
  return out;
}

/** The merge kernel for outputs of `dtype`. */
function mergePipeline(ctx: Context, dtype: Tensor['dtype']): Promise<GPUComputePipeline> {
  const storage = elementStorage(ctx, dtype);
  const key = `merge_lse:${storage}:${MERGE_WG}`;
  return ctx.pipeline(key, () => elementPrelude(storage, true) + specialise(mergeSource, { WG: MERGE_WG }));
}

/** a and b (n rows of Dv, over disjoint keys) merged by their log-sum-exp into new tensors. */
function mergeLse(
  pipeline: GPUComputePipeline,
  a: AttentionResult,
  b: AttentionResult,
  n: number,
  Dv: number,
): AttentionResult {
  const { ctx } = a.output;
  if (!a.lse || !b.lse) throw new Error('attention: internal error, merging partial results without lse');
  const output = ctx.zeros([1, 1, n, Dv], a.output.dtype, 'attention:merged-output');
  const lse = ctx.zeros([1, 1, n], 'f32', 'attention:merged-lse');
  const count = Math.ceil((n * Dv) / MERGE_WG);
  ctx.run([
    {
      label: 'merge_lse',
      pipeline,
      uniforms: new Uint32Array([n, Dv]).buffer,
      buffers: [a.output.buffer, a.lse.buffer, b.output.buffer, b.lse.buffer, output.buffer, lse.buffer],
      workgroups: [Math.min(count, ctx.limits.maxComputeWorkgroupsPerDimension), 1, 1],
    },
  ]);
  return { output, lse };
}
