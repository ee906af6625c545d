import ropeSource from '../../shaders/rope.wgsl?raw';
import { checkOptions } from '../checks';
import type { Context } from '../context';
import { elementPrelude, elementStorage } from '../f16';
import { checkRopeSettings, type RopeOptions, RUN_OPTION_KEYS, type RunOptions } from '../options';
import { type Bindable, f32, Recording } from '../program';
import { expectRank, fmt } from '../shape';
import { expectTensor, Tensor } from '../tensor';
import { resultTensor } from './output';

export type { RopeOptions };

/**
 * Rotary embedding from caller-given tables (onnxruntime GroupQueryAttention's cos_cache /
 * sin_cache and position ids).
 */
export interface RopeTables {
  /** 'f32' [maxPositions, rotaryDim / 2]: cos of position p's angle for pair i at [p, i]. */
  cos: Tensor;
  /** 'f32' [maxPositions, rotaryDim / 2], like cos. */
  sin: Tensor;
  /**
   * Position of each row, integers in [0, maxPositions): B * L of them ([B, L], per batch item) or
   * L (shared). Default: row l at position `offset + l`.
   */
  positionIds?: ArrayLike<number>;
  /** Position of row 0 when positionIds is not given. Default 0. */
  offset?: number;
  /** Pairs (2i, 2i + 1) (GPT-J) instead of (i, i + rotaryDim / 2) (GPT-NeoX). Default false. */
  interleaved?: boolean;
}

/** Where a rope call's work and result go. */
export interface RopeCallOptions extends RunOptions {
  /** Write the result into this tensor (x's shape and dtype) instead of a new one. */
  out?: Tensor;
}

const OPTION_KEYS = ['style', 'base', 'dims', 'offset'] as const;
const TABLE_KEYS = ['cos', 'sin', 'positionIds', 'offset', 'interleaved'] as const;
const CALL_KEYS = ['out', ...RUN_OPTION_KEYS] as const;
const WG = 64;

/**
 * Rotary position embedding applied on the GPU: x [B, H, L, D] -> a new tensor [B, H, L, D] of
 * x's dtype ('f32' or 'f16'). With `RopeOptions`, row l of every head is rotated for position
 * `offset + l` by angles position · base^(-2i / dims); with `RopeTables`, by the caller's cos /
 * sin tables at each row's position id.
 *
 * @example
 * // q [B, H, L, D] of a decode step at position 17
 * const qRot = await rope(q, { style: 'half', offset: 17 });
 * // from onnxruntime-style caches [maxPositions, D / 2] and per-row positions
 * const kRot = await rope(k, { cos: cosCache, sin: sinCache, positionIds: [5, 6, 7] });
 */
export function rope(x: Tensor, options: (RopeOptions | RopeTables) & RopeCallOptions): Promise<Tensor> {
  return runRope('rope', x, options, false);
}

/**
 * Gradient of {@link rope}: dy [B, H, L, D] -> dx [B, H, L, D] (dy's dtype), each pair rotated by
 * the negative angle (a rotation's transpose is its inverse); features past the rotated ones pass
 * through. Takes the forward's options, settings or tables.
 *
 * @example
 * const dq = await ropeBackward(dqRotated, { style: 'half' });
 */
export function ropeBackward(
  dy: Tensor,
  options: (RopeOptions | RopeTables) & RopeCallOptions,
): Promise<Tensor> {
  return runRope('ropeBackward', dy, options, true);
}

async function runRope(
  what: string,
  x: Tensor,
  callOptions: (RopeOptions | RopeTables) & RopeCallOptions,
  inverse: boolean,
): Promise<Tensor> {
  const { ctx } = x;
  const [, H, L, D] = checkRopeX(what, x);
  const options = { ...callOptions };
  for (const key of CALL_KEYS) delete options[key];
  const { out: target, encoder } = callOptions;
  const withTables = 'cos' in options || 'sin' in options;
  const t = withTables ? checkRopeTables(what, ctx, x.shape, options as RopeTables) : undefined;
  if (!withTables) checkOptions(what, options, OPTION_KEYS);
  const settings = withTables ? undefined : checkRopeSettings(what, D, options as RopeOptions);
  const storage = elementStorage(ctx, x.dtype);
  const rec = new Recording(ctx, what);
  rec.watch(x, target);
  const out = resultTensor(ctx, rec, `${what}: out`, target, x.shape, x.dtype);
  let half: number;
  let tables: [Bindable, Bindable];
  let positions: GPUBuffer | undefined;
  let ids = 0;
  let offset = 0;
  let interleaved: boolean;
  if (t) {
    half = t.half;
    interleaved = t.interleaved;
    offset = t.offset;
    tables = [t.cos.binding, t.sin.binding];
    if (t.positionIds) {
      ids = t.positionIds.length === L ? 1 : 2;
      positions = rec.buffer(t.positionIds.length * 4, 'rope:positions');
      ctx.device.queue.writeBuffer(positions, 0, Uint32Array.from(t.positionIds, Number));
    }
  } else {
    const { dims, base, offset: start } = settings!;
    interleaved = (options as RopeOptions).style === 'interleaved';
    // cos and sin of every (row, pair), in float64 before rounding to f32
    half = dims / 2;
    const cos = new Float32Array(L * half);
    const sin = new Float32Array(L * half);
    for (let l = 0; l < L; l++) {
      for (let i = 0; i < half; i++) {
        const angle = (start + l) * base ** ((-2 * i) / dims);
        cos[l * half + i] = Math.cos(angle);
        sin[l * half + i] = Math.sin(angle);
      }
    }
    const [cosBuffer, sinBuffer] = [
      rec.buffer(cos.byteLength, 'rope:cos'),
      rec.buffer(sin.byteLength, 'rope:sin'),
    ];
    ctx.device.queue.writeBuffer(cosBuffer, 0, cos);
    ctx.device.queue.writeBuffer(sinBuffer, 0, sin);
    tables = [cosBuffer, sinBuffer];
  }
  rec.dispatch({
    name: 'rope',
    sources: [elementPrelude(storage, true), ropeSource],
    constants: { WG, STYLE: interleaved ? 1 : 0 },
    uniforms: { total: x.size, H, L, D, half, offset, ids, sin_sign: f32(inverse ? -1 : 1) },
    bindings: [x.binding, ...tables, positions, out.binding],
    workgroups: Math.ceil(x.size / WG),
  });
  try {
    await rec.submit(encoder);
  } catch (e) {
    if (out !== target) out.destroy();
    throw e;
  }
  return out;
}

