import { checkDropout, type DropoutOptions, dropoutKeeps, dropoutThreshold } from '../dropout';
import { broadcastStrides, expectRank, fmt } from '../shape';
import { type HostResult, type HostTensor, isBool } from './host';

/**
 * Additive mask values at or below this (f32's -3e38, the kernels' finite stand-in for -Infinity)
 * forbid the key as -Infinity does; float32's lowest, -3.4028e38, which Hugging Face masks use, is
 * one of them. Values above it are added to the score.
 */
const FORBIDDING = Math.fround(-3e38);

/**
 * A score modification, applied after the softcap and before ALiBi and the additive mask:
 * `(s, b, h, i, j) => s'` for batch b, query head h, query row i, key j. In varlen mode (packed
 * documents) b is 0 and i, j are global positions in the packed sequences (as FlexAttention passes
 * them), not positions inside the document. Returning -Infinity masks the key out.
 * The GPU side takes WGSL text `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32` that
 * means the same.
 */
export type ScoreModFn = (s: number, b: number, h: number, i: number, j: number) => number;

/** See {@link AttentionCpuOptions.modDataGrad}. */
export type ModDataGradFn = (s: number, b: number, h: number, i: number, j: number, ds: number) => void;

/**
 * A key filter: `(b, h, i, j) => boolean`, true = query row i may attend key j. Same indices as
 * `ScoreModFn` (global packed positions in varlen mode). The GPU side takes WGSL text
 * `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool`.
 */
export type MaskModFn = (b: number, h: number, i: number, j: number) => boolean;

export interface AttentionCpuOptions {
  /** Multiplies q·k. Default 1/sqrt(D). */
  scale?: number;
  /** Key j may be attended from row i iff j <= i + (Lk - Lq) (bottom-right; per document in varlen). */
  causal?: boolean;
  /** Boolean (true = may attend) or additive mask, broadcastable to [B, Hq, Lq, Lk]. */
  mask?: HostTensor;
  /** Tanh softcapping (Gemma 2, Grok): s = c · tanh(s / c), right after s = scale · q·k. c > 0; 0 = none. */
  softcap?: number;
  /** A JS score modification (see `ScoreModFn`); applied after the softcap. */
  scoreMod?: ScoreModFn;
  /**
   * d scoreMod(s, b, h, i, j) / ds, used only by the backward reference. Without it the backward
   * takes a central finite difference of `scoreMod` in float64 (step 1e-5 · max(1, |s|)).
   */
  scoreModGrad?: ScoreModFn;
  /**
   * Gradients of data that scoreMod reads (a learned bias table), used only by the backward
   * reference: called for each attended (b, h, i, j) with scoreMod's input s and
   * ds = d loss / d scoreMod(s, b, h, i, j); it adds ds · d scoreMod / d data[index] to its own
   * gradient arrays (the twin of the GPU backward's `modDataGrad`).
   */
  modDataGrad?: ModDataGradFn;
  /**
   * ALiBi slopes [Hq], or [B, Hq] batch-major (a slope per batch item, as FlashAttention allows):
   * s -= slopes[b, h] · |i + off - j| (FlashAttention's convention).
   */
  alibiSlopes?: ArrayLike<number>;
  /**
   * Sliding window [left, right]: row i may attend key j iff i + off - left <= j <= i + off + right.
   * Each side a non-negative integer, or Infinity or a negative integer (unbounded, FlashAttention's
   * -1). With causal, right is effectively 0.
   */
  window?: readonly [number, number];
  /** A JS key filter (see `MaskModFn`); true = may attend. */
  maskMod?: MaskModFn;
  /**
   * Packed documents (FlashAttention's varlen, needs B = 1): cumulative starts of the documents in
   * the query rows, [numDocs + 1], first 0, last Lq, non-decreasing. Given together with cuSeqlensK.
   * Document d's rows attend only document d's keys; causal, window and ALiBi use positions inside
   * the document and the document's own bottom-right offset lenK_d - lenQ_d.
   */
  cuSeqlensQ?: ArrayLike<number>;
  /** Cumulative starts of the documents in the keys, [numDocs + 1], first 0, last Lk. */
  cuSeqlensK?: ArrayLike<number>;
  /**
   * Keys in use per batch item [B] (FlashAttention's `seqused_k`): batch item b attends only keys
   * j < sequsedK[b], its diagonal (causal, window, ALiBi) at sequsedK[b] - Lq. With documents, one
   * per document, counted from its first key.
   */
  sequsedK?: ArrayLike<number>;
  /**
   * Left padding per batch item [B] (FlashAttention's `cache_leftpad`): batch item b attends no key
   * j < cacheLeftpad[b]. Positions (causal, window, ALiBi) are unchanged. Not with documents.
   */
  cacheLeftpad?: ArrayLike<number>;
  /**
   * Attention sinks [Hq] (gpt-oss; all zeros = onnxruntime's smooth softmax): an extra logit per head
   * in the softmax denominator that carries no value. lse includes it; a row with no allowed key
   * gives zeros and lse = sinks[h]; the returned weights exclude the sink (rows sum to < 1).
   */
  sinks?: ArrayLike<number>;
  /**
   * Block mask from `createBlockMaskCpu`: a key whose tile is empty (0) is not allowed. Tiles marked
   * partial or full let the other rules decide, so a block mask must be derived from (or coarser than)
   * the maskMod/mask it goes with: a kernel may skip maskMod on full tiles.
   */
  blockMask?: BlockMaskCpu;
  /**
   * Dropout on the probabilities after the softmax, with the GPU's keep decisions (see
   * `DropoutOptions`): kept ones are scaled by 1 / (1 - p). lse is that of the softmax before
   * dropout; the returned weights are after dropout.
   */
  dropout?: DropoutOptions;
}

