// Attention, step 1 and 2 of check -> plan -> programs -> run: validate the inputs, then decide
// once how the call runs (which path, which kernel form, tiles, chunks, mask strides). A plan is
// plain data: the executors (flash_attention.ts, decode_attention.ts, attention_split.ts) turn it
// into programs, and tests and the benchmark read it to know what ran.
import { checkOptions } from '../checks';
import type { AttentionKernel, Context } from '../context';
import { checkDropout, type DropoutOptions } from '../dropout';
import { type ElementStorage, elementStorage } from '../f16';
import { IntTensor } from '../int_tensor';
import type { Bindable } from '../program';
import { broadcastStrides, expectRank, fmt } from '../shape';
import { bytesPerElement, type DType, rowMajorStrides, type Tensor } from '../tensor';
import { tunedKernel } from '../tune_table';
import { type MatrixTiles, matrixTiles } from './matrix_tiles';

/**
 * How q, k, v and the output are laid out: `'bhld'` [B, H, L, D] (PyTorch's), or `'blhd'`
 * [B, L, H, D] (FlashAttention's, and what a projection's [B, L, H * D] rows are). The kernels read
 * either in place, through strides.
 */
export type AttentionLayout = 'bhld' | 'blhd';

export interface AttentionOptions {
  /**
   * The layout of q, k, v and the output (and of `attentionBackward`'s output, dOutput and
   * gradients): `'bhld'` (default) q [B, Hq, Lq, D], or `'blhd'` q [B, Lq, Hq, D], k [B, Lk, Hkv, D],
   * v [B, Lk, Hkv, Dv], output [B, Lq, Hq, Dv]. The mask, lse and weights keep their shapes.
   */
  layout?: AttentionLayout;
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
  /**
   * Also return the attention weights [B, Hq, Lq, Lk]. For inspection at small sizes: it is Lq x Lk.
   * With `dropout`, the weights after dropout (as PyTorch's MultiheadAttention returns them).
   */
  returnWeights?: boolean;
  /**
   * Tanh softcapping (Gemma 2): s = c · tanh(s / c) of s = scale · q·k, before everything else.
   * c > 0; 0 means none (FlashAttention's and onnxruntime's default).
   */
  softcap?: number;
  /**
   * WGSL text defining `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32`, applied to
   * each score after the softcap (b batch, h query head, i query row, j key; with packed documents
   * b = 0 and i, j are positions in the packed sequences). Compiled into the kernel.
   */
  scoreMod?: string;
  /**
   * ALiBi slopes [Hq], or [B, Hq] for a slope per batch item as FlashAttention's `alibi_slopes`
   * allows (an array, batch-major for [B, Hq], or an f32 tensor): s -= slope[b, h] · |i + Lk - Lq - j|.
   */
  alibiSlopes?: ArrayLike<number> | Tensor;
  /**
   * Sliding window [left, right]: row i may attend key j iff i + Lk - Lq - left <= j <=
   * i + Lk - Lq + right; either side a non-negative integer, or Infinity or a negative integer for
   * no bound (FlashAttention's `window_size=(-1, -1)`). With causal, right is 0.
   */
  window?: readonly [number, number];
  /**
   * WGSL text defining `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool`, true = row i may
   * attend key j (same indices as scoreMod). Compiled into the kernel.
   */
  maskMod?: string;
  /**
   * Data that scoreMod and maskMod read (FlexAttention's captured tensors: a bias table, document
   * ids, prefix lengths): each entry `name` becomes a WGSL function `fn name(index: u32) -> f32`
   * (numbers, a Float32Array or an 'f32' tensor) or `-> i32` (an Int32Array or an
   * {@link IntTensor}) returning element `index` of the flat data (past the end: the last
   * element). Names are WGSL identifiers; tensors stay on the GPU (copied there, no readback).
   */
  modData?: ModData;
  /**
   * Packed documents (FlashAttention's varlen, B = 1): cumulative starts of the documents in the
   * query rows, [documents + 1], first 0, last Lq. Rows of document d attend only keys of document
   * d; causal, window and ALiBi apply inside each document with its own bottom-right offset. An
   * array, or an {@link IntTensor} [documents + 1] already on the GPU (copied on the GPU, no
   * readback: its contents are not checked; wrong starts give wrong rows, never reads outside
   * the inputs).
   */
  cuSeqlensQ?: ArrayLike<number> | IntTensor;
  /** Cumulative starts of the documents in the keys, [documents + 1], first 0, last Lk (as cuSeqlensQ). */
  cuSeqlensK?: ArrayLike<number> | IntTensor;
  /**
   * Keys in use per batch item, [B] (FlashAttention's `seqused_k` and `cache_seqlens`;
   * onnxruntime GroupQueryAttention's `seqlens_k` + 1): batch item b attends only keys
   * j < sequsedK[b], and its causal diagonal, window and ALiBi end there (bottom-right offset
   * sequsedK[b] - Lq), as in a KV cache whose items hold different lengths. With packed documents,
   * one per document, counted from the document's first key. Integers in [0, Lk] (or the
   * document's keys); or an {@link IntTensor} on the GPU (contents unchecked: values past the
   * end count as all the keys). The forward kernels skip the keys not in use.
   */
  sequsedK?: ArrayLike<number> | IntTensor;
  /**
   * Left padding per batch item, [B] (FlashAttention's `cache_leftpad`): batch item b attends no
   * key j < cacheLeftpad[b], e.g. the pads before a shorter prompt in a KV cache that holds a
   * left-padded batch, so that every item appends at the same position. Positions are unchanged:
   * causal, window and ALiBi measure from the same diagonal as without it. Integers in [0, Lk]; or
   * an {@link IntTensor} (contents unchecked). The forward kernels skip the padding. Not with
   * packed documents (their starts say where each document's keys begin).
   */
  cacheLeftpad?: ArrayLike<number> | IntTensor;
  /**
   * Attention sinks [Hq] (an array or an f32 tensor): one extra logit per head in the softmax
   * denominator, with no value (gpt-oss; zeros = smooth softmax). lse includes it; a row with no
   * allowed key gives zeros and lse = sink.
   */
  sinks?: ArrayLike<number> | Tensor;
  /**
   * Tile states from `createBlockMask`: keys in empty tiles are not attended (and the kernels skip
   * those tiles); on full tiles maskMod is not evaluated. Build it from the maskMod / mask it goes
   * with (or coarser).
   */
  blockMask?: BlockMask;
  /**
   * Dropout on the probabilities (PyTorch's SDPA `dropout_p`, for training): after the softmax,
   * each probability is kept with probability 1 - p and scaled by 1 / (1 - p), or set to 0; lse
   * stays that of the softmax before dropout. p in [0, 1) (0 is exactly no dropout), seed a u32.
   * The keep decision of (b, h, i, j) is a counter-based hash of (seed, b, h, i, j)
   * (shaders/dropout.wgsl, `dropoutKeeps` in the reference), so the same seed gives the same mask
   * and `attentionBackward` with the same option regenerates it. b, h, i, j are positions in the
   * call's tensors: a call split over heads or blocks, the decode kernel and KV-cache views drop
   * the same probabilities as one flash call on the same inputs (with packed documents b = 0 and
   * i, j are positions in the packed sequences). A decoding step's row i is its row in that call:
   * give each step its own seed.
   */
  dropout?: DropoutOptions;
}

/** The entries of {@link AttentionOptions.modData}, by the name of their WGSL function. */
export type ModData = Readonly<Record<string, ArrayLike<number> | Tensor | IntTensor>>;

/**
 * A block mask: the state of each (query block, key block) tile, as `createBlockMask` computes
 * it. `states` [B, H, numBlocksQ, numBlocksK] holds 0 (empty), 1 (partial) or 2 (full) as f32; B
 * or H of 1 broadcasts over the batch or the query heads.
 */
export interface BlockMask {
  states: Tensor;
  blockSizeQ: number;
  blockSizeK: number;
  Lq: number;
  Lk: number;
}