function checkRopeX(what: string, x: Tensor): number[] {
  const name = `${what}: ${what === 'rope' ? 'x' : 'dy'}`;
  expectTensor(name, x);
  x.assertUsable(name);
  expectRank(name, x.shape, 4, 'B, H, L, D');
  if (x.dtype !== 'f32' && x.dtype !== 'f16') {
    throw new Error(`${name} must have dtype 'f32' or 'f16', received '${x.dtype}'`);
  }
  return [...x.shape];
}

/** Validates x and the options of `rope` with settings; returns them with defaults filled in. */
export function checkRopeInputs(
  x: Tensor,
  options: RopeOptions,
): { dims: number; base: number; offset: number } {
  checkOptions('rope', options, OPTION_KEYS);
  checkRopeX('rope', x);
  return checkRopeSettings('rope', x.shape[3], options);
}

/** Validates `RopeTables` against x; returns the pairs per row and what the kernel reads. */
export function checkRopeTables(
  what: string,
  ctx: Context,
  xShape: readonly number[],
  options: RopeTables,
): {
  half: number;
  interleaved: boolean;
  offset: number;
  cos: Tensor;
  sin: Tensor;
  positionIds?: ArrayLike<number>;
} {
  checkOptions(what, options, TABLE_KEYS);
  const [B, , L, D] = xShape;
  const { cos, sin } = options;
  for (const [name, t] of [
    ['cos', cos],
    ['sin', sin],
  ] as const) {
    if (!(t instanceof Tensor)) {
      throw new Error(
        `${what}: ${name} must be an 'f32' tensor [maxPositions, rotaryDim / 2], received ${typeof t}`,
      );
    }
    expectTensor(`${what}: ${name}`, t);
    t.assertUsable(`${what}: ${name}`, ctx);
  }
  if (cos.dtype !== 'f32' || cos.shape.length !== 2 || cos.shape[1] < 1 || 2 * cos.shape[1] > D) {
    throw new Error(
      `${what}: cos must be an 'f32' tensor [maxPositions, rotaryDim / 2] with rotaryDim <= ${D} (the head dim), received '${cos.dtype}' ${fmt(cos.shape)}`,
    );
  }
  if (
    sin.dtype !== 'f32' ||
    sin.shape.length !== 2 ||
    sin.shape[0] !== cos.shape[0] ||
    sin.shape[1] !== cos.shape[1]
  ) {
    throw new Error(
      `${what}: sin must be an 'f32' tensor ${fmt(cos.shape)} (cos's shape), received '${sin.dtype}' ${fmt(sin.shape)}`,
    );
  }
  const [maxPos, half] = cos.shape;
  if (options.interleaved !== undefined && typeof options.interleaved !== 'boolean') {
    throw new Error(`${what}: interleaved must be a boolean, received ${String(options.interleaved)}`);
  }
  const ids = options.positionIds;
  if (ids !== undefined) {
    if (!(Array.isArray(ids) || ArrayBuffer.isView(ids)) || (ids.length !== L && ids.length !== B * L)) {
      throw new Error(
        `${what}: positionIds must be an array of ${B * L} ([B, L]) or ${L} ([L]) positions, received ${ids && typeof ids === 'object' && 'length' in ids ? `length ${ids.length}` : typeof ids}`,
      );
    }
    for (let n = 0; n < ids.length; n++) {
      const p = Number(ids[n]);
      if (!Number.isInteger(p) || p < 0 || p >= maxPos) {
        throw new Error(
          `${what}: positionIds must be integers in [0, ${maxPos}) (cos/sin rows), received ${String(ids[n])} at index ${n}`,
        );
      }
    }
    return { half, interleaved: Boolean(options.interleaved), offset: 0, cos, sin, positionIds: ids };
  }
  const offset = options.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0 || offset + L > maxPos) {
    throw new Error(
      `${what}: offset must be an integer in [0, ${maxPos - L}] (positions offset..offset+L-1 within the ${maxPos} table rows), received ${String(options.offset)}`,
    );
  }
  return { half, interleaved: Boolean(options.interleaved), offset, cos, sin };
}