export interface AttentionCpuResult {
  /** [B, Hq, Lq, Dv] */
  output: HostResult;
  /**
   * [B, Hq, Lq], the natural-log sum of exp of the final (modified, masked) scores, plus
   * exp(sink) with sinks; -Infinity for empty rows without sinks, sinks[h] for empty rows with sinks.
   */
  lse: HostResult;
  /**
   * [B, Hq, Lq, Lk], the softmax weights (after dropout, with `dropout`); a row of zeros where
   * nothing may be attended.
   */
  weights: HostResult;
}

/** The sizes a set of score rules is built for. */
export interface AttentionShape {
  B: number;
  Hq: number;
  Lq: number;
  Lk: number;
}

/**
 * The per-(b, h, i, j) logic of the options, shared by the forward, backward and block-mask
 * references. Scores enter `modify` as `scale · q·k`.
 */
export interface ScoreRules {
  /** Whether query row i may attend key j (causal, window, bool mask, maskMod, documents, block mask). */
  allowed(b: number, h: number, i: number, j: number): boolean;
  /** softcap, then scoreMod, then ALiBi, then the additive mask. */
  modify(s: number, b: number, h: number, i: number, j: number): number;
  /** d modify(s, ...) / ds (softcap and scoreMod; ALiBi and the additive mask add constants). */
  modifyGrad(s: number, b: number, h: number, i: number, j: number): number;
  /** s after the softcap: scoreMod's input. */
  capped(s: number): number;
  /** The sink logit of head h; -Infinity without sinks. */
  sink(h: number): number;
  /** The dropout factor of the probability of (b, h, i, j): 0 or 1 / (1 - p); 1 without dropout. */
  dropout(b: number, h: number, i: number, j: number): number;
  readonly hasSinks: boolean;
}

function isIntOrInf(x: unknown): boolean {
  return typeof x === 'number' && (Number.isInteger(x) || x === Number.POSITIVE_INFINITY);
}