export interface AttentionResult {
  /** [B, Hq, Lq, Dv] ([B, Lq, Hq, Dv] with layout 'blhd') */
  output: Tensor;
  /** [B, Hq, Lq], when `returnLse` */
  lse?: Tensor;
  /** [B, Hq, Lq, Lk], when `returnWeights` */
  weights?: Tensor;
}

/** The names of the sparse and programmable options, which the layer passes on as they are. */
export type ScoringOptionKey =
  | 'softcap'
  | 'scoreMod'
  | 'alibiSlopes'
  | 'window'
  | 'maskMod'
  | 'modData'
  | 'cuSeqlensQ'
  | 'cuSeqlensK'
  | 'sequsedK'
  | 'cacheLeftpad'
  | 'sinks'
  | 'blockMask';
/** @internal every ScoringOptionKey, for the option checks */
export const SCORING_OPTION_KEYS: readonly ScoringOptionKey[] = [
  'softcap',
  'scoreMod',
  'alibiSlopes',
  'window',
  'maskMod',
  'modData',
  'cuSeqlensQ',
  'cuSeqlensK',
  'sequsedK',
  'cacheLeftpad',
  'sinks',
  'blockMask',
];

const OPTION_KEYS = [
  'scale',
  'causal',
  'mask',
  'returnLse',
  'returnWeights',
  ...SCORING_OPTION_KEYS,
  'layout',
  'dropout',
] as const;

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

/** What the kernels of one (unsplit) call are specialised and parametrised by. */
export interface CorePlan {
  shape: AttentionShape;
  /** The form of the flash kernel and of the decode pass (see ContextOptions.attentionKernel). */
  kernel: AttentionKernel;
  storage: ElementStorage;
  /** 0 none, 1 bool, 2 additive */
  maskKind: 0 | 1 | 2;
  /** Element strides of the mask broadcast to [B, Hq, Lq, Lk]; 0 on broadcast dims. */
  maskStrides: number[];
  scale: number;
  causal: boolean;
  /** Causal: key j is allowed for row i iff j <= i + causalShift (Lk - Lq, or a block's own). */
  causalShift: number;
  lse: boolean;
  weights: boolean;
  rules: ScoringRules;
  /** Dropout on the probabilities; undefined without it (or with p = 0). */
  dropout?: DropoutOptions;
}

/** Marks an absent part of the rule data (RULE_NONE in key_rules.wgsl). */
export const RULE_NONE = 0xffffffff;
/** Stands for an unbounded window side: far past any length, and safe from i32 overflow. */
const WINDOW_UNBOUNDED = 0x3fffffff;

/**
 * The sparse and programmable options as the kernels read them (key_rules.wgsl). Offsets index
 * the call's rule data (`AttentionBuffers.rules`, u32 words): RULE_NONE where absent.
 */
export interface ScoringRules {
  /** 0: none */
  softcap: number;
  /** Window sides, WINDOW_UNBOUNDED for Infinity. */
  window: [left: number, right: number];
  /** Words of the rule data, all parts together. */
  words: number;
  alibiAt: number;
  /** Words between the slopes of consecutive batch items: Hq for slopes [B, Hq], 0 for [Hq]. */
  alibiB: number;
  sinksAt: number;
  /** Number of packed documents (0: none), and where their cumulative starts are. */
  docs: number;
  docsQAt: number;
  docsKAt: number;
  /** Keys in use per batch item or document (sequsedK), and the full problem's Lk. */
  usedAt: number;
  keysFull: number;
  /** The first key in use per batch item (cacheLeftpad). */
  leftpadAt: number;
  /** Block-mask states: where, the states' [B, H, nq, nk] and the tile sizes [rows, keys]. */
  blockMaskAt: number;
  blockMaskShape: [number, number, number, number];
  blockSize: [number, number];
  /** WGSL of score_mod and mask_mod, the caller's or undefined (identities). */
  scoreMod?: string;
  maskMod?: string;
  /**
   * modData: where its table starts (per entry, the offset of its data from modAt and its
   * length; the data follow), and the WGSL of its accessors (modDataSource), '' without.
   */
  modAt: number;
  modAccessors: string;
  /** Where this call's b, h, i, j start in the full problem (split calls). */
  origin: [b: number, h: number, i: number, j: number];
}

/** One dispatch of a flash kernel: `rowsPerWorkgroup` query rows of one head per workgroup. */
export interface FlashPlan extends CorePlan {
  path: 'flash';
  rowsPerWorkgroup: number;
  /** Keys staged per tile in workgroup memory ('workgroup' form). */
  keysPerTile: number;
  /** The 'matrix' form's tiles (builtins or emulation, value dims per workgroup). */
  matrix?: MatrixTiles;
  /**
   * 'tiled' form: row maxima and sums exchanged by subgroup shuffles where the subgroups allow
   * (the device has `subgroups`), else through workgroup memory.
   */
  subgroups: boolean;
  /**
   * 'tiled' and 'workgroup' forms: parts the keys are split into (1: not split), of `splitKeys`
   * keys each, whose partial results are merged by log-sum-exp: tiled calls with fewer than 128
   * workgroups of rows split into up to 128 / workgroups parts of at least 256 keys, workgroup
   * calls (on GPUs, without returnWeights) with fewer than 1024 into parts of at least 64 keys.
   */
  keySplits: number;
  splitKeys: number;
  /**
   * 'tiled' form: the arithmetic of its q k and P v products: 'f16' (f16 tiles and products, f32
   * sums) where the storage is native f16 (the device has shader-f16), else 'f32';
   * 'f16-emulated' rounds like 'f16' in f32 arithmetic (for checking it without shader-f16).
   */
  products: TiledProducts;
  workgroups: number;
}

/** See {@link FlashPlan.products}. */
export type TiledProducts = 'f32' | 'f16' | 'f16-emulated';

/** Split-K decode: keys split into chunks scored in parallel, merged by log-sum-exp. */
export interface DecodePlan extends CorePlan {
  path: 'decode';
  /** Key chunks per (kv head, row block) ('workgroup') or per row ('registers'). */
  chunks: number;
  /** Key tiles per chunk: tiles of DECODE_WG keys ('workgroup') or of 4 ('registers'). */
  tilesPerChunk: number;
  /** Partial results per query row. */
  partials: number;
  /**
   * 'workgroup' form: whether the key groups of a workgroup fold their states into one partial
   * per row (decodeChunkPartials; else each group writes its own). False in the 'registers' form.
   */
  folded: boolean;
  /** 'workgroup' form: (query head, query) rows per block and blocks per kv head. */
  rowsPerBlock: number;
  rowBlocks: number;
  /**
   * 'workgroup' form: lanes along the head dims per key row (decodeKeyLanes; each group of them
   * scores four keys per step), and whether their dot products are
   * summed by subgroup shuffles (the device has `subgroups`; else in workgroup memory). 1 and
   * false in the 'registers' form.
   */
  keyLanes: number;
  subgroups: boolean;
  workgroups: number;
}

/** A call too large for one binding, run over groups of heads of one batch item. */
export interface HeadsPlan {
  path: 'heads';
  shape: AttentionShape;
  heads: number;
  kvHeads: number;
  /** The mask's shape right-aligned to [B', H', Lq', Lk'] (1 where it broadcasts). */
  maskDims: number[];
  /** How each group runs. */
  group: FlashPlan | DecodePlan;
}

/** A head too large for one binding, run as blocks of query rows x chunks of keys. */
export interface BlocksPlan {
  path: 'blocks';
  shape: AttentionShape;
  rows: number;
  keys: number;
  maskDims: number[];
  storage: ElementStorage;
}

/** A call with no rows (B, Hq or Lq of 0): its results have no elements; nothing runs. */
export interface EmptyPlan {
  path: 'empty';
  shape: AttentionShape;
}

export type AttentionPlan = FlashPlan | DecodePlan | HeadsPlan | BlocksPlan | EmptyPlan;

/** Element strides of an operand's batch, head and row (its last dim is contiguous). */
export type HeadStrides = readonly [b: number, h: number, l: number];

