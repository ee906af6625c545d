import { checkRopeSettings, type RopeOptions } from '../options';
import { expectRank, fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

export { checkRopeSettings, type RopeOptions };

/**
 * Rotary embedding from caller-given tables, as onnxruntime's GroupQueryAttention and
 * RotaryEmbedding take them: `cos`, `sin` [maxPositions, rotaryDim / 2], row p holding
 * cos / sin of position p's angle for each pair. The first rotaryDim features are rotated, the rest
 * pass through.
 */
export interface RopeTableOptions {
  /** [maxPositions, rotaryDim / 2] */
  cos: HostTensor;
  /** [maxPositions, rotaryDim / 2] */
  sin: HostTensor;
  /**
   * Position of each row: [B, L] (per batch) or [L] (shared), integers in [0, maxPositions).
   * Default: row l at position `offset + l`.
   */
  positionIds?: HostTensor;
  /** Position of row 0 when positionIds is not given. Default 0. */
  offset?: number;
  /** Pairs (2i, 2i + 1) (GPT-J) instead of (i, i + rotaryDim / 2) (GPT-NeoX). Default false. */
  interleaved?: boolean;
}

/**
 * cos / sin tables [maxPositions, dims / 2] of the base/theta form: entry (p, i) is
 * cos / sin of p · base^(-2i / dims). What onnxruntime's cos_cache / sin_cache hold.
 */
export function ropeTablesCpu(
  maxPositions: number,
  dims: number,
  base = 10000,
): { cos: HostResult; sin: HostResult } {
  if (!Number.isInteger(maxPositions) || maxPositions < 1) {
    throw new Error(
      `ropeTablesCpu: maxPositions must be a positive integer, received ${String(maxPositions)}`,
    );
  }
  if (!Number.isInteger(dims) || dims < 2 || dims % 2 !== 0) {
    throw new Error(`ropeTablesCpu: dims must be an even integer >= 2, received ${String(dims)}`);
  }
  if (typeof base !== 'number' || !Number.isFinite(base) || base <= 0) {
    throw new Error(`ropeTablesCpu: base must be a positive number, received ${String(base)}`);
  }
  const half = dims / 2;
  const cos = new Float64Array(maxPositions * half);
  const sin = new Float64Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * base ** ((-2 * i) / dims);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos: { data: cos, shape: [maxPositions, half] }, sin: { data: sin, shape: [maxPositions, half] } };
}

/**
 * Rotary position embedding in float64: x [B, H, L, D] -> [B, H, L, D].
 * With `RopeOptions`, row l is at position `offset + l` and pair i of the first `dims` features turns
 * by position · base^(-2i / dims). With `RopeTableOptions`, pair i of a row at position p turns by
 * the angle whose cosine and sine are cos[p, i] and sin[p, i].
 */
export function ropeCpu(x: HostTensor, options: RopeOptions | RopeTableOptions): HostResult {
  expectRank('ropeCpu x', x.shape, 4, 'B, H, L, D');
  const [B, H, L, D] = x.shape;
  let half: number;
  let interleaved: boolean;
  let position: (b: number, l: number) => number;
  let cosAt: (pos: number, i: number) => number;
  let sinAt: (pos: number, i: number) => number;
  if ('cos' in options || 'sin' in options) {
    const t = checkRopeTables('ropeCpu', x.shape, options as RopeTableOptions);
    half = t.half;
    interleaved = t.interleaved;
    position = t.position;
    cosAt = (pos, i) => Number(t.cos.data[pos * half + i]);
    sinAt = (pos, i) => Number(t.sin.data[pos * half + i]);
  } else {
    const { dims, base, offset } = checkRopeSettings('ropeCpu', D, options as RopeOptions);
    half = dims / 2;
    interleaved = (options as RopeOptions).style === 'interleaved';
    position = (_b, l) => offset + l;
    cosAt = (pos, i) => Math.cos(pos * base ** ((-2 * i) / dims));
    sinAt = (pos, i) => Math.sin(pos * base ** ((-2 * i) / dims));
  }
  const out = Float64Array.from(x.data, Number);
  for (let r = 0; r < B * H * L; r++) {
    const pos = position(Math.floor(r / (H * L)), r % L);
    for (let i = 0; i < half; i++) {
      const [a, b] = interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
      const c = cosAt(pos, i);
      const s = sinAt(pos, i);
      const x0 = Number(x.data[r * D + a]);
      const x1 = Number(x.data[r * D + b]);
      out[r * D + a] = x0 * c - x1 * s;
      out[r * D + b] = x1 * c + x0 * s;
    }
  }
  return { data: out, shape: [B, H, L, D] };
}