function describe(x: unknown): string {
  if (typeof x === 'function') return 'a function';
  if (Array.isArray(x) || ArrayBuffer.isView(x)) {
    const a = Array.from(x as ArrayLike<unknown>);
    return `[${a.slice(0, 8).map(String).join(', ')}${a.length > 8 ? ', ...' : ''}]`;
  }
  return String(x);
}

/** Hq finite numbers; with `B` > 1 (alibiSlopes), also B·Hq (batch-major). */
function checkPerHead(what: string, name: string, x: unknown, Hq: number, B = 1): ArrayLike<number> {
  if (x === null || typeof x !== 'object' || typeof (x as ArrayLike<number>).length !== 'number') {
    throw new Error(
      `${what}: ${name} must be an array of ${Hq} numbers (one per query head), received ${describe(x)}`,
    );
  }
  const a = x as ArrayLike<number>;
  if (a.length !== Hq && (B === 1 || a.length !== B * Hq)) {
    const lengths = B > 1 ? `${Hq} (Hq) or ${B * Hq} (B·Hq, batch-major)` : `${Hq} (Hq)`;
    throw new Error(`${what}: ${name} must have length ${lengths}, received length ${a.length}`);
  }
  for (let h = 0; h < a.length; h++) {
    if (typeof a[h] !== 'number' || !Number.isFinite(a[h])) {
      throw new Error(`${what}: ${name}[${h}] must be a finite number, received ${String(a[h])}`);
    }
  }
  return a;
}

function checkCuSeqlens(what: string, name: string, x: unknown, total: number, dim: string): number[] {
  if (x === null || typeof x !== 'object' || typeof (x as ArrayLike<number>).length !== 'number') {
    throw new Error(
      `${what}: ${name} must be an array of cumulative document starts, received ${describe(x)}`,
    );
  }
  const a = Array.from(x as ArrayLike<number>, Number);
  if (a.length < 2 || a[0] !== 0 || a[a.length - 1] !== total) {
    throw new Error(
      `${what}: ${name} must start with 0 and end with ${total} (${dim}), with at least 2 entries, received ${describe(x)}`,
    );
  }
  for (let d = 0; d < a.length; d++) {
    if (!Number.isInteger(a[d]) || (d > 0 && a[d] < a[d - 1])) {
      throw new Error(`${what}: ${name} must be non-decreasing integers, received ${describe(x)}`);
    }
  }
  return a;
}

/**
 * sequsedK: integers in [0, Lk], one per batch item, or, with documents (key starts `ck`), one per
 * document in [0, its keys].
 */
function checkSequsedK(
  what: string,
  x: ArrayLike<unknown>,
  ck: number[] | undefined,
  B: number,
  Lk: number,
): number[] {
  if (!ck) return checkCounts(what, 'sequsedK', x, B, Lk);
  return checkCounts(what, 'sequsedK', x, ck.length - 1, (e) => ck[e + 1]! - ck[e]!);
}

/** `name`: `n` integers, each in [0, most] (a number, or one per element). */
function checkCounts(
  what: string,
  name: string,
  x: ArrayLike<unknown>,
  n: number,
  most: number | ((e: number) => number),
): number[] {
  const counts = Array.from(x);
  if (counts.length !== n) {
    throw new Error(`${what}: ${name} must have length ${n}, received length ${counts.length}`);
  }
  counts.forEach((u, e) => {
    const top = typeof most === 'number' ? most : most(e);
    if (typeof u !== 'number' || !Number.isInteger(u) || u < 0 || u > top) {
      throw new Error(`${what}: ${name}[${e}] must be an integer in [0, ${top}], received ${String(u)}`);
    }
  });
  return counts as number[];
}

/**
 * Validates the sparse and programmable options against the attention sizes and returns their
 * per-(b, h, i, j) logic. `what` prefixes the error messages (e.g. 'attentionCpu').
 */