/** Strides of q, k, v and the output (also of dOutput in the backward). */
export interface AttentionStrides {
  q: HeadStrides;
  k: HeadStrides;
  v: HeadStrides;
  o: HeadStrides;
}

/** The batch, head and row strides of a tensor of `layout` with these element strides. */
export function headStrides(strides: readonly number[], layout: AttentionLayout): HeadStrides {
  const [b, x, y] = strides;
  return layout === 'blhd' ? [b, y, x] : [b, x, y];
}

/** The strides of a call's q, k, v and output (tensors of `layout`). */
export function tensorStrides(call: {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  output: Tensor;
  layout: AttentionLayout;
}): AttentionStrides {
  const of = (t: Tensor) => headStrides(t.strides, call.layout);
  return { q: of(call.q), k: of(call.k), v: of(call.v), o: of(call.output) };
}

/** Strides of dense q, k, v and output of `shape` in `layout`. */
export function denseStrides(s: AttentionShape, layout: AttentionLayout): AttentionStrides {
  const dense = (H: number, L: number, D: number) =>
    headStrides(rowMajorStrides(layout === 'blhd' ? [s.B, L, H, D] : [s.B, H, L, D]), layout);
  return {
    q: dense(s.Hq, s.Lq, s.D),
    k: dense(s.Hkv, s.Lk, s.D),
    v: dense(s.Hkv, s.Lk, s.Dv),
    o: dense(s.Hq, s.Lq, s.Dv),
  };
}

/** The shape of an operand [B, H, L, D] in `layout`. */
export function layoutShape(layout: AttentionLayout, B: number, H: number, L: number, D: number): number[] {
  return layout === 'blhd' ? [B, L, H, D] : [B, H, L, D];
}

/** The buffers of one (unsplit) call, read and written through `strides`. */
export interface AttentionBuffers {
  q: Bindable;
  k: Bindable;
  v: Bindable;
  strides: AttentionStrides;
  mask?: Bindable;
  /** The rule data of `ScoringRules` (absent: no ALiBi, sinks or documents). */
  rules?: Bindable;
  output: Bindable;
  lse?: Bindable;
  weights?: Bindable;
}

/** Rows of queries per workgroup of both flash kernels (one or four per invocation). */
export const ROWS_PER_WORKGROUP = 64;
/** Rows of queries per workgroup of the `matrix` flash kernel (BR of flash_attention_matrix.wgsl). */
const MATRIX_ROWS = 32;
/** Invocations per workgroup of the `workgroup` decode pass; also keys per tile (a power of two). */
export const DECODE_WG = 64;
/** Most (query head, query) rows that one `workgroup` decode block scores against each key. */
const DECODE_MAX_ROWS = 8;
/**
 * How the `workgroup` decode pass spreads keys: about `workgroups` workgroups, of at least
 * `minTiles` key tiles each. On a GPU, enough workgroups to fill every core with warps (4096 x 2
 * warps: the 64 per core of a 132-core H100 / H200), as a decode step waits on its loads and only
 * many loads in flight reach the memory bandwidth (on the H200, at 1024 workgroups of 4 tiles the
 * pass read 2.1 TB/s of a measured 4.5, and its rate grew with the workgroups of the shape), with
 * chunks down to one tile; on a fallback adapter (a CPU, a few cores) fewer, of two tiles or more,
 * as each chunk's partials cost it more than they gain.
 */
const DECODE_SPREAD = { workgroups: 4096, minTiles: 1 };
const DECODE_FALLBACK_SPREAD = { workgroups: 256, minTiles: 2 };
/**
 * Most partials per query row (key chunks): the merge reads a row's partials in up to 256
 * / ceil(Dv / 4) slices at once (partials_merge.ts), so this bounds its serial reads per slice.
 */
const DECODE_MAX_PARTIALS = 256;
/** Invocations per workgroup of the `registers` decode pass (one key chunk each). */
export const DECODE_REGISTERS_WG = 16;
/** `registers` decode pass: invocations to aim for, and fewest keys per chunk (a multiple of 4). */
const DECODE_REGISTERS_TARGET_CHUNKS = 1024;
const DECODE_REGISTERS_MIN_KEYS = 32;

/** Inputs of a plan: sizes and dtypes, no buffers. */
interface PlanInputs {
  ctx: Context;
  shape: AttentionShape;
  dtype: DType;
  mask?: { shape: readonly number[]; dtype: DType; size: number };
  /**
   * False when a stride of q, k or v is not a multiple of 4 elements (a wrapped strided view): the
   * `registers` kernels, which read four-element chunks, cannot run it. Default true.
   */
  chunked?: boolean;
}

/** Whether every stride of these tensors is a multiple of 4 elements (see PlanInputs.chunked). */
export function chunked(...tensors: Tensor[]): boolean {
  return tensors.every((t) => t.strides.slice(0, -1).every((x) => x % 4 === 0));
}

/**
 * How `attention(q, k, v, options)` would run on these inputs: the path (`flash`, split-K
 * `decode`, `heads` groups or `blocks` x chunks for inputs larger than a binding), the kernel
 * form, tiles and chunks. Validates like `attention` does.
 */
export function planAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): AttentionPlan {
  const shape = checkAttentionInputs(q, k, v, options);
  return plan({ ctx: q.ctx, shape, dtype: q.dtype, mask: options.mask, chunked: chunked(q, k, v) }, options);
}

/**
 * @internal the plan of checked inputs; `force: 'decode'` runs the decode kernel whatever the
 * sizes. A call with no rows is `empty`; one with keys of length 0 (and rows) runs as noKeysCall.
 */
export function plan(inputs: PlanInputs, options: AttentionOptions, force?: 'decode'): AttentionPlan {
  if (inputs.shape.B * inputs.shape.Hq * inputs.shape.Lq === 0) return { path: 'empty', shape: inputs.shape };
  if (inputs.shape.Lk === 0) {
    const call = noKeysCall(inputs.shape, options);
    return plan({ ...inputs, shape: call.shape, mask: undefined }, call.options, force);
  }
  const { ctx, shape: s, dtype } = inputs;
  const bpe = bytesPerElement(dtype);
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (Math.max(...groupBytes(inputs, s.Hq, options).map((b) => b * s.B)) <= limit) {
    return corePlan(inputs, options, s.Lk - s.Lq, force);
  }
  const maskDims = inputs.mask ? [...Array(4 - inputs.mask.shape.length).fill(1), ...inputs.mask.shape] : [];
  const group = s.Hq / s.Hkv;
  // Head counts that keep kv heads whole: divisors of the GQA group, then multiples of it.
  const heads = [...Array(s.Hq).keys()]
    .map((i) => i + 1)
    .filter((n) => s.Hq % n === 0 && (group % n === 0 || n % group === 0))
    .filter((n) => Math.max(...groupBytes(inputs, n, options)) <= limit)
    .at(-1);
  if (heads !== undefined) {
    const kvHeads = Math.max(1, heads / group);
    const mask = inputs.mask && {
      ...inputs.mask,
      shape: [1, maskDims[1] === 1 ? 1 : heads, maskDims[2], maskDims[3]],
    };
    const inner = { ...inputs, shape: { ...s, B: 1, Hq: heads, Hkv: kvHeads }, mask };
    const groupPlan = corePlan(inner, options, s.Lk - s.Lq, force, scoringRules(options, s));
    return { path: 'heads', shape: s, heads, kvHeads, maskDims, group: groupPlan };
  }
  const where = `q [${s.Lq}, ${s.D}], k [${s.Lk}, ${s.D}], v [${s.Lk}, ${s.Dv}]`;
  if (options.returnWeights) {
    throw new Error(
      `attention: returnWeights is not supported when one head needs more than maxStorageBufferBindingSize (${limit} bytes), received true for ${where}`,
    );
  }
  const sizes = blockSizes(
    s,
    bpe,
    inputs.mask ? bytesPerElement(inputs.mask.dtype) : 0,
    maskDims,
    limit,
    decodeChunkBytes(ctx, s.D, s.Dv),
  );
  if (!sizes) {
    throw new Error(
      `attention: one query row against one key needs more than maxStorageBufferBindingSize (${limit} bytes) for ${where}`,
    );
  }
  return {
    path: 'blocks',
    shape: s,
    rows: sizes[0],
    keys: sizes[1],
    maskDims: inputs.mask ? maskDims : [1, 1, 1, 1],
    storage: elementStorage(ctx, dtype),
  };
}

