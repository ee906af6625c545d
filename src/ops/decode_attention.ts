import decodeSource from '../../shaders/decode_attention.wgsl?raw';
import maskBiasSource from '../../shaders/mask_bias.wgsl?raw';
import valueChunksSource from '../../shaders/value_chunks.wgsl?raw';
import type { AttentionKernel, Context } from '../context';
import { chunkPrelude, type ElementStorage, elementPrelude, elementStorage } from '../f16';
import { broadcastStrides } from '../shape';
import type { Tensor } from '../tensor';
import { Usage } from '../usage';
import {
  type AttentionOptions,
  type AttentionResult,
  type AttentionShape,
  checkAttentionInputs,
  flashKernel,
} from './attention';
import { foldGrid, specialise } from './common';

/** Invocations per workgroup of both passes; also keys per tile of the split pass (a power of two). */
const WG = 64;
/** Most (query head, query) rows that one split workgroup scores against each key. */
const MAX_ROWS = 8;
/** Split workgroups to aim for: enough to occupy every core of a large GPU several times over. */
const TARGET_WORKGROUPS = 256;
/** Fewest key tiles per chunk, so that each workgroup's q load and each partial pay off. */
const MIN_TILES_PER_CHUNK = 2;

const [COMMON, SPLIT_PARTS, SPLIT, SPLIT_REGISTERS, MERGE] = decodeSource.split(/^\/\/ ==== .* ====$/m);

/** Invocations per workgroup of `split_registers` (one key chunk each). */
const REGISTERS_WG = 16;
/** `split_registers`: invocations to aim for, and fewest keys per chunk (a multiple of 4). */
const REGISTERS_TARGET_CHUNKS = 1024;
const REGISTERS_MIN_KEYS = 32;

/** The fewest workgroups per grid dimension every WebGPU device allows. */
const MIN_GRID_DIMENSION = 65535;

/**
 * Whether `attention` runs the split-K decode kernel rather than the flash kernel, in kernel
 * `form`: few queries against many keys, where the flash kernel would leave most of its
 * invocations idle. The `registers` flash kernel computes four rows per invocation and loses to
 * the decode pass only below that: for one or two queries at any length, up to four from 256 keys
 * (measured on SwiftShader; at eight queries it is 1.3-2x faster than the decode pass).
 */
export function prefersDecode(
  shape: AttentionShape,
  options: AttentionOptions,
  form: AttentionKernel,
): boolean {
  if (options.returnWeights || shape.B * shape.Hkv > MIN_GRID_DIMENSION) return false;
  if (form === 'registers') return shape.Lq <= 2 || (shape.Lq <= 4 && shape.Lk >= 256);
  return shape.Lq <= MAX_ROWS && shape.Lk >= 256;
}

/**
 * `attention` through the split-K (flash-decoding) kernel whatever the sizes: the keys are split
 * into chunks scored in parallel and the partial results are merged by their log-sum-exp. Same
 * inputs, options and results as `attention`, except `returnWeights`. `attention` picks this
 * kernel by itself for few queries against long keys; call it directly to force it (tests).
 */
export async function decodeAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions = {},
): Promise<AttentionResult> {
  const shape = checkAttentionInputs(q, k, v, options);
  if (options.returnWeights) {
    throw new Error('decodeAttention: returnWeights is not supported by the split-K kernel, received true');
  }
  return decodeSplitK(q, k, v, shape, options);
}

/** @internal the split-K kernel on checked inputs. */
export async function decodeSplitK(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  shape: AttentionShape,
  options: AttentionOptions,
  causalShift = shape.Lk - shape.Lq,
): Promise<AttentionResult> {
  const { ctx } = q;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
  const mask = options.mask;
  const maskStrides = mask ? broadcastStrides('attention: mask', mask.shape, [B, Hq, Lq, Lk]) : [0, 0, 0, 0];
  const storage = elementStorage(ctx, q.dtype);
  const DV4 = Math.ceil(Dv / 4);
  const rows = B * Hq * Lq;
  const maskKind = !mask ? 0 : mask.dtype === 'bool' ? 1 : 2;
  const split =
    flashKernel(ctx, shape, options) === 'registers'
      ? registersSplit(ctx, shape, storage, maskKind)
      : workgroupSplit(ctx, shape, storage, maskKind);
  const { P, tilesPerChunk } = split;
  const returnLse = options.returnLse ?? false;
  const mergeConstants = { WG, DV4, LSE: returnLse };
  const mergeKey = `decode_attention:merge:${storage}:${Object.values(mergeConstants).join(',')}`;
  const [splitPipeline, merge] = await Promise.all([
    split.pipeline,
    ctx.pipeline(mergeKey, () => elementPrelude(storage, true) + specialise(COMMON + MERGE, mergeConstants)),
  ]);

  const output = ctx.zeros([B, Hq, Lq, Dv], q.dtype, 'attention:output');
  const lse = returnLse ? ctx.zeros([B, Hq, Lq], 'f32', 'attention:lse') : undefined;
  const partO = ctx.createBuffer(rows * P * DV4 * 16, Usage.STORAGE, 'attention:partials');
  const partML = ctx.createBuffer(rows * P * 8, Usage.STORAGE, 'attention:partial-lse');

  const uniforms = new ArrayBuffer(96);
  const u32 = new Uint32Array(uniforms);
  u32.set([
    B,
    Hq,
    Hkv,
    Lq,
    Lk,
    D,
    Dv,
    options.causal ? 1 : 0,
    ...maskStrides,
    0, // scale, below
    k.rowStride,
    v.rowStride,
    Hq / Hkv,
    tilesPerChunk,
    P,
  ]);
  new Float32Array(uniforms)[12] = options.scale ?? 1 / Math.sqrt(D);
  new Int32Array(uniforms)[18] = causalShift;
  u32.set(split.workgroups.slice(0, 2), 19);

  ctx.run([
    {
      label: split.key,
      pipeline: splitPipeline,
      uniforms,
      buffers: [q.buffer, k.buffer, v.buffer, mask ? mask.buffer : ctx.dummy('mask'), partO, partML],
      workgroups: split.workgroups,
    },
    {
      label: mergeKey,
      pipeline: merge,
      uniforms,
      buffers: [partO, partML, output.buffer, lse ? lse.buffer : ctx.dummy('lse')],
      workgroups: [Lq, Hq, B],
    },
  ]);
  // Submitted work keeps the partials alive until it finishes.
  ctx.freeBuffer(partO);
  ctx.freeBuffer(partML);
  return { output, lse };
}