export function scoreRules(
  options: AttentionCpuOptions,
  shape: AttentionShape,
  what = 'attentionCpu',
): ScoreRules {
  const { B, Hq, Lq, Lk } = shape;
  const off = Lk - Lq;

  const mask = options.mask;
  const ms = mask ? broadcastStrides(`${what} mask`, mask.shape, [B, Hq, Lq, Lk]) : [0, 0, 0, 0];
  const boolMask = mask ? isBool(mask) : false;
  const maskAt = (b: number, h: number, i: number, j: number) =>
    mask!.data[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]];

  if (
    options.softcap !== undefined &&
    (typeof options.softcap !== 'number' || !Number.isFinite(options.softcap) || options.softcap < 0)
  ) {
    throw new Error(
      `${what}: softcap must be a finite number >= 0 (0: none), received ${describe(options.softcap)}`,
    );
  }
  const softcap = options.softcap || undefined;
  const { scoreMod, scoreModGrad, maskMod, modDataGrad } = options;
  for (const [name, fn] of [
    ['scoreMod', scoreMod],
    ['scoreModGrad', scoreModGrad],
    ['maskMod', maskMod],
    ['modDataGrad', modDataGrad],
  ] as const) {
    if (fn !== undefined && typeof fn !== 'function') {
      throw new Error(`${what}: ${name} must be a function, received ${describe(fn)}`);
    }
  }
  for (const [name, fn] of [
    ['scoreModGrad', scoreModGrad],
    ['modDataGrad', modDataGrad],
  ] as const) {
    if (fn && !scoreMod) {
      throw new Error(`${what}: ${name} needs scoreMod, received scoreMod undefined`);
    }
  }
  const alibi =
    options.alibiSlopes === undefined
      ? undefined
      : checkPerHead(what, 'alibiSlopes', options.alibiSlopes, Hq, B);
  const alibiB = alibi && alibi.length > Hq ? Hq : 0;
  const sinks = options.sinks === undefined ? undefined : checkPerHead(what, 'sinks', options.sinks, Hq);

  const window = options.window;
  if (window !== undefined) {
    if (!Array.isArray(window) || window.length !== 2 || !isIntOrInf(window[0]) || !isIntOrInf(window[1])) {
      throw new Error(
        `${what}: window must be [left, right], each an integer (negative: no bound) or Infinity, received ${describe(window)}`,
      );
    }
  }
  const unbounded = (x: number) => (x < 0 ? Number.POSITIVE_INFINITY : x);
  const [left, right] = (window ?? [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY]).map(unbounded);

  // shift[i] = (document's end of keys in use) - (document's query end): i + shift[i] - j is the signed
  // distance of key j below row i's bottom-right diagonal, inside row i's document.
  const shift = new Int32Array(Lq).fill(off);
  let docOfRow: Int32Array | undefined;
  let docOfKey: Int32Array | undefined;
  if ((options.cuSeqlensQ === undefined) !== (options.cuSeqlensK === undefined)) {
    const [given, missing] =
      options.cuSeqlensQ === undefined ? ['cuSeqlensK', 'cuSeqlensQ'] : ['cuSeqlensQ', 'cuSeqlensK'];
    throw new Error(
      `${what}: ${given} needs ${missing} (packed documents need both), received ${missing} undefined`,
    );
  }
  let cq: number[] | undefined;
  let ck: number[] | undefined;
  if (options.cuSeqlensQ !== undefined) {
    if (B !== 1) {
      throw new Error(`${what}: cuSeqlensQ/cuSeqlensK (packed documents) need B = 1, received B = ${B}`);
    }
    cq = checkCuSeqlens(what, 'cuSeqlensQ', options.cuSeqlensQ, Lq, 'Lq');
    ck = checkCuSeqlens(what, 'cuSeqlensK', options.cuSeqlensK, Lk, 'Lk');
    if (cq.length !== ck.length) {
      throw new Error(
        `${what}: cuSeqlensK must have the length of cuSeqlensQ (${cq.length}, one more than the documents), received length ${ck.length}`,
      );
    }
  }
  // sequsedK: the keys in use per batch item, or per document from its first key
  const used = options.sequsedK === undefined ? undefined : checkSequsedK(what, options.sequsedK, ck, B, Lk);
  if (cq && ck) {
    // a document's keys past its count belong to no document
    docOfRow = new Int32Array(Lq);
    docOfKey = new Int32Array(Lk).fill(-1);
    for (let d = 0; d + 1 < cq.length; d++) {
      const kEnd = used ? ck[d]! + used[d]! : ck[d + 1]!;
      for (let i = cq[d]!; i < cq[d + 1]!; i++) {
        docOfRow[i] = d;
        shift[i] = kEnd - cq[d + 1]!;
      }
      for (let j = ck[d]!; j < kEnd; j++) docOfKey[j] = d;
    }
  }
  const usedOfBatch = ck ? undefined : used;
  // cacheLeftpad: the first key in use per batch item
  let leftpad: number[] | undefined;
  if (options.cacheLeftpad !== undefined) {
    if (ck) throw new Error(`${what}: cacheLeftpad is per batch item, not with cuSeqlensQ/cuSeqlensK`);
    leftpad = checkCounts(what, 'cacheLeftpad', options.cacheLeftpad, B, Lk);
  }
  /** The row's bottom-right offset: i + shiftAt(b, i) - j is key j's distance below its diagonal. */
  const shiftAt = (b: number, i: number) => (usedOfBatch ? usedOfBatch[b]! - Lq : shift[i]!);

  const blockMask = options.blockMask;
  if (blockMask !== undefined) checkBlockMask(what, blockMask, shape);
  const drop = checkDropout(what, options.dropout);
  const dropThreshold = drop ? dropoutThreshold(drop.p) : 0;
  const dropScale = drop ? 1 / (1 - drop.p) : 1;

  const causal = Boolean(options.causal);
  const allowed = (b: number, h: number, i: number, j: number): boolean => {
    if (docOfRow && docOfRow[i] !== docOfKey![j]) return false;
    if (usedOfBatch && j >= usedOfBatch[b]!) return false;
    if (leftpad && j < leftpad[b]!) return false;
    const diag = i + shiftAt(b, i) - j;
    if (causal && diag < 0) return false;
    if (diag > left || -diag > right) return false;
    if (mask && boolMask && !maskAt(b, h, i, j)) return false;
    if (mask && !boolMask && Number(maskAt(b, h, i, j)) <= FORBIDDING) return false;
    if (blockMask && blockMaskAt(blockMask, b, h, i, j) === 0) return false;
    if (maskMod && !maskMod(b, h, i, j)) return false;
    return true;
  };

  const capped = (s: number) => (softcap === undefined ? s : softcap * Math.tanh(s / softcap));
  const modify = (s: number, b: number, h: number, i: number, j: number): number => {
    let x = capped(s);
    if (scoreMod) x = Number(scoreMod(x, b, h, i, j));
    if (alibi) x -= alibi[b * alibiB + h] * Math.abs(i + shiftAt(b, i) - j);
    if (mask && !boolMask) x += Number(maskAt(b, h, i, j));
    return x;
  };
  const modifyGrad = (s: number, b: number, h: number, i: number, j: number): number => {
    let g = 1;
    let x = s;
    if (softcap !== undefined) {
      const t = Math.tanh(s / softcap);
      g = 1 - t * t;
      x = softcap * t;
    }
    if (scoreModGrad) g *= Number(scoreModGrad(x, b, h, i, j));
    else if (scoreMod) {
      const step = 1e-5 * Math.max(1, Math.abs(x));
      g *= (Number(scoreMod(x + step, b, h, i, j)) - Number(scoreMod(x - step, b, h, i, j))) / (2 * step);
    }
    return g;
  };
  return {
    allowed,
    modify,
    modifyGrad,
    capped,
    sink: (h: number) => (sinks ? sinks[h] : Number.NEGATIVE_INFINITY),
    hasSinks: sinks !== undefined,
    dropout: (b: number, h: number, i: number, j: number) =>
      !drop ? 1 : dropoutKeeps(drop.seed, dropThreshold, b, h, i, j) ? dropScale : 0,
  };
}