/**
 * The plan of a call that fits its bindings: one flash dispatch or the two decode passes (`force`
 * picks one whatever the sizes; the backward, which scores like the flash kernel, asks 'flash').
 */
export function corePlan(
  inputs: PlanInputs,
  options: AttentionOptions,
  causalShift: number,
  force?: 'decode' | 'flash',
  rules: ScoringRules = scoringRules(options, inputs.shape),
): FlashPlan | DecodePlan {
  const { ctx, shape: s, mask } = inputs;
  const fits = s.D % 4 === 0 && s.Dv % 4 === 0 && !options.returnWeights && inputs.chunked !== false;
  // the form tuneAttention measured fastest for this shape class, else the context's rule
  const preferred = tunedKernel(ctx, s, inputs.dtype, options.causal) ?? ctx.attentionKernel;
  // the matrix form has no weights output and no dropout, and needs its workgroup memory: other
  // calls run the workgroup form
  const matrix =
    preferred === 'matrix' && !options.returnWeights && !(options.dropout && options.dropout.p > 0)
      ? matrixTiles(ctx, s.Dv)
      : undefined;
  const kernel: AttentionKernel =
    preferred === 'registers' && fits
      ? 'registers'
      : preferred === 'tiled' && !options.returnWeights
        ? 'tiled'
        : matrix
          ? 'matrix'
          : 'workgroup';
  const core: CorePlan = {
    shape: s,
    kernel,
    storage: elementStorage(ctx, inputs.dtype),
    maskKind: !mask ? 0 : mask.dtype === 'bool' ? 1 : 2,
    maskStrides: mask
      ? broadcastStrides('attention: mask', mask.shape, [s.B, s.Hq, s.Lq, s.Lk])
      : [0, 0, 0, 0],
    scale: options.scale ?? 1 / Math.sqrt(s.D),
    causal: options.causal ?? false,
    causalShift,
    lse: options.returnLse ?? false,
    weights: options.returnWeights ?? false,
    rules,
    dropout: options.dropout && options.dropout.p > 0 ? options.dropout : undefined,
  };
  if (force === 'decode' || (!force && prefersDecode(s, options, kernel))) {
    // the tiled and matrix forms are prefill kernels: their calls decode with the workgroup form's pass
    return decodePlan(
      ctx,
      kernel === 'tiled' || kernel === 'matrix' ? { ...core, kernel: 'workgroup' } : core,
    );
  }
  if (matrix) {
    return {
      path: 'flash',
      rowsPerWorkgroup: MATRIX_ROWS,
      keysPerTile: 0,
      matrix,
      subgroups: false,
      keySplits: 1,
      splitKeys: s.Lk,
      products: 'f32',
      workgroups: Math.ceil(s.Lq / MATRIX_ROWS) * s.Hq * s.B * Math.ceil(s.Dv / matrix.valueDims),
      ...core,
    };
  }
  const rows = ROWS_PER_WORKGROUP;
  const blocks = Math.ceil(s.Lq / rows) * s.Hq * s.B;
  const bc = kernel === 'workgroup' ? keysPerTile(ctx, s) : 0;
  const split =
    kernel === 'tiled'
      ? keySplit(blocks, s.Lk, TILED_KEY_SPLIT)
      : kernel === 'workgroup' && !core.weights && !ctx.adapterInfo?.isFallbackAdapter
        ? keySplit(blocks, s.Lk, { ...WORKGROUP_KEY_SPLIT, tile: bc })
        : { keySplits: 1, splitKeys: s.Lk };
  // `core` spread last: properties after a spread make V8 build the object slowly (tens of us)
  return {
    path: 'flash',
    rowsPerWorkgroup: rows,
    keysPerTile: bc,
    subgroups: kernel === 'tiled' && ctx.hasSubgroups,
    keySplits: split.keySplits,
    splitKeys: split.splitKeys,
    products: kernel === 'tiled' && core.storage === 'f16' ? 'f16' : 'f32',
    workgroups: blocks * split.keySplits,
    ...core,
  };
}

/**
 * How a flash kernel splits the keys of calls with few row blocks over more workgroups: `fill`
 * workgroups wanted, splits of at least `minKeys` keys, each a multiple of the kernel's `tile`.
 * (WebGPU tells no compute-unit count, hence fixed targets.)
 */
interface KeySplitRule {
  fill: number;
  minKeys: number;
  tile: number;
}

/**
 * The tiled form: about two workgroups (of 128 invocations) per compute unit of a 64-unit GPU,
 * splits of at least 8 of its 32-key tiles (fewer would cost more merge than they gain).
 */
const TILED_KEY_SPLIT: KeySplitRule = { fill: 128, minKeys: 256, tile: 32 };
/**
 * The workgroup form (64 invocations), on GPUs: on the H200 one of its workgroups scored keys at
 * the same rate whether 64 or 256 ran at once (8 heads, L 512 to 2048: time grew with L alone,
 * 0.85 us per key), so its calls were latency-bound and as fast as their workgroups in flight were
 * many. Split until about 1024 run at once (16 warps per core of a 132-core GPU), into splits of
 * at least 64 keys. Not on fallback adapters (CPUs): there the extra workgroups and the merge made
 * SwiftShader 15-30% slower.
 */
const WORKGROUP_KEY_SPLIT = { fill: 1024, minKeys: 64 };

/**
 * How a call of `blocks` workgroups (64-row blocks x heads x batch) and `Lk` keys is split over
 * keys under `rule`: with fewer blocks than `rule.fill`, into `ceil(fill / blocks)` parts where
 * each keeps at least `rule.minKeys` keys, `splitKeys` a multiple of `rule.tile`; else none.
 */
export function keySplit(
  blocks: number,
  Lk: number,
  rule: KeySplitRule,
): { keySplits: number; splitKeys: number } {
  const parts = Math.min(Math.ceil(rule.fill / blocks), Math.floor(Lk / rule.minKeys));
  if (parts < 2) return { keySplits: 1, splitKeys: Lk };
  const splitKeys = Math.ceil(Lk / parts / rule.tile) * rule.tile;
  return { keySplits: Math.ceil(Lk / splitKeys), splitKeys };
}

/**
 * Whether a call runs the split-K decode kernel rather than the flash kernel, in kernel `form`:
 * few queries against many keys, where the flash kernel would leave most of its invocations idle.
 * The `registers` flash kernel computes four rows per invocation and loses to the decode pass
 * only for one or two queries at any length, or up to four from 256 keys.
 */
function prefersDecode(shape: AttentionShape, options: AttentionOptions, form: AttentionKernel): boolean {
  if (options.returnWeights) return false;
  if (form === 'registers') return shape.Lq <= 2 || (shape.Lq <= 4 && shape.Lk >= 256);
  return shape.Lq <= DECODE_MAX_ROWS && shape.Lk >= 256;
}

/**
 * Largest power-of-two tile of keys whose K and V rows fit in workgroup memory, at most 16 (the
 * kernel keeps one bit per key of a tile in a u32, so never above 32).
 */
function keysPerTile(ctx: Context, s: AttentionShape): number {
  const budget = ctx.limits.maxComputeWorkgroupStorageSize - 64;
  const vec4s = Math.ceil(s.D / 4) + Math.ceil(s.Dv / 4);
  let bc = 16;
  while (bc > 1 && bc * vec4s * 16 > budget) bc /= 2;
  return bc;
}