/**
 * Checks rope tables and position ids against x [B, H, L, D]; returns the pairs per row, the
 * pairing and each row's position.
 */
export function checkRopeTables(
  what: string,
  xShape: readonly number[],
  options: RopeTableOptions,
): {
  half: number;
  interleaved: boolean;
  cos: HostTensor;
  sin: HostTensor;
  position: (b: number, l: number) => number;
} {
  const [B, , L, D] = xShape;
  const { cos, sin } = options;
  if (!cos || !sin || !Array.isArray(cos.shape) || !Array.isArray(sin.shape)) {
    throw new Error(`${what}: cos and sin must both be given as [maxPositions, rotaryDim / 2] tensors`);
  }
  if (cos.shape.length !== 2 || cos.shape[1] < 1 || 2 * cos.shape[1] > D || cos.shape[0] < 1) {
    throw new Error(
      `${what} cos: expected shape [maxPositions, rotaryDim / 2] with rotaryDim <= ${D} (the head dim), received ${fmt(cos.shape)}`,
    );
  }
  if (sin.shape.length !== 2 || sin.shape[0] !== cos.shape[0] || sin.shape[1] !== cos.shape[1]) {
    throw new Error(`${what} sin: expected shape ${fmt(cos.shape)} (cos's), received ${fmt(sin.shape)}`);
  }
  const [maxPos, half] = cos.shape;
  if (options.interleaved !== undefined && typeof options.interleaved !== 'boolean') {
    throw new Error(`${what}: interleaved must be a boolean, received ${String(options.interleaved)}`);
  }
  const ids = options.positionIds;
  let position: (b: number, l: number) => number;
  if (ids) {
    const perBatch = ids.shape.length === 2;
    if (
      !(perBatch && ids.shape[0] === B && ids.shape[1] === L) &&
      !(ids.shape.length === 1 && ids.shape[0] === L)
    ) {
      throw new Error(
        `${what} positionIds: expected shape [${B}, ${L}] ([B, L]) or [${L}] ([L]), received ${fmt(ids.shape)}`,
      );
    }
    for (let n = 0; n < ids.data.length; n++) {
      const p = Number(ids.data[n]);
      if (!Number.isInteger(p) || p < 0 || p >= maxPos) {
        throw new Error(
          `${what} positionIds: entries must be integers in [0, ${maxPos}) (cos/sin rows), received ${String(ids.data[n])} at index ${n}`,
        );
      }
    }
    position = perBatch ? (b, l) => Number(ids.data[b * L + l]) : (_b, l) => Number(ids.data[l]);
  } else {
    const offset = options.offset ?? 0;
    if (!Number.isInteger(offset) || offset < 0 || offset + L > maxPos) {
      throw new Error(
        `${what}: offset must be an integer in [0, ${maxPos - L}] (positions offset..offset+L-1 within the ${maxPos} table rows), received ${String(options.offset)}`,
      );
    }
    position = (_b, l) => offset + l;
  }
  return { half, interleaved: Boolean(options.interleaved), cos, sin, position };
}

/**
 * Gradient of {@link ropeCpu} (RopeOptions form) in float64: each pair of dy [B, H, L, D] rotated
 * by the negative angle (the transpose of the rotation); features past `dims` pass through.
 */
export function ropeBackwardCpu(dy: HostTensor, options: RopeOptions): HostResult {
  expectRank('ropeBackwardCpu dy', dy.shape, 4, 'B, H, L, D');
  const [, , L, D] = dy.shape;
  const { dims, base, offset } = checkRopeSettings('ropeBackwardCpu', D, options);
  const half = dims / 2;
  const out = Float64Array.from(dy.data, Number);
  for (let r = 0; r < dy.data.length / D; r++) {
    const pos = offset + (r % L);
    for (let i = 0; i < half; i++) {
      const [a, b] = options.style === 'interleaved' ? [2 * i, 2 * i + 1] : [i, i + half];
      const angle = pos * base ** ((-2 * i) / dims);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const d0 = Number(dy.data[r * D + a]);
      const d1 = Number(dy.data[r * D + b]);
      out[r * D + a] = d0 * c + d1 * s;
      out[r * D + b] = d1 * c - d0 * s;
    }
  }
  return { data: out, shape: [...dy.shape] };
}