/** Checks q, k, v of `what` and returns their sizes. */
export function attentionSizes(
  what: string,
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
): { B: number; Hq: number; Hkv: number; Lq: number; Lk: number; D: number; Dv: number } {
  expectRank(`${what} q`, q.shape, 4, 'B, Hq, Lq, D');
  expectRank(`${what} k`, k.shape, 4, 'B, Hkv, Lk, D');
  expectRank(`${what} v`, v.shape, 4, 'B, Hkv, Lk, Dv');
  const [B, Hq, Lq, D] = q.shape;
  const [, Hkv, Lk] = k.shape;
  const Dv = v.shape[3];
  if (k.shape[0] !== B || k.shape[3] !== D || (Hkv === 0 ? Hq !== 0 : Hq % Hkv !== 0)) {
    throw new Error(`${what} k: shape ${fmt(k.shape)} does not fit q ${fmt(q.shape)}`);
  }
  if (v.shape[0] !== B || v.shape[1] !== Hkv || v.shape[2] !== Lk) {
    throw new Error(`${what} v: shape ${fmt(v.shape)} does not fit k ${fmt(k.shape)}`);
  }
  return { B, Hq, Hkv, Lq, Lk, D, Dv };
}

/** A row's softmax: its largest score and sum of exp(s - max) (both including the sink), and lse. */
export interface RowSoftmax {
  max: number;
  sum: number;
  /** max + log(sum); -Infinity when nothing may be attended and there is no sink. */
  lse: number;
}