function decodePlan(ctx: Context, core: CorePlan): DecodePlan {
  const { B, Hq, Hkv, Lq, Lk, Dv } = core.shape;
  const rows = B * Hq * Lq;
  if (core.kernel === 'registers') {
    const { chunks, tilesPerChunk } = chunking(
      ctx,
      rows,
      rows * (Dv / 4) * 16,
      Math.ceil(Lk / 4),
      Math.ceil(DECODE_REGISTERS_TARGET_CHUNKS / rows),
      DECODE_REGISTERS_MIN_KEYS / 4,
    );
    return {
      path: 'decode',
      chunks,
      tilesPerChunk,
      partials: chunks,
      folded: false,
      rowsPerBlock: 1,
      rowBlocks: rows,
      keyLanes: 1,
      subgroups: false,
      workgroups: rows * Math.ceil(chunks / DECODE_REGISTERS_WG),
      ...core,
    };
  }
  const group = Hq / Hkv;
  // Rows of a block are the group * Lq (query head, query) pairs of one kv head.
  const rowsPerBlock = 2 ** Math.ceil(Math.log2(Math.min(group * Lq, DECODE_MAX_ROWS)));
  const rowBlocks = Math.ceil((group * Lq) / rowsPerBlock);
  const keyLanes = decodeKeyLanes(ctx, core.shape.D, Dv);
  const spread = ctx.adapterInfo?.isFallbackAdapter ? DECODE_FALLBACK_SPREAD : DECODE_SPREAD;
  const perChunk = decodeChunkPartials(ctx, core.shape.D, Dv);
  const { chunks, tilesPerChunk } = chunking(
    ctx,
    rows,
    rows * decodeChunkBytes(ctx, core.shape.D, Dv),
    Math.ceil(Lk / DECODE_WG),
    Math.min(
      Math.ceil(spread.workgroups / (B * Hkv * rowBlocks)),
      Math.floor(DECODE_MAX_PARTIALS / perChunk),
    ),
    spread.minTiles,
  );
  return {
    path: 'decode',
    chunks,
    tilesPerChunk,
    partials: chunks * perChunk,
    folded: perChunk === 1,
    rowsPerBlock,
    rowBlocks,
    keyLanes,
    subgroups: ctx.hasSubgroups === true,
    workgroups: chunks * rowBlocks * B * Hkv,
    ...core,
  };
}

/**
 * Lanes along the head dims per key row of the `workgroup` decode pass, each holding slices of
 * four elements of q, k, v and the output: one slice each (the power of two >= ceil(max(D, Dv) /
 * 4), at least 4, so that a step's 4 x G keys fit a tile), but no more lanes than the adapter's
 * smallest subgroup (so that shuffles sum a whole row, with no barrier; 32 where it does not say)
 * and 4 on a fallback adapter (a CPU: every lane repeats the softmax work of its keys).
 */
function decodeKeyLanes(ctx: Context, D: number, Dv: number): number {
  const info = ctx.adapterInfo;
  const most = info?.isFallbackAdapter ? 4 : Math.max(4, Math.min(32, info?.subgroupMinSize ?? 32));
  return Math.min(most, 2 ** Math.max(2, Math.ceil(Math.log2(Math.ceil(Math.max(D, Dv) / 4)))));
}

/**
 * Partials per query row and key chunk of the `workgroup` decode pass: on a GPU the key groups of
 * a workgroup fold their states into one (a few barriers once per workgroup), so that the merge
 * reads fewer partials and more chunks fit under DECODE_MAX_PARTIALS; on a fallback adapter (a
 * CPU, where each barrier costs a switch of every invocation's fiber) each group writes its own.
 */
function decodeChunkPartials(ctx: Context, D: number, Dv: number): number {
  return ctx.adapterInfo?.isFallbackAdapter ? DECODE_WG / decodeKeyLanes(ctx, D, Dv) : 1;
}

/** Bytes of the `workgroup` decode pass's partials per query row and key chunk. */
function decodeChunkBytes(ctx: Context, D: number, Dv: number): number {
  return decodeChunkPartials(ctx, D, Dv) * Math.ceil(Dv / 4) * 16;
}

/**
 * How a decode pass spreads `tiles` key tiles over chunks: about `wanted` chunks of at least
 * `minTiles` tiles each, and no more than the partials binding holds (`chunkBytes` per chunk, all
 * rows). Throws when not even one chunk's partials fit.
 */
function chunking(
  ctx: Context,
  rows: number,
  chunkBytes: number,
  tiles: number,
  wanted: number,
  minTiles: number,
): { chunks: number; tilesPerChunk: number } {
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const fit = Math.floor(limit / chunkBytes);
  if (fit < 1) {
    throw new Error(
      `attention: ${rows} query rows need ${chunkBytes} bytes of partials, more than maxStorageBufferBindingSize ${limit}`,
    );
  }
  const chunks = Math.max(1, Math.min(wanted, Math.floor(tiles / minTiles), fit));
  const tilesPerChunk = Math.ceil(tiles / chunks);
  return { chunks: Math.ceil(tiles / tilesPerChunk), tilesPerChunk };
}

/**
 * A call whose keys have length 0 (and that has rows) as the call that runs it: one key per batch
 * item that no row may attend (sequsedK 0: never read), so that its rows get zeros and lse
 * -Infinity (or the sink) through the usual kernels; the options about keys (mask, block mask,
 * documents) have nothing to act on and are left out, and weights (no elements) are not computed.
 */
export function noKeysCall(
  shape: AttentionShape,
  options: AttentionOptions,
): { shape: AttentionShape; options: AttentionOptions } {
  return {
    shape: { ...shape, Lk: 1 },
    options: {
      ...options,
      mask: undefined,
      blockMask: undefined,
      cuSeqlensQ: undefined,
      cuSeqlensK: undefined,
      sequsedK: new Array<number>(shape.B).fill(0),
      cacheLeftpad: undefined,
      returnWeights: false,
    },
  };
}

/** Bytes each binding of one call over `heads` query heads (of one batch item) would need. */
function groupBytes(inputs: PlanInputs, heads: number, options: AttentionOptions): number[] {
  const { shape: s, mask } = inputs;
  const bpe = bytesPerElement(inputs.dtype);
  const kvHeads = Math.max(1, heads / (s.Hq / s.Hkv));
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
  partialBytes: number,
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
      if (n * partialBytes > limit) rows = n - 1;
    }
    if (rows >= 1) return [rows, keys];
  }
  return undefined;
}

/**
 * Bytes of a call's rule data rounded up to 256: where recordRuleData's reserved part starts (a
 * bindable offset), and what the backward planner budgets for the rule data.
 */
export function ruleDataBytes(r: ScoringRules): number {
  return Math.ceil((r.words * 4) / 256) * 256;
}

/**
 * The rules of `options` for a problem of `shape` (the full one: rule data is laid out for all
 * its heads): [alibi slopes, Hq][sinks, Hq][cuSeqlensQ][cuSeqlensK], absent parts left out.
 */
