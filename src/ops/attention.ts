import flashSource from '../../shaders/flash_attention.wgsl?raw';
import registersSource from '../../shaders/flash_attention_registers.wgsl?raw';
import flashCommonSource from '../../shaders/flash_common.wgsl?raw';
import maskBiasSource from '../../shaders/mask_bias.wgsl?raw';
import valueChunksSource from '../../shaders/value_chunks.wgsl?raw';
import type { AttentionKernel, Context } from '../context';
import { chunkPrelude, elementPrelude, elementStorage } from '../f16';
import { broadcastStrides, expectRank, fmt } from '../shape';
import type { Tensor } from '../tensor';
import { attentionInGroups, needsSplit } from './attention_split';
import { checkOptions, foldGrid, specialise } from './common';
import { decodeSplitK, prefersDecode } from './decode_attention';

export interface AttentionOptions {
  /** Multiplies q·k. Default 1/sqrt(D). */
  scale?: number;
  /** Bottom-right causal: query i may attend key j iff j <= i + (Lk - Lq). Combines with `mask`. */
  causal?: boolean;
  /**
   * A `bool` tensor (true = may attend) or an `f32` tensor added to the scaled scores,
   * broadcastable to [B, Hq, Lq, Lk].
   */
  mask?: Tensor;
  /** Also return the row log-sum-exp [B, Hq, Lq] (natural log; -Infinity where nothing may be attended). */
  returnLse?: boolean;
  /** Also return the attention weights [B, Hq, Lq, Lk]. For inspection at small sizes: it is Lq x Lk. */
  returnWeights?: boolean;
}

export interface AttentionResult {
  /** [B, Hq, Lq, Dv] */
  output: Tensor;
  /** [B, Hq, Lq], when `returnLse` */
  lse?: Tensor;
  /** [B, Hq, Lq, Lk], when `returnWeights` */
  weights?: Tensor;
}

const OPTION_KEYS = ['scale', 'causal', 'mask', 'returnLse', 'returnWeights'] as const;

/** Rows of queries per workgroup of both flash kernels (one or four per invocation). */
const ROWS_PER_WORKGROUP = 64;

/** The problem sizes, checked. */
export interface AttentionShape {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
}

/**
 * Scaled dot-product attention: softmax(q kᵀ · scale + mask) v, fused: one dispatch of the flash
 * kernel, or for few queries against many keys the split-K decode kernel (two dispatches), each
 * in the form the context chose ({@link Context.attentionKernel}).
 * q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> output [B, Hq, Lq, Dv].
 * Hq must be a multiple of Hkv (query head h reads kv head floor(h / (Hq / Hkv))).
 * q, k and v are all 'f32' or all 'f16' (halves in memory; max, sum and output accumulate in f32);
 * the output has their dtype, lse and weights are 'f32'. k and v may be a `KVCache`'s views
 * (`cache.keys`, `cache.values`, or what `cache.append` returns), read in place.
 *
 * @example
 * const { output } = await attention(q, k, v, { causal: true });
 * const values = await output.read();
 */
export async function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  return attentionShifted(q, k, v, options);
}

/**
 * @internal `attention` whose causal condition is j <= i + `causalShift` (default Lk - Lq): the
 * split path runs blocks of queries against chunks of keys with their own shift.
 */
export async function attentionShifted(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
  causalShift?: number,
): Promise<AttentionResult> {
  const shape = checkAttentionInputs(q, k, v, options);
  if (needsSplit(q.ctx, shape, q, options))
    return attentionInGroups(attentionShifted, q, k, v, shape, options);
  const shift = causalShift ?? shape.Lk - shape.Lq;
  const form = flashKernel(q.ctx, shape, options);
  if (prefersDecode(shape, options, form)) return decodeSplitK(q, k, v, shape, options, shift);
  const { ctx } = q;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
  const mask = options.mask;
  const maskStrides = mask ? broadcastStrides('attention: mask', mask.shape, [B, Hq, Lq, Lk]) : [0, 0, 0, 0];
  const maskKind = !mask ? 0 : mask.dtype === 'bool' ? 1 : 2;
  const D4 = Math.ceil(D / 4);
  const DV4 = Math.ceil(Dv / 4);
  const returnLse = options.returnLse ?? false;
  const returnWeights = options.returnWeights ?? false;
  const storage = elementStorage(ctx, q.dtype);
  const registers = form === 'registers';

  let key: string;
  let pipeline: Promise<GPUComputePipeline>;
  if (registers) {
    const constants = { WG: ROWS_PER_WORKGROUP / 4, D4, DV4, MASK: maskKind, LSE: returnLse };
    key = `flash_attention_registers:${storage}:${Object.values(constants).join(',')}`;
    pipeline = ctx.pipeline(
      key,
      () =>
        elementPrelude(storage, true) +
        chunkPrelude(storage) +
        specialise(registersSource + flashCommonSource + maskBiasSource + valueChunksSource, constants),
    );
  } else {
    const constants = {
      WG: ROWS_PER_WORKGROUP,
      BC: keysPerTile(ctx, D4, DV4),
      D4,
      DV4,
      MASK: maskKind,
      LSE: returnLse,
      WEIGHTS: returnWeights,
    };
    key = `flash_attention:${storage}:${Object.values(constants).join(',')}`;
    pipeline = ctx.pipeline(
      key,
      () =>
        elementPrelude(storage, true) +
        specialise(flashSource + flashCommonSource + maskBiasSource, constants),
    );
  }

  const output = ctx.zeros([B, Hq, Lq, Dv], q.dtype, 'attention:output');
  const lse = returnLse ? ctx.zeros([B, Hq, Lq], 'f32', 'attention:lse') : undefined;
  const weights = returnWeights ? ctx.zeros([B, Hq, Lq, Lk], 'f32', 'attention:weights') : undefined;

  const uniforms = new ArrayBuffer(80);
  const u32 = new Uint32Array(uniforms);
  u32.set([B, Hq, Hkv, Lq, Lk, D, Dv, options.causal ? 1 : 0, ...maskStrides]);
  new Float32Array(uniforms)[12] = options.scale ?? 1 / Math.sqrt(D);
  const grid = foldGrid(ctx, Math.ceil(Lq / ROWS_PER_WORKGROUP) * Hq * B, 'attention');
  u32.set(grid.slice(0, 2), 13);
  u32.set([k.rowStride, v.rowStride], 15);
  new Int32Array(uniforms)[17] = shift;

  ctx.run([
    {
      label: key,
      pipeline: await pipeline,
      uniforms,
      buffers: [
        q.buffer,
        k.buffer,
        v.buffer,
        mask ? mask.buffer : ctx.dummy('mask'),
        output.buffer,
        lse ? lse.buffer : ctx.dummy('lse'),
        ...(registers ? [] : [weights ? weights.buffer : ctx.dummy('weights')]),
      ],
      workgroups: grid,
    },
  ]);
  return { output, lse, weights };
}