/**
 * Scores of one query row into `s` (-Infinity where not allowed) and the raw `scale · q·k` into
 * `raw`; returns the row's softmax. A probability is exp(s - max) / sum, not exp(s - lse), which
 * loses every digit once |lse| dwarfs log(sum) (all scores near -1e30). Internal: shared by the
 * forward and the backward.
 */
export function rowScores(
  rules: ScoreRules,
  q: HostTensor,
  k: HostTensor,
  sizes: { Hq: number; Hkv: number; Lq: number; Lk: number; D: number },
  scale: number,
  b: number,
  h: number,
  i: number,
  s: Float64Array,
  raw: Float64Array,
): RowSoftmax {
  const { Hq, Hkv, Lq, Lk, D } = sizes;
  const hk = Math.floor(h / (Hq / Hkv));
  const row = (b * Hq + h) * Lq + i;
  const sink = rules.sink(h);
  let max = sink;
  for (let j = 0; j < Lk; j++) {
    if (!rules.allowed(b, h, i, j)) {
      s[j] = Number.NEGATIVE_INFINITY;
      raw[j] = Number.NaN;
      continue;
    }
    let dot = 0;
    for (let d = 0; d < D; d++) {
      dot += Number(q.data[row * D + d]) * Number(k.data[((b * Hkv + hk) * Lk + j) * D + d]);
    }
    raw[j] = dot * scale;
    s[j] = rules.modify(raw[j], b, h, i, j);
    if (!(s[j] <= max)) max = s[j]; // a NaN score becomes the max, so the row turns NaN
  }
  // nothing may be attended: zero output, no NaN
  if (max === Number.NEGATIVE_INFINITY) return { max, sum: 0, lse: max };
  let sum = rules.hasSinks ? Math.exp(sink - max) : 0;
  for (let j = 0; j < Lk; j++) {
    if (s[j] !== Number.NEGATIVE_INFINITY) sum += Math.exp(s[j] - max);
  }
  return { max, sum, lse: max + Math.log(sum) };
}

