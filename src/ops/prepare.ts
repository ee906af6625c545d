// Compiling the pipelines of attention calls ahead of the first call (each costs up to a second
// or so on first use), from their shapes alone: the same plans and programs as the calls, run
// through Recording.compile instead of being submitted.
import type { Context } from '../context';
import { Recording } from '../program';
import { expectRank, fmt } from '../shape';
import { type AttentionOptions, type AttentionStrides, corePlan, denseStrides, plan } from './attention_plan';
import { recordCore, recordMerge } from './attention_split';

/**
 * An attention call to compile for: the shapes of q, k, v (in the options' `layout`; and of a
 * mask), their dtype, the options.
 */
export interface AttentionCallShape {
  q: readonly number[];
  k: readonly number[];
  v: readonly number[];
  /** Of q, k and v. Default 'f32'. */
  dtype?: 'f32' | 'f16';
  /** The mask's shape and dtype, when the calls pass one. */
  mask?: { shape: readonly number[]; dtype: 'bool' | 'f32' };
  options?: Omit<AttentionOptions, 'mask'>;
}

/**
 * Compiles every pipeline that `attention` calls of these shapes and options will use, so that
 * the first real call does not wait for compilation. Resolves when all are compiled.
 *
 * @example
 * await prepareAttention(ctx, [
 *   { q: [1, 8, 512, 64], k: [1, 2, 512, 64], v: [1, 2, 512, 64], options: { causal: true } },
 *   { q: [1, 8, 1, 64], k: [1, 2, 2048, 64], v: [1, 2, 2048, 64] }, // decode steps
 * ]);
 */
export async function prepareAttention(ctx: Context, calls: readonly AttentionCallShape[]): Promise<void> {
  const rec = new Recording(ctx, 'prepareAttention');
  const placeholder = ctx.dummy('prepare');
  for (const call of calls) {
    const options = call.options ?? {};
    const layout = options.layout ?? 'bhld';
    const blhd = layout === 'blhd';
    expectRank('prepareAttention: q', call.q, 4, blhd ? 'B, Lq, Hq, D' : 'B, Hq, Lq, D');
    expectRank('prepareAttention: k', call.k, 4, blhd ? 'B, Lk, Hkv, D' : 'B, Hkv, Lk, D');
    expectRank('prepareAttention: v', call.v, 4, blhd ? 'B, Lk, Hkv, Dv' : 'B, Hkv, Lk, Dv');
    // [B, H, L, D] whatever the layout
    const bhld = (x: readonly number[]) => (blhd ? [x[0], x[2], x[1], x[3]] : x);
    const [B, Hq, Lq, D] = bhld(call.q);
    const [, Hkv, Lk] = bhld(call.k);
    const Dv = call.v[3];
    if (Hq % Hkv !== 0 || call.k[3] !== D || bhld(call.v)[2] !== Lk) {
      throw new Error(
        `prepareAttention: q ${fmt(call.q)}, k ${fmt(call.k)} and v ${fmt(call.v)} do not fit together (see attention)`,
      );
    }
    const shape = { B, Hq, Hkv, Lq, Lk, D, Dv };
    const dtype = call.dtype ?? 'f32';
    const mask = call.mask && { ...call.mask, size: call.mask.shape.reduce((a, b) => a * b, 1) };
    const p = plan({ ctx, shape, dtype, mask }, options);
    // strides as the call's tensors will have them (a KV cache's views have the same row strides)
    const io = (strides: AttentionStrides) => ({
      q: placeholder,
      k: placeholder,
      v: placeholder,
      strides,
      mask: mask && placeholder,
      output: placeholder,
      lse: placeholder,
      weights: placeholder,
    });
    if (p.path === 'empty') continue;
    if (p.path === 'heads') recordCore(rec, p.group, io(denseStrides(p.group.shape, layout)));
    else if (p.path === 'blocks') {
      const block = { ...shape, B: 1, Hq: 1, Hkv: 1, Lq: p.rows, Lk: p.keys };
      const blockMask = mask && {
        ...mask,
        shape: [1, 1, p.maskDims[2] === 1 ? 1 : p.rows, p.maskDims[3] === 1 ? 1 : p.keys],
      };
      const blockIo = io(denseStrides(block, 'bhld'));
      recordCore(
        rec,
        corePlan({ ctx, shape: block, dtype, mask: blockMask }, { ...options, returnLse: true }, 0),
        blockIo,
      );
      recordMerge(rec, p, blockIo, blockIo, blockIo, p.rows);
    } else recordCore(rec, p, io(denseStrides(shape, layout)));
  }
  await rec.compile();
}