export function scoringRules(options: AttentionOptions, shape: AttentionShape): ScoringRules {
  const side = (x: number) => (x === Number.POSITIVE_INFINITY || x < 0 ? WINDOW_UNBOUNDED : x);
  const [left, right] = options.window ?? [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  let words = 0;
  const take = (n: number) => {
    const at = words;
    words += n;
    return at;
  };
  const slopes = options.alibiSlopes;
  const alibiSize =
    slopes === undefined ? 0 : slopes instanceof Object && 'size' in slopes ? slopes.size : slopes.length;
  const alibiAt = slopes !== undefined ? take(alibiSize) : RULE_NONE;
  const sinksAt = options.sinks !== undefined ? take(shape.Hq) : RULE_NONE;
  const starts = options.cuSeqlensQ;
  const docs = starts ? (starts instanceof IntTensor ? starts.size : starts.length) - 1 : 0;
  const docsQAt = docs ? take(docs + 1) : RULE_NONE;
  const docsKAt = docs ? take(docs + 1) : RULE_NONE;
  const used = options.sequsedK;
  const usedAt = used ? take(used instanceof IntTensor ? used.size : used.length) : RULE_NONE;
  const leftpadAt = options.cacheLeftpad !== undefined ? take(shape.B) : RULE_NONE;
  const bm = options.blockMask;
  const blockMaskAt = bm ? take(bm.states.size) : RULE_NONE;
  const modWords = modDataLength(options.modData);
  const modAt = modWords ? take(modWords) : RULE_NONE;
  return {
    blockMaskAt,
    blockMaskShape: bm ? (bm.states.shape as [number, number, number, number]) : [1, 1, 1, 1],
    blockSize: bm ? [bm.blockSizeQ, bm.blockSizeK] : [1, 1],
    softcap: options.softcap ?? 0,
    window: [side(left), side(right)],
    words,
    alibiAt,
    alibiB: alibiSize > shape.Hq ? shape.Hq : 0,
    sinksAt,
    docs,
    docsQAt,
    docsKAt,
    usedAt,
    keysFull: shape.Lk,
    leftpadAt,
    scoreMod: options.scoreMod,
    maskMod: options.maskMod,
    modAt,
    modAccessors: modDataSource(options.modData),
    origin: [0, 0, 0, 0],
  };
}

function describe(x: unknown): string {
  if (typeof x === 'function') return 'a function';
  if (typeof x === 'string') return JSON.stringify(x.length > 60 ? `${x.slice(0, 60)}...` : x);
  if (Array.isArray(x) || ArrayBuffer.isView(x)) {
    const a = Array.from(x as ArrayLike<unknown>);
    return `[${a.slice(0, 8).map(String).join(', ')}${a.length > 8 ? ', ...' : ''}]`;
  }
  return String(x);
}

const isArrayLike = (x: unknown): x is ArrayLike<unknown> =>
  Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));

/**
 * alibiSlopes or sinks: Hq finite numbers, or an f32 tensor [Hq]; per batch item (`B` given:
 * alibiSlopes), also B·Hq numbers (batch-major) or a tensor [B, Hq] (or [1, Hq], as [Hq]).
 */
function checkPerHead(q: Tensor, name: string, x: unknown, Hq: number, B?: number): void {
  const shapes =
    B === undefined
      ? `[${Hq}] (Hq)`
      : `[${Hq}] (Hq) or [${B}, ${Hq}] (B, Hq)${B > 1 ? ` or [1, ${Hq}]` : ''}`;
  if (x instanceof Object && 'dtype' in x && 'shape' in x) {
    const t = x as Tensor;
    t.assertUsable(`attention: ${name}`, q.ctx);
    const ok =
      t.shape.length === 1
        ? t.shape[0] === Hq
        : B !== undefined &&
          t.shape.length === 2 &&
          (t.shape[0] === B || t.shape[0] === 1) &&
          t.shape[1] === Hq;
    if (t.dtype !== 'f32' || !ok) {
      throw new Error(
        `attention: options.${name} must be an 'f32' tensor of shape ${shapes}, received '${t.dtype}' ${fmt(t.shape)}`,
      );
    }
    return;
  }
  if (!isArrayLike(x)) {
    throw new Error(
      `attention: options.${name} must be an array of ${Hq} numbers (one per query head) or a tensor, received ${describe(x)}`,
    );
  }
  if (x.length !== Hq && (B === undefined || x.length !== B * Hq)) {
    const lengths = B !== undefined && B > 1 ? `${Hq} (Hq) or ${B * Hq} (B·Hq, batch-major)` : `${Hq} (Hq)`;
    throw new Error(`attention: options.${name} must have length ${lengths}, received length ${x.length}`);
  }
  for (let h = 0; h < x.length; h++) {
    const v = x[h];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new Error(`attention: options.${name}[${h}] must be a finite number, received ${String(v)}`);
    }
  }
}

/** The entries of modData in order ([] without), each [name, data]. */
function modEntries(data: ModData | undefined): [string, ArrayLike<number> | Tensor | IntTensor][] {
  return data ? Object.entries(data) : [];
}

/** Whether a modData entry holds integers (its function returns i32). */
const isIntData = (x: unknown): boolean =>
  x instanceof IntTensor || x instanceof Int32Array || x instanceof Uint32Array;

/** Elements of a modData entry. */
const dataSize = (x: ArrayLike<number> | Tensor | IntTensor): number =>
  x instanceof IntTensor || !isArrayLike(x) ? (x as Tensor | IntTensor).size : x.length;

/**
 * modData's part of the rule data: its table (two words per entry), then each entry's data; per
 * entry, [name, data, its words' offset from the start of this part, elements, holds integers].
 */
function modDataLayout(
  data: ModData | undefined,
): [name: string, x: ArrayLike<number> | Tensor | IntTensor, at: number, size: number, int: boolean][] {
  const entries = modEntries(data);
  let at = 2 * entries.length;
  return entries.map(([name, x]) => {
    const size = dataSize(x);
    at += size;
    return [name, x, at - size, size, isIntData(x)];
  });
}

/** Words of modData's part of the rule data: its table (two per entry), then the data. */
export function modDataLength(data: ModData | undefined): number {
  return modEntries(data).reduce((n, [, x]) => n + 2 + dataSize(x), 0);
}

/**
 * The WGSL functions of modData's entries, one line each (the rule data's part from modAt, read
 * through key_rules.wgsl's modDataAt); with `stubs`, functions of the same signatures that read
 * nothing, for compiling a snippet on its own.
 */
export function modDataSource(data: ModData | undefined, stubs = false): string {
  return modEntries(data)
    .map(([name, x], e) => {
      const type = isIntData(x) ? 'i32' : 'f32';
      const value = stubs ? `${type}(index)` : `bitcast<${type}>(rules[modDataAt(${e}u, index)])`;
      return `fn ${name}(index: u32) -> ${type} { return ${value}; }`;
    })
    .join('\n');
}

/**
 * The f32 entries of modData that the backward's modDataGrad trains, each [name, its words' offset
 * from the start of modData's part of the rule data (past its table), elements].
 */
export function trainableModData(data: ModData | undefined): [name: string, at: number, size: number][] {
  return modDataLayout(data)
    .filter(([, , , , int]) => !int)
    .map(([name, , at, size]) => [name, at, size]);
}

/**
 * The backward's modDataGrad functions of modData's f32 entries, `fn name_grad(index: u32, x: f32)`:
 * each adds x to the gradient of element `index` (past the end: the last, which the read returned)
 * through its own slot of shaders/mod_data_grads.wgsl (whose GRAD_SLOTS is the number of these);
 * with `stubs`, functions of the same signatures that do nothing, for compiling the snippet alone.
 */
export function modDataGradFunctions(data: ModData | undefined, stubs = false): string {
  let slot = 0;
  return modEntries(data)
    .map(([name, x], e) =>
      isIntData(x)
        ? ''
        : `fn ${name}_grad(index: u32, x: f32) { ${stubs ? '' : `holdModGrad(${slot++}u, modDataAt(${e}u, index) - p.mod_at, x);`} }\n`,
    )
    .join('');
}

/**
 * The rule data of modData (layout in ScoringRules): its table, then each entry's data as words
 * (f32 or i32 bits); entries that are tensors left as zeros, with where they go, for a copy.
 */
export function modDataWords(data: ModData | undefined): {
  words: Uint32Array;
  tensors: [at: number, x: Tensor | IntTensor][];
} {
  const words = new Uint32Array(modDataLength(data));
  const tensors: [number, Tensor | IntTensor][] = [];
  modDataLayout(data).forEach(([, x, at, n, int], e) => {
    words[2 * e] = at;
    words[2 * e + 1] = n;
    if (x instanceof IntTensor || !isArrayLike(x)) tensors.push([at, x as Tensor | IntTensor]);
    else if (int) new Int32Array(words.buffer, at * 4, n).set(x);
    else new Float32Array(words.buffer, at * 4, n).set(Array.from(x, Number));
  });
  return { words, tensors };
}

/** Names scoreMod and maskMod define themselves, refused as modData names. */
const SNIPPET_NAMES = new Set(['score_mod', 'mask_mod', 'score_mod_grad']);

/**
 * modData (`what` names it in errors): an object of entries named by WGSL identifiers, each a
 * non-empty array of numbers (no NaN; an Int32Array or a Uint32Array of values below 2^31 reads
 * as i32), an 'f32' tensor or an IntTensor of `ctx`; given only with the snippets that read it
 * (`readers` names them, `read`: the call has one); the data, with its table, at most half of
 * maxStorageBufferBindingSize.
 */