/**
 * The flash kernel that runs a call of these sizes and options on `ctx`: the context's choice
 * when it is `'workgroup'` or the call suits `'registers'` (head dims multiples of 4, whose rows
 * load as whole vec4s, and no weights output), else `'workgroup'`.
 */
export function flashKernel(ctx: Context, shape: AttentionShape, options: AttentionOptions): AttentionKernel {
  const fits = shape.D % 4 === 0 && shape.Dv % 4 === 0 && !options.returnWeights;
  return ctx.attentionKernel === 'registers' && fits ? 'registers' : 'workgroup';
}

/**
 * Largest power-of-two tile of keys whose K and V rows fit in workgroup memory, at most 16 (the
 * kernel keeps one bit per key of a tile in a u32, so never above 32). On SwiftShader 16 runs as
 * fast as 32 at L = 512 and halves the pipeline compile (1.6 s against 3.1 s at D = 64).
 */
function keysPerTile(ctx: Context, D4: number, DV4: number): number {
  const budget = ctx.limits.maxComputeWorkgroupStorageSize - 64;
  let bc = 16;
  while (bc > 1 && bc * (D4 + DV4) * 16 > budget) bc /= 2;
  return bc;
}

/** Validates q, k, v and the options of `attention`; returns the sizes. */
export function checkAttentionInputs(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): AttentionShape {
  checkOptions('attention', options, OPTION_KEYS);
  q.assertUsable('attention: q');
  // k and v may be views of a KV cache (rows of one kv head rowStride apart)
  k.assertUsable('attention: k', q.ctx, true);
  v.assertUsable('attention: v', q.ctx, true);
  expectRank('attention: q', q.shape, 4, 'B, Hq, Lq, D');
  expectRank('attention: k', k.shape, 4, 'B, Hkv, Lk, D');
  expectRank('attention: v', v.shape, 4, 'B, Hkv, Lk, Dv');
  const [B, Hq, Lq, D] = q.shape;
  const [Bk, Hkv, Lk, Dk] = k.shape;
  const [Bv, Hv, Lv, Dv] = v.shape;
  if (q.dtype !== 'f32' && q.dtype !== 'f16') {
    throw new Error(`attention: q must have dtype 'f32' or 'f16', received '${q.dtype}'`);
  }
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
    throw new Error(
      `attention: q, k and v must have the same dtype, received q '${q.dtype}', k '${k.dtype}', v '${v.dtype}'`,
    );
  }
  if (Bk !== B)
    throw new Error(`attention: k batch must equal q batch ${B}, received k shape ${fmt(k.shape)}`);
  if (Dk !== D)
    throw new Error(`attention: k head dim must equal q head dim ${D}, received k shape ${fmt(k.shape)}`);
  if (Hq % Hkv !== 0) {
    throw new Error(
      `attention: q heads (${Hq}) must be a multiple of k heads (${Hkv}), received q ${fmt(q.shape)} and k ${fmt(k.shape)}`,
    );
  }
  if (Bv !== B || Hv !== Hkv || Lv !== Lk) {
    throw new Error(
      `attention: v must have shape [${B}, ${Hkv}, ${Lk}, Dv] like k, received ${fmt(v.shape)}`,
    );
  }
  if (D > 256 || Dv > 256) {
    throw new Error(`attention: head dims up to 256 are supported, received D=${D}, Dv=${Dv}`);
  }
  if (options.scale !== undefined && (typeof options.scale !== 'number' || !Number.isFinite(options.scale))) {
    throw new Error(`attention: options.scale must be a finite number, received ${String(options.scale)}`);
  }
  for (const flag of ['causal', 'returnLse', 'returnWeights'] as const) {
    const value = options[flag];
    if (value !== undefined && typeof value !== 'boolean') {
      throw new Error(`attention: options.${flag} must be a boolean, received ${typeof value}`);
    }
  }
  const mask = options.mask;
  if (mask !== undefined) {
    if (typeof mask !== 'object' || mask === null || !('dtype' in mask)) {
      throw new Error('attention: options.mask must be a Tensor');
    }
    mask.assertUsable('attention: mask', q.ctx);
    if (mask.dtype === 'f16')
      throw new Error("attention: mask dtype must be 'bool' or 'f32', received 'f16'");
    broadcastStrides('attention: mask', mask.shape, [B, Hq, Lq, Lk]);
  }
  return { B, Hq, Hkv, Lq, Lk, D, Dv };
}
