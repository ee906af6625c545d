// attentionBackward, step 2 of check -> plan -> programs -> run: how a call runs, as plain data.
// 'whole': the passes over the full tensors, when every binding fits. 'heads' and 'blocks': a call
// with a binding larger than maxStorageBufferBindingSize, run as units (one batch item, some query
// heads, a block of query rows against a block of keys) whose slices fit: dq of a block of rows
// sums over the key blocks, dk and dv of a block of keys over the query heads of their kv heads
// and the row blocks, in a fixed order (deterministic, no atomics).
import type { AttentionKernel, Context } from '../context';
import { type ElementStorage, elementStorage } from '../f16';
import { bytesPerElement, type DType } from '../tensor';
import {
  type AttentionOptions,
  type AttentionShape,
  type CorePlan,
  corePlan,
  ruleDataBytes,
  scoringRules,
} from './attention_plan';

/** The passes of one set of bindings: the whole call, or one unit of a split call. */
export interface BackwardPasses {
  /** The scoring parameters, shared with the forward (kernel form, mask strides, scale, causal). */
  core: CorePlan;
  /** 'registers': 4 x 4 register blocks, no barriers; 'workgroup': tiles in workgroup memory. */
  kernel: AttentionKernel;
  /** Query rows ('workgroup' dK/dV pass) or keys ('workgroup' dQ pass) per workgroup-memory tile. */
  rowsPerTile: number;
  keysPerTile: number;
  deltaWorkgroups: number;
  dkdvWorkgroups: number;
  dqWorkgroups: number;
}

/** Every binding fits: the passes run once over the full tensors. */
export interface WholeBackwardPlan extends BackwardPasses {
  path: 'whole';
}

/**
 * A binding larger than maxStorageBufferBindingSize: units of `heads` query heads (`kvHeads` kv
 * heads), `rows` query rows and `keys` keys ('heads': all rows and keys, 'blocks': one head).
 */
export interface SplitBackwardPlan {
  path: 'heads' | 'blocks';
  shape: AttentionShape;
  /** The kernel form of a full unit. */
  kernel: AttentionKernel;
  heads: number;
  kvHeads: number;
  rows: number;
  keys: number;
  /** The mask's shape right-aligned to [B', H', Lq', Lk'] ([1, 1, 1, 1] without a mask). */
  maskDims: number[];
  storage: ElementStorage;
}

/** A call with no rows (B, Hq or Lq of 0) or no keys (Lk = 0): every gradient is 0; nothing runs. */
export interface EmptyBackwardPlan {
  path: 'empty';
  shape: AttentionShape;
}

export type AttentionBackwardPlan = WholeBackwardPlan | SplitBackwardPlan | EmptyBackwardPlan;

/** Sizes and dtypes of a call, no buffers. */
export interface BackwardPlanInputs {
  ctx: Context;
  shape: AttentionShape;
  dtype: DType;
  mask?: { shape: readonly number[]; dtype: DType; size: number };
  /** Elements k and v span (a KV-cache view spans its capacity); default dense [B, Hkv, Lk, ·]. */
  kSpan?: number;
  vSpan?: number;
  /** See corePlan's `chunked`. */
  chunked?: boolean;
}

/**
 * Batch item `b`, query heads [h, h + heads) reading kv heads [hk, hk + kvHeads), query rows
 * [i, i + rows), keys [j, j + keys).
 */
export interface BackwardUnit {
  b: number;
  h: number;
  heads: number;
  hk: number;
  kvHeads: number;
  i: number;
  rows: number;
  j: number;
  keys: number;
}

/** A block of gradients of a split call and the units that add to it, in order. */
export interface BackwardTarget {
  /** dq: rows [i, i + rows) of its heads, all keys; dk, dv: keys [j, j + keys), all heads and rows. */
  target: BackwardUnit;
  units: BackwardUnit[];
}

/** Invocations per workgroup: rows of the delta pass, keys or rows of the 'workgroup' passes. */
export const BACKWARD_WG = 64;
/** Invocations per workgroup of the 'registers' passes (four keys or four rows each). */
export const BACKWARD_REGISTERS_WG = 16;
/** Largest workgroup-memory tile, in rows or keys. */
const MAX_TILE = 32;
/** Binding offsets are multiples of this (WebGPU's largest minStorageBufferOffsetAlignment). */
export const BINDING_ALIGN = 256;