/** Pass 1 of a call: its pipeline, partials per row (P), tiles per chunk and grid. */
interface SplitPlan {
  key: string;
  pipeline: Promise<GPUComputePipeline>;
  P: number;
  tilesPerChunk: number;
  workgroups: [number, number, number];
}

/**
 * How pass 1 spreads `tiles` key tiles over chunks: about `wanted` chunks of at least `minTiles`
 * tiles each, and no more than the partials binding holds (`chunkBytes` per chunk, all rows).
 * Throws when not even one chunk's partials fit.
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

/** `split`: workgroups of (key chunk, block of RQ rows of one kv head), G partials per chunk. */
function workgroupSplit(
  ctx: Context,
  shape: AttentionShape,
  storage: ElementStorage,
  maskKind: number,
): SplitPlan {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
  const group = Hq / Hkv;
  const D4 = Math.ceil(D / 4);
  const DV4 = Math.ceil(Dv / 4);
  // Rows of a block are the group * Lq (query head, query) pairs of one kv head.
  const RQ = 2 ** Math.ceil(Math.log2(Math.min(group * Lq, MAX_ROWS)));
  const rowBlocks = Math.ceil((group * Lq) / RQ);
  const G = Math.floor(WG / DV4);
  const rows = B * Hq * Lq;
  if (B * Hkv > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(
      `attention: the decode kernel runs B * Hkv = ${B * Hkv} workgroups in one grid dimension, more than maxComputeWorkgroupsPerDimension ${ctx.limits.maxComputeWorkgroupsPerDimension}`,
    );
  }
  const { chunks, tilesPerChunk } = chunking(
    ctx,
    rows,
    rows * G * DV4 * 16,
    Math.ceil(Lk / WG),
    Math.ceil(TARGET_WORKGROUPS / (B * Hkv * rowBlocks)),
    MIN_TILES_PER_CHUNK,
  );
  const constants = { WG, RQ, D4, DV4, G, MASK: maskKind };
  const key = `decode_attention:split:${storage}:${Object.values(constants).join(',')}`;
  const pipeline = ctx.pipeline(
    key,
    () =>
      elementPrelude(storage, false) + specialise(COMMON + SPLIT_PARTS + SPLIT + maskBiasSource, constants),
  );
  return { key, pipeline, P: chunks * G, tilesPerChunk, workgroups: [chunks, rowBlocks, B * Hkv] };
}

/** `split_registers`: one invocation per (key chunk, row), one partial per chunk. */
function registersSplit(
  ctx: Context,
  shape: AttentionShape,
  storage: ElementStorage,
  maskKind: number,
): SplitPlan {
  const { B, Hq, Lq, Lk, D, Dv } = shape;
  const D4 = D / 4;
  const DV4 = Dv / 4;
  const rows = B * Hq * Lq;
  const { chunks, tilesPerChunk } = chunking(
    ctx,
    rows,
    rows * DV4 * 16,
    Math.ceil(Lk / 4),
    Math.ceil(REGISTERS_TARGET_CHUNKS / rows),
    REGISTERS_MIN_KEYS / 4,
  );
  const constants = { WG: REGISTERS_WG, D4, DV4, MASK: maskKind };
  const key = `decode_attention:split_registers:${storage}:${Object.values(constants).join(',')}`;
  const pipeline = ctx.pipeline(
    key,
    () =>
      elementPrelude(storage, false) +
      chunkPrelude(storage) +
      specialise(COMMON + SPLIT_PARTS + SPLIT_REGISTERS + maskBiasSource + valueChunksSource, constants),
  );
  const workgroups = foldGrid(ctx, rows * Math.ceil(chunks / REGISTERS_WG), 'attention');
  return { key, pipeline, P: chunks, tilesPerChunk, workgroups };
}