/**
 * Scaled dot-product attention in float64: the ground truth every GPU path is checked against.
 * q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv]. Same semantics as `attention`; for
 * query row i, key j, head h with off = Lk - Lq: s = scale · q·k, softcap, scoreMod, ALiBi,
 * additive mask; the key is allowed iff causal, window, bool mask, maskMod, documents and block
 * mask all allow it; sinks join the softmax denominator; dropout applies to the probabilities.
 */
export function attentionCpu(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  options: AttentionCpuOptions = {},
): AttentionCpuResult {
  const sizes = attentionSizes('attentionCpu', q, k, v);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = sizes;
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const rules = scoreRules(options, sizes, 'attentionCpu');
  const group = Hq / Hkv;

  const output = new Float64Array(B * Hq * Lq * Dv);
  const lse = new Float64Array(B * Hq * Lq);
  const weights = new Float64Array(B * Hq * Lq * Lk);
  const s = new Float64Array(Lk);
  const raw = new Float64Array(Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const { max, sum, lse: l } = rowScores(rules, q, k, sizes, scale, b, h, i, s, raw);
        lse[row] = l;
        if (l === Number.NEGATIVE_INFINITY) continue;
        for (let j = 0; j < Lk; j++) {
          const p =
            s[j] === Number.NEGATIVE_INFINITY ? 0 : (Math.exp(s[j] - max) / sum) * rules.dropout(b, h, i, j);
          weights[row * Lk + j] = p;
          if (p === 0) continue;
          for (let d = 0; d < Dv; d++) {
            output[row * Dv + d] += p * Number(v.data[((b * Hkv + hk) * Lk + j) * Dv + d]);
          }
        }
      }
    }
  }
  return {
    output: { data: output, shape: [B, Hq, Lq, Dv] },
    lse: { data: lse, shape: [B, Hq, Lq] },
    weights: { data: weights, shape: [B, Hq, Lq, Lk] },
  };
}

/**
 * A block mask: which (query block, key block) tiles hold any allowed key.
 * `data[((b * H + h) * numBlocksQ + qb) * numBlocksK + kb]` is 0 (empty: no allowed pair), 1
 * (partial: some allowed) or 2 (full: every pair allowed) for the tile of rows
 * [qb · blockSizeQ, min((qb + 1) · blockSizeQ, Lq)) and keys [kb · blockSizeK, min(..., Lk)); the
 * last tiles may be short and are judged on their in-range pairs only. B or H of 1 broadcasts over
 * the batch or the query heads.
 */
export interface BlockMaskCpu {
  data: Uint8Array;
  /** [B, H, numBlocksQ, numBlocksK] */
  shape: [number, number, number, number];
  blockSizeQ: number;
  blockSizeK: number;
  Lq: number;
  Lk: number;
}

export const BLOCK_EMPTY = 0;
export const BLOCK_PARTIAL = 1;
export const BLOCK_FULL = 2;

export interface CreateBlockMaskCpuOptions {
  /** Key filter (b, h, i, j) => boolean, with b < B and h < H (0 when broadcast). */
  maskMod?: MaskModFn;
  /** Boolean mask (true = may attend) broadcastable to [B, H, Lq, Lk]. */
  mask?: HostTensor;
  /** Also apply bottom-right causal masking (as attention's `causal`). */
  causal?: boolean;
  /** Also apply a sliding window (as attention's `window`). */
  window?: readonly [number, number];
  /** Batch size; 1 (the default) broadcasts over the batch. */
  B?: number;
  /** Query heads; 1 (the default) broadcasts over the heads. */
  H?: number;
  Lq: number;
  Lk: number;
  /** Tile size: one number for both, or [query rows, keys]. */
  blockSize: number | readonly [number, number];
}

