// Attention on inputs larger than the device lets one binding hold: run it on groups of heads of
// one batch item at a time, each group's slices copied into buffers that fit, and copy the
// group's results back into place. The result is the same as an unsplit call.
import type { Context } from '../context';
import { broadcastStrides } from '../shape';
import { bytesPerElement, type Tensor } from '../tensor';
import type { AttentionOptions, AttentionResult, AttentionShape } from './attention';

type Core = (q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions) => Promise<AttentionResult>;

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
  if (heads === undefined) {
    throw new Error(
      `attention: one head needs more than maxStorageBufferBindingSize (${limit} bytes) ` +
        `for q [${s.Lq}, ${s.D}], k [${s.Lk}, ${s.D}], v [${s.Lk}, ${s.Dv}]; split the sequence yourself`,
    );
  }
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

/** Heads [first, first + shape[1]) of a [.., H, L, D] tensor, which may be a strided view (a KV cache). */
function sliceHeads(t: Tensor, first: number, shape: number[]): Tensor {
  const [, heads, rows, dim] = shape;
  const out = t.ctx.zeros(shape, t.dtype, `${t.buffer.label}:slice`);
  for (let h = 0; h < heads; h++)
    copyBytes(t, (first + h) * t.rowStride * dim, out, h * rows * dim, rows * dim);
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