/** How `attentionBackward` runs on checked inputs: whole, or split into units that fit. */
export function backwardPlan(inputs: BackwardPlanInputs, options: AttentionOptions): AttentionBackwardPlan {
  const { ctx, shape: s, dtype, mask } = inputs;
  if (s.B * s.Hq * s.Lq * s.Lk === 0) return { path: 'empty', shape: s };
  const limit = ctx.limits.maxStorageBufferBindingSize;
  const bpe = bytesPerElement(dtype);
  const rules = ruleDataBytes(scoringRules(options, s));
  const whole = [
    s.B * s.Hq * s.Lq * s.D * bpe,
    (inputs.kSpan ?? s.B * s.Hkv * s.Lk * s.D) * bpe,
    (inputs.vSpan ?? s.B * s.Hkv * s.Lk * s.Dv) * bpe,
    s.B * s.Hq * s.Lq * s.Dv * bpe,
    rules + s.B * s.Hq * s.Lq * 8,
    mask ? mask.size * bytesPerElement(mask.dtype) : 0,
  ];
  if (Math.max(...whole) <= limit) {
    return { path: 'whole', ...backwardPasses(ctx, corePlan(inputs, options, s.Lk - s.Lq, 'flash')) };
  }
  const maskDims = mask ? [...Array(4 - mask.shape.length).fill(1), ...mask.shape] : [1, 1, 1, 1];
  const maskBpe = mask ? bytesPerElement(mask.dtype) : 0;
  const fits = (heads: number, rows: number, keys: number) =>
    Math.max(...unitBytes(s, bpe, maskBpe, maskDims, rules, heads, rows, keys)) <= limit;
  const group = s.Hq / s.Hkv;
  // Head counts that keep kv heads whole or share one: divisors of the GQA group, then multiples.
  const heads = [...Array(s.Hq).keys()]
    .map((n) => n + 1)
    .filter((n) => s.Hq % n === 0 && (group % n === 0 || n % group === 0) && fits(n, s.Lq, s.Lk))
    .at(-1);
  const split = (path: 'heads' | 'blocks', n: number, rows: number, keys: number): SplitBackwardPlan => {
    const unit = { ...s, B: 1, Hq: n, Hkv: Math.max(1, n / group), Lq: rows, Lk: keys };
    return {
      path,
      shape: s,
      kernel: backwardPasses(ctx, corePlan({ ctx, shape: unit, dtype }, options, keys - rows, 'flash'))
        .kernel,
      heads: n,
      kvHeads: unit.Hkv,
      rows,
      keys,
      maskDims,
      storage: elementStorage(ctx, dtype),
    };
  };
  if (heads !== undefined) return split('heads', heads, s.Lq, s.Lk);
  // One head: keys as many as fit (all, then powers of two), then rows (a multiple of 4 below Lq,
  // so that f16 and bool slices stay 4-byte aligned).
  for (let keys = s.Lk; keys >= 1; keys = keys === s.Lk ? 2 ** Math.floor(Math.log2(keys - 1)) : keys / 2) {
    if (!fits(1, 1, keys)) continue;
    let lo = 1;
    let hi = s.Lq;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (fits(1, mid, keys)) lo = mid;
      else hi = mid - 1;
    }
    const rows = lo < s.Lq && lo >= 4 ? lo - (lo % 4) : lo;
    return split('blocks', 1, rows, keys);
  }
  throw new Error(
    `attentionBackward: one query row against one key needs more than maxStorageBufferBindingSize (${limit} bytes) for q [${s.Lq}, ${s.D}], k [${s.Lk}, ${s.D}], v [${s.Lk}, ${s.Dv}]`,
  );
}