export function checkModData(
  what: string,
  ctx: Context,
  data: unknown,
  readers: string,
  read: boolean,
): void {
  if (data === undefined) return;
  if (data === null || typeof data !== 'object' || Array.isArray(data) || ArrayBuffer.isView(data)) {
    throw new Error(`${what} must be an object of named arrays or tensors, received ${describe(data)}`);
  }
  if (!read) {
    throw new Error(`${what} is read only by ${readers}, received it without`);
  }
  for (const [name, x] of Object.entries(data)) {
    if (
      !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ||
      name.startsWith('__') ||
      name === '_' ||
      SNIPPET_NAMES.has(name)
    ) {
      throw new Error(
        `${what}: entry names become WGSL function names (a letter or _, then letters, digits, _; not score_mod, mask_mod or score_mod_grad), received ${JSON.stringify(name)}`,
      );
    }
    if (x instanceof IntTensor) {
      x.assertUsable(`${what}.${name}`, ctx);
    } else if (x instanceof Object && 'dtype' in x && 'shape' in x) {
      const t = x as Tensor;
      t.assertUsable(`${what}.${name}`, ctx);
      if (t.dtype !== 'f32') {
        throw new Error(
          `${what}.${name} must be an 'f32' tensor or an IntTensor, received a '${t.dtype}' tensor`,
        );
      }
    } else if (!isArrayLike(x) || x.length === 0) {
      throw new Error(
        `${what}.${name} must be a non-empty array of numbers, an 'f32' tensor or an IntTensor, received ${describe(x)}`,
      );
    } else {
      const a = x as ArrayLike<unknown>;
      for (let e = 0; e < a.length; e++) {
        const v = a[e];
        if (typeof v !== 'number' || Number.isNaN(v) || (x instanceof Uint32Array && v >= 2 ** 31)) {
          throw new Error(
            `${what}.${name}[${e}] must be a number${x instanceof Uint32Array ? ' below 2^31 (read as i32)' : ''}, received ${String(v)}`,
          );
        }
      }
    }
  }
  const bytes = modDataLength(data as ModData) * 4;
  const limit = ctx.limits.maxStorageBufferBindingSize;
  if (bytes > limit / 2) {
    throw new Error(
      `${what} holds ${bytes} bytes with its table, more than half of maxStorageBufferBindingSize (${limit}); pass larger data as a mask or split the call`,
    );
  }
}

/**
 * cuSeqlensQ or cuSeqlensK: non-decreasing integers from 0 to `total`, or an IntTensor [n >= 2]
 * (contents unchecked: they stay on the GPU). Returns the number of entries.
 */
function checkCuSeqlens(q: Tensor, name: string, x: unknown, total: number, dim: string): number {
  if (x instanceof IntTensor) {
    x.assertUsable(`attention: ${name}`, q.ctx);
    if (x.rank !== 1 || x.size < 2) {
      throw new Error(
        `attention: options.${name} must be an IntTensor of shape [documents + 1] (at least 2 entries), received ${fmt(x.shape)}`,
      );
    }
    return x.size;
  }
  if (!isArrayLike(x)) {
    throw new Error(
      `attention: options.${name} must be an array or an IntTensor of cumulative document starts, received ${describe(x)}`,
    );
  }
  const a = Array.from(x, Number);
  if (a.length < 2 || a[0] !== 0 || a[a.length - 1] !== total) {
    throw new Error(
      `attention: options.${name} must start with 0 and end with ${total} (${dim}), with at least 2 entries, received ${describe(x)}`,
    );
  }
  for (let d = 0; d < a.length; d++) {
    if (!Number.isInteger(a[d]) || (d > 0 && a[d] < a[d - 1])) {
      throw new Error(`attention: options.${name} must be non-decreasing integers, received ${describe(x)}`);
    }
  }
  return a.length;
}

/**
 * A window option: [left, right], each an integer (negative: no bound, FlashAttention's -1) or
 * Infinity. `what` names it in the error.
 */
export function checkWindow(what: string, window: unknown): void {
  if (window === undefined) return;
  const side = (x: unknown) =>
    typeof x === 'number' && (Number.isInteger(x) || x === Number.POSITIVE_INFINITY);
  if (!isArrayLike(window) || window.length !== 2 || !side(window[0]) || !side(window[1])) {
    throw new Error(
      `${what} must be [left, right], each an integer (negative: no bound) or Infinity, received ${describe(window)}`,
    );
  }
}

/** The sparse and programmable options (softcap .. sinks). */
function checkScoringOptions(q: Tensor, options: AttentionOptions, s: AttentionShape): void {
  const { softcap } = options;
  if (softcap !== undefined && (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0)) {
    throw new Error(
      `attention: options.softcap must be a finite number >= 0 (0: none), received ${describe(softcap)}`,
    );
  }
  checkWindow('attention: options.window', options.window);
  checkModData(
    'attention: options.modData',
    q.ctx,
    options.modData,
    'scoreMod or maskMod',
    options.scoreMod !== undefined || options.maskMod !== undefined,
  );
  for (const name of ['scoreMod', 'maskMod'] as const) {
    const text = options[name];
    if (text !== undefined && typeof text !== 'string') {
      throw new Error(
        `attention: options.${name} must be WGSL text defining ${SNIPPET_SIGNATURES[name]}, received ${describe(text)}`,
      );
    }
    if (text !== undefined) checkSnippetSignature(name, text);
  }
  if (options.blockMask !== undefined) checkBlockMask(q, options.blockMask, s);
  if (options.alibiSlopes !== undefined) checkPerHead(q, 'alibiSlopes', options.alibiSlopes, s.Hq, s.B);
  if (options.sinks !== undefined) checkPerHead(q, 'sinks', options.sinks, s.Hq);
  const { cuSeqlensQ, cuSeqlensK } = options;
  if ((cuSeqlensQ === undefined) !== (cuSeqlensK === undefined)) {
    const [given, missing] =
      cuSeqlensQ === undefined ? ['cuSeqlensK', 'cuSeqlensQ'] : ['cuSeqlensQ', 'cuSeqlensK'];
    throw new Error(
      `attention: options.${given} needs ${missing} (packed documents need both), received ${missing} undefined`,
    );
  }
  if (cuSeqlensQ !== undefined) {
    if (s.B !== 1) {
      throw new Error(`attention: cuSeqlensQ/cuSeqlensK (packed documents) need B = 1, received B = ${s.B}`);
    }
    const cq = checkCuSeqlens(q, 'cuSeqlensQ', cuSeqlensQ, s.Lq, 'Lq');
    const ck = checkCuSeqlens(q, 'cuSeqlensK', cuSeqlensK, s.Lk, 'Lk');
    if (cq !== ck) {
      throw new Error(
        `attention: options.cuSeqlensK must have the length of cuSeqlensQ (${cq}, one more than the documents), received length ${ck}`,
      );
    }
  }
  if (options.sequsedK !== undefined) checkSequsedK(q, options.sequsedK, s, cuSeqlensK);
  if (options.cacheLeftpad !== undefined) {
    if (cuSeqlensK !== undefined) {
      throw new Error(
        'attention: options.cacheLeftpad is per batch item, not with packed documents (cuSeqlensQ / cuSeqlensK say where their keys begin), received both',
      );
    }
    checkKeyCounts(q, 'cacheLeftpad', options.cacheLeftpad, s.B, () => s.Lk, `${s.B} (B)`, 'keys, Lk');
  }
}

/**
 * sequsedK: one integer per batch item in [0, Lk], or per document in [0, its keys] (with
 * cuSeqlensK); or an IntTensor of that length (contents unchecked).
 */