/**
 * FlexAttention's `create_block_mask` in the reference: classifies every tile as empty, partial or
 * full under maskMod / mask (and causal / window, if given). Layout: see `BlockMaskCpu`.
 */
export function createBlockMaskCpu(options: CreateBlockMaskCpuOptions): BlockMaskCpu {
  const what = 'createBlockMaskCpu';
  const { Lq, Lk } = options;
  const B = options.B ?? 1;
  const H = options.H ?? 1;
  for (const [name, x] of [
    ['B', B],
    ['H', H],
    ['Lq', Lq],
    ['Lk', Lk],
  ] as const) {
    if (!Number.isInteger(x) || x < 1) {
      throw new Error(`${what}: ${name} must be a positive integer, received ${describe(x)}`);
    }
  }
  const bs = options.blockSize;
  const [bq, bk] =
    typeof bs === 'number' ? [bs, bs] : Array.isArray(bs) && bs.length === 2 ? bs : [Number.NaN, Number.NaN];
  if (!Number.isInteger(bq) || !Number.isInteger(bk) || bq < 1 || bk < 1) {
    throw new Error(
      `${what}: blockSize must be a positive integer or [rows, keys] of positive integers, received ${describe(bs)}`,
    );
  }
  if (options.mask && !isBool(options.mask)) {
    throw new Error(
      `${what}: mask must be boolean (dtype 'bool', Uint8Array or booleans), received an additive mask`,
    );
  }
  const rules = scoreRules(
    { maskMod: options.maskMod, mask: options.mask, causal: options.causal, window: options.window },
    { B, Hq: H, Lq, Lk },
    what,
  );
  const nq = Math.ceil(Lq / bq);
  const nk = Math.ceil(Lk / bk);
  const data = new Uint8Array(B * H * nq * nk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let qb = 0; qb < nq; qb++) {
        for (let kb = 0; kb < nk; kb++) {
          let any = false;
          let all = true;
          for (let i = qb * bq; i < Math.min((qb + 1) * bq, Lq); i++) {
            for (let j = kb * bk; j < Math.min((kb + 1) * bk, Lk); j++) {
              if (rules.allowed(b, h, i, j)) any = true;
              else all = false;
            }
          }
          data[((b * H + h) * nq + qb) * nk + kb] = any ? (all ? BLOCK_FULL : BLOCK_PARTIAL) : BLOCK_EMPTY;
        }
      }
    }
  }
  return { data, shape: [B, H, nq, nk], blockSizeQ: bq, blockSizeK: bk, Lq, Lk };
}

function checkBlockMask(what: string, m: BlockMaskCpu, shape: AttentionShape): void {
  const [mb, mh, nq, nk] = m.shape ?? [];
  const ok =
    m.Lq === shape.Lq &&
    m.Lk === shape.Lk &&
    (mb === 1 || mb === shape.B) &&
    (mh === 1 || mh === shape.Hq) &&
    nq === Math.ceil(shape.Lq / m.blockSizeQ) &&
    nk === Math.ceil(shape.Lk / m.blockSizeK) &&
    m.data?.length === mb * mh * nq * nk;
  if (!ok) {
    throw new Error(
      `${what}: blockMask must be made for B ${shape.B} (or 1), H ${shape.Hq} (or 1), Lq ${shape.Lq}, Lk ${shape.Lk}, received shape ${fmt(m.shape ?? [])} for Lq ${m.Lq}, Lk ${m.Lk}, block ${m.blockSizeQ}x${m.blockSizeK}`,
    );
  }
}

function blockMaskAt(m: BlockMaskCpu, b: number, h: number, i: number, j: number): number {
  const [mb, mh, nq, nk] = m.shape;
  const bb = mb === 1 ? 0 : b;
  const hh = mh === 1 ? 0 : h;
  return m.data[((bb * mh + hh) * nq + Math.floor(i / m.blockSizeQ)) * nk + Math.floor(j / m.blockSizeK)];
}