/** Tiles and workgroups of the passes of `core` (the whole call or one unit). */
export function backwardPasses(ctx: Context, core: CorePlan): BackwardPasses {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = core.shape;
  // the tiled and matrix forms are forward kernels: their contexts run the workgroup form's backward
  const kernel = core.kernel === 'tiled' || core.kernel === 'matrix' ? 'workgroup' : core.kernel;
  const budget = ctx.limits.maxComputeWorkgroupStorageSize - 64;
  const rowBytes = (Math.ceil(D / 4) + Math.ceil(Dv / 4)) * 16;
  let rowsPerTile = MAX_TILE;
  while (rowsPerTile > 1 && rowsPerTile * (rowBytes + 8) > budget) rowsPerTile /= 2;
  let keysPerTile = MAX_TILE;
  while (keysPerTile > 1 && keysPerTile * rowBytes > budget) keysPerTile /= 2;
  const per = kernel === 'registers' ? 4 * BACKWARD_REGISTERS_WG : BACKWARD_WG;
  return {
    core,
    kernel,
    rowsPerTile,
    keysPerTile,
    deltaWorkgroups: Math.ceil((B * Hq * Lq) / BACKWARD_WG),
    dkdvWorkgroups: B * Hkv * Math.ceil(Lk / per),
    dqWorkgroups: B * Hq * Math.ceil(Lq / per),
  };
}

/**
 * The work of a split plan, in order: dq of each block of query rows (its units: the key blocks),
 * then dk and dv of each block of keys (its units: the query heads of its kv heads and the row
 * blocks). Causal units that no row may attend are left out (not with documents, whose offsets
 * are their own).
 */
export function backwardWork(
  plan: SplitBackwardPlan,
  options: Pick<AttentionOptions, 'causal' | 'cuSeqlensQ'>,
): { dq: BackwardTarget[]; dkdv: BackwardTarget[] } {
  const { shape: s, heads, kvHeads, rows, keys } = plan;
  const group = s.Hq / s.Hkv;
  const skip = options.causal && options.cuSeqlensQ === undefined;
  const unit = (b: number, h: number, i: number, j: number): BackwardUnit => ({
    b,
    h,
    heads,
    hk: Math.floor(h / group),
    kvHeads,
    i,
    rows: Math.min(rows, s.Lq - i),
    j,
    keys: Math.min(keys, s.Lk - j),
  });
  const attended = (u: BackwardUnit) => !skip || u.j <= u.i + u.rows - 1 + s.Lk - s.Lq;
  const dq: BackwardTarget[] = [];
  const dkdv: BackwardTarget[] = [];
  for (let b = 0; b < s.B; b++) {
    for (let h = 0; h < s.Hq; h += heads) {
      for (let i = 0; i < s.Lq; i += rows) {
        const units: BackwardUnit[] = [];
        for (let j = 0; j < s.Lk; j += keys) units.push(unit(b, h, i, j));
        dq.push({ target: { ...unit(b, h, i, 0), j: 0, keys: s.Lk }, units: units.filter(attended) });
      }
    }
    // kv heads [hk, hk + kvHeads) and all their query heads, `heads` at a time
    for (let hk = 0; hk < s.Hkv; hk += kvHeads) {
      for (let j = 0; j < s.Lk; j += keys) {
        const units: BackwardUnit[] = [];
        for (let h = hk * group; h < (hk + kvHeads) * group; h += heads) {
          for (let i = 0; i < s.Lq; i += rows) units.push(unit(b, h, i, j));
        }
        const target = { ...unit(b, hk * group, 0, j), heads: kvHeads * group, i: 0, rows: s.Lq };
        dkdv.push({ target, units: units.filter(attended) });
      }
    }
  }
  return { dq, dkdv };
}

/**
 * Bytes each binding of a unit of `heads` query heads, `rows` rows and `keys` keys needs: the
 * slices, the f32 accumulators, the ranges the gradients are stored to, the rule data with the
 * unit's row stats, the mask block.
 */
function unitBytes(
  s: AttentionShape,
  bpe: number,
  maskBpe: number,
  [, mh, mi, mj]: number[],
  ruleBytes: number,
  heads: number,
  rows: number,
  keys: number,
): number[] {
  const kvHeads = Math.max(1, heads / (s.Hq / s.Hkv));
  const perRow = heads * rows;
  const perKey = kvHeads * keys;
  return [
    perRow * s.D * Math.max(bpe, 4),
    perRow * s.D * bpe + BINDING_ALIGN,
    perRow * s.Dv * bpe,
    perRow * 4,
    ruleBytes + perRow * 8,
    perKey * Math.max(s.D, s.Dv) * Math.max(bpe, 4),
    perKey * Math.max(s.D, s.Dv) * bpe + BINDING_ALIGN,
    (mh === 1 ? 1 : heads) * (mi === 1 ? 1 : rows) * (mj === 1 ? 1 : keys) * maskBpe,
  ];
}