function checkSequsedK(
  q: Tensor,
  x: unknown,
  s: AttentionShape,
  cuSeqlensK: ArrayLike<number> | IntTensor | undefined,
): void {
  const docs = cuSeqlensK && (cuSeqlensK instanceof IntTensor ? cuSeqlensK.size : cuSeqlensK.length) - 1;
  const starts = cuSeqlensK instanceof IntTensor ? undefined : cuSeqlensK;
  checkKeyCounts(
    q,
    'sequsedK',
    x,
    docs ?? s.B,
    (e) => (starts ? Number(starts[e + 1]) - Number(starts[e]) : s.Lk),
    docs === undefined ? `${s.B} (B)` : `${docs} (one per document)`,
    docs === undefined ? 'keys, Lk' : "document's keys",
  );
}

/**
 * Option `name`: `n` key counts (`what`: n, said in messages), element e an integer in
 * [0, most(e)] (`of`: what the most is); or an IntTensor [n] (contents unchecked).
 */
function checkKeyCounts(
  q: Tensor,
  name: string,
  x: unknown,
  n: number,
  most: (e: number) => number,
  what: string,
  of: string,
): void {
  if (x instanceof IntTensor) {
    x.assertUsable(`attention: ${name}`, q.ctx);
    if (x.rank !== 1 || x.size !== n) {
      throw new Error(
        `attention: options.${name} must be an IntTensor of shape [${n}], received ${fmt(x.shape)}`,
      );
    }
    return;
  }
  if (!isArrayLike(x)) {
    throw new Error(
      `attention: options.${name} must be an array of ${what} key counts or an IntTensor, received ${describe(x)}`,
    );
  }
  if (x.length !== n) {
    throw new Error(`attention: options.${name} must have length ${what}, received length ${x.length}`);
  }
  for (let e = 0; e < n; e++) {
    const v = x[e];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > most(e)) {
      throw new Error(
        `attention: options.${name}[${e}] must be an integer in [0, ${most(e)}] (the ${of}), received ${String(v)}`,
      );
    }
  }
}

function checkBlockMask(q: Tensor, m: BlockMask, s: AttentionShape): void {
  if (m === null || typeof m !== 'object' || !(m.states instanceof Object && 'dtype' in m.states)) {
    throw new Error(`attention: options.blockMask must come from createBlockMask, received ${describe(m)}`);
  }
  m.states.assertUsable('attention: blockMask', q.ctx);
  const [mb, mh, nq, nk] = m.states.shape;
  const ok =
    m.Lq === s.Lq &&
    m.Lk === s.Lk &&
    (mb === 1 || mb === s.B) &&
    (mh === 1 || mh === s.Hq) &&
    nq === Math.ceil(s.Lq / m.blockSizeQ) &&
    nk === Math.ceil(s.Lk / m.blockSizeK);
  if (!ok) {
    throw new Error(
      `attention: options.blockMask must be made for B ${s.B} (or 1), H ${s.Hq} (or 1), Lq ${s.Lq}, Lk ${s.Lk}, received states ${fmt(m.states.shape)} for Lq ${m.Lq}, Lk ${m.Lk}, blocks ${m.blockSizeQ}x${m.blockSizeK}`,
    );
  }
}

/** The functions scoreMod and maskMod must define. */
export const SNIPPET_SIGNATURES = {
  scoreMod: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32',
  maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool',
} as const;

const SNIPPET_PATTERNS = {
  scoreMod:
    /\bfn\s+score_mod\s*\(\s*\w+\s*:\s*f32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,?\s*\)\s*->\s*f32\s*\{/,
  maskMod:
    /\bfn\s+mask_mod\s*\(\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,?\s*\)\s*->\s*bool\s*\{/,
};

/** Throws unless `text` defines the function of `name` with its signature. */
export function checkSnippetSignature(name: 'scoreMod' | 'maskMod', text: string): void {
  if (!SNIPPET_PATTERNS[name].test(text)) {
    const fn = name === 'scoreMod' ? 'score_mod' : 'mask_mod';
    const found = text.match(new RegExp(`fn\\s+${fn}\\s*\\([^)]*\\)[^{]*`))?.[0].trim();
    throw new Error(
      `attention: options.${name} must define \`${SNIPPET_SIGNATURES[name]}\`, received ${found ? `\`${found}\`` : `no ${fn} function in ${describe(text)}`}`,
    );
  }
}

/** Validates q, k, v and the options of `attention`; returns the sizes. */
export function checkAttentionInputs(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
): AttentionShape {
  checkOptions('attention', options, OPTION_KEYS);
  const layout = options.layout ?? 'bhld';
  if (layout !== 'bhld' && layout !== 'blhd') {
    throw new Error(`attention: options.layout must be 'bhld' or 'blhd', received ${describe(layout)}`);
  }
  // q, k and v may be strided views (a KV cache's, a wrapped packed QKV buffer)
  // (dims of 0 allowed: a call with no rows or no keys, see runAttention)
  q.assertUsable('attention: q', q.ctx, true, true);
  k.assertUsable('attention: k', q.ctx, true, true);
  v.assertUsable('attention: v', q.ctx, true, true);
  const blhd = layout === 'blhd';
  // with layout 'blhd', the expected shapes name it
  const dims = (H: string, L: string, D: string) => (blhd ? `B, ${L}, ${H}, ${D}` : `B, ${H}, ${L}, ${D}`);
  const named = (what: string) => (blhd ? `${what} (layout 'blhd')` : what);
  expectRank(named('attention: q'), q.shape, 4, dims('Hq', 'Lq', 'D'));
  expectRank(named('attention: k'), k.shape, 4, dims('Hkv', 'Lk', 'D'));
  expectRank(named('attention: v'), v.shape, 4, dims('Hkv', 'Lk', 'Dv'));
  // [B, H, L, D] whatever the layout
  const bhld = (t: Tensor) => (blhd ? [t.shape[0], t.shape[2], t.shape[1], t.shape[3]] : t.shape);
  const [B, Hq, Lq, D] = bhld(q);
  const [Bk, Hkv, Lk, Dk] = bhld(k);
  const [Bv, Hv, Lv, Dv] = bhld(v);
  // with layout 'blhd', messages say so
  const inLayout = blhd ? " (layout 'blhd': [B, L, H, D])" : '';
  if (q.dtype !== 'f32' && q.dtype !== 'f16') {
    throw new Error(`attention: q must have dtype 'f32' or 'f16', received '${q.dtype}'`);
  }
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
    throw new Error(
      `attention: q, k and v must have the same dtype, received q '${q.dtype}', k '${k.dtype}', v '${v.dtype}'`,
    );
  }
  if (Bk !== B) {
    throw new Error(
      `attention: k batch must equal q batch ${B}, received k shape ${fmt(k.shape)}${inLayout}`,
    );
  }
  if (Dk !== D) {
    throw new Error(
      `attention: k head dim must equal q head dim ${D}, received k shape ${fmt(k.shape)}${inLayout}`,
    );
  }
  if (Hkv === 0 ? Hq !== 0 : Hq % Hkv !== 0) {
    throw new Error(
      `attention: q heads (${Hq}) must be a multiple of k heads (${Hkv}), received q ${fmt(q.shape)} and k ${fmt(k.shape)}${inLayout}`,
    );
  }
  if (Bv !== B || Hv !== Hkv || Lv !== Lk) {
    const want = blhd ? `[${B}, ${Lk}, ${Hkv}, Dv]` : `[${B}, ${Hkv}, ${Lk}, Dv]`;
    throw new Error(`attention: v must have shape ${want} like k, received ${fmt(v.shape)}${inLayout}`);
  }
  if (D > 256 || Dv > 256 || D < 1 || Dv < 1) {
    throw new Error(`attention: head dims from 1 to 256 are supported, received D=${D}, Dv=${Dv}`);
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
    mask.assertUsable('attention: mask', q.ctx, false, true);
    if (mask.dtype === 'f16')
      throw new Error("attention: mask dtype must be 'bool' or 'f32', received 'f16'");
    broadcastStrides('attention: mask', mask.shape, [B, Hq, Lq, Lk]);
  }
  const shape = { B, Hq, Hkv, Lq, Lk, D, Dv };
  checkScoringOptions(q, options, shape);
  checkDropout('attention', options.dropout, 'options.dropout');
  return shape;
}
