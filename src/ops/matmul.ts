import matmulSource from '../../shaders/matmul.wgsl?raw';
import { checkOptions } from '../checks';
import { batchShape, type MatmulSettings, RUN_OPTION_KEYS, type RunOptions } from '../options';
import { f32, Recording, vec4u } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { expectTensor } from '../tensor';

import { resultTensor } from './output';

export interface MatmulOptions extends MatmulSettings, RunOptions {
  /** Write c into this f32 tensor [...batch, M, N] instead of a new one. */
  out?: Tensor;
}

const OPTION_KEYS = ['transposeA', 'transposeB', 'alpha', 'out', ...RUN_OPTION_KEYS] as const;

/** Batch dims the kernel's uniforms hold after merging (see {@link mergeBatchDims}). */
const MAX_BATCH_DIMS = 8;

/** Tile of c per workgroup (BM x BN, multiples of 8) and depth of the staged slices (BK, a multiple of 4). */
interface Tiling {
  BM: number;
  BN: number;
  BK: number;
}

/** The problem sizes, checked. */
export interface MatmulShape {
  M: number;
  N: number;
  K: number;
  /** Batch dims of c: those of a and b broadcast. */
  batch: number[];
  /** The same, merged for the kernel (see {@link mergeBatchDims}). */
  batchDims: number[][];
}

/**
 * Batched matrix product C = alpha · op(A) · op(B) in f32.
 * a [..., M, K] (or [..., K, M] with `transposeA`), b [..., K, N] (or [..., N, K] with `transposeB`)
 * -> c [...batch, M, N], where the batch dims of a and b broadcast (each pair equal or one of them 1).
 *
 * @example
 * // scores [B, H, Lq, Lk] = q [B, H, Lq, D] · k [B, H, Lk, D]ᵀ / sqrt(D)
 * const scores = await matmul(q, k, { transposeB: true, alpha: 1 / Math.sqrt(D) });
 */
export async function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor> {
  const { M, N, K, batch, batchDims } = checkMatmulInputs(a, b, options);
  const { ctx } = a;
  const transposeA = options.transposeA ?? false;
  const transposeB = options.transposeB ?? false;
  const tiling = chooseTiling(M, N);
  const constants = {
    ...tiling,
    TRANS_A: transposeA,
    TRANS_B: transposeB,
    // a vec4 load stays inside one row when the contiguous dim is a multiple of 4
    VA: (transposeA ? M : K) % 4 === 0 ? 4 : 1,
    VB: (transposeB ? K : N) % 4 === 0 ? 4 : 1,
    MAX_BATCH_DIMS,
  };
  const rec = new Recording(ctx, 'matmul');
  rec.watch(a, b, options.out);
  const c = resultTensor(ctx, rec, 'matmul: out', options.out, [...batch, M, N], 'f32');
  const tilesN = Math.ceil(N / tiling.BN);
  const tilesM = Math.ceil(M / tiling.BM);
  const batchValues = new Array<number>(4 * MAX_BATCH_DIMS).fill(0);
  batchDims.forEach((d, i) => {
    batchValues.splice(4 * i, 4, ...d);
  });
  const elem = (v: number) => (v === 4 ? 'vec4<f32>' : 'f32');
  const aliases = `alias AElem = ${elem(constants.VA)};\nalias BElem = ${elem(constants.VB)};\n`;
  rec.dispatch({
    name: 'matmul',
    sources: [aliases, matmulSource],
    constants,
    uniforms: {
      M,
      N,
      K,
      tilesN,
      tilesM,
      batchDims: batchDims.length,
      alpha: f32(options.alpha ?? 1),
      batch: vec4u(batchValues),
    },
    bindings: [a.binding, b.binding, c.binding],
    workgroups: tilesN * tilesM * batch.reduce((x, y) => x * y, 1),
  });
  await rec.submit(options.encoder);
  return c;
}

/**
 * 64 x 64 tiles of c, 16 wide along a dim of at most 16 (matrix-vector products, decoding).
 * Slices 8 deep: deeper ones were no faster on SwiftShader and compile much more slowly there.
 */
function chooseTiling(M: number, N: number): Tiling {
  return { BM: M <= 16 ? 16 : 64, BN: N <= 16 ? 16 : 64, BK: 8 };
}

/**
 * The batch dims of c as (size, a stride, b stride, 0), innermost first, strides in matrices (0
 * where the operand broadcasts). Dims of size 1 are dropped and neighbours that step through
 * both operands alike are merged, so any rank fits in a few uniforms.
 */
function mergeBatchDims(batch: number[], a: readonly number[], b: readonly number[]): number[][] {
  const strides = (shape: readonly number[]) => {
    const out = new Array<number>(batch.length).fill(0);
    let stride = 1;
    for (let i = batch.length - 1; i >= 0; i--) {
      const dim = shape[shape.length - 2 - (batch.length - i)] ?? 1;
      out[i] = dim === 1 ? 0 : stride;
      stride *= dim;
    }
    return out;
  };
  const as = strides(a);
  const bs = strides(b);
  const dims: number[][] = [];
  for (let i = batch.length - 1; i >= 0; i--) {
    if (batch[i] === 1) continue;
    const inner = dims[dims.length - 1];
    if (inner && as[i] === inner[1] * inner[0] && bs[i] === inner[2] * inner[0]) {
      inner[0] *= batch[i];
    } else {
      dims.push([batch[i], as[i], bs[i], 0]);
    }
  }
  return dims;
}

/** Validates a, b and the options of `matmul`; returns the sizes. */
export function checkMatmulInputs(a: Tensor, b: Tensor, options: MatmulOptions): MatmulShape {
  checkOptions('matmul', options, OPTION_KEYS);
  for (const flag of ['transposeA', 'transposeB'] as const) {
    const value = options[flag];
    if (value !== undefined && typeof value !== 'boolean') {
      throw new Error(`matmul: options.${flag} must be a boolean, received ${typeof value}`);
    }
  }
  if (options.alpha !== undefined && (typeof options.alpha !== 'number' || !Number.isFinite(options.alpha))) {
    throw new Error(`matmul: options.alpha must be a finite number, received ${String(options.alpha)}`);
  }
  expectTensor('matmul: a', a);
  a.assertUsable('matmul: a');
  expectTensor('matmul: b', b);
  b.assertUsable('matmul: b', a.ctx);
  const dimsA = options.transposeA ? 'K, M' : 'M, K';
  const dimsB = options.transposeB ? 'N, K' : 'K, N';
  for (const [name, t, dims] of [
    ['a', a, dimsA],
    ['b', b, dimsB],
  ] as const) {
    if (t.rank < 2) {
      throw new Error(`matmul: ${name}: expected rank >= 2 [..., ${dims}], received shape ${fmt(t.shape)}`);
    }
    if (t.dtype !== 'f32') throw new Error(`matmul: ${name} must have dtype 'f32', received '${t.dtype}'`);
  }
  const ra = a.rank;
  const rb = b.rank;
  const [M, K] = options.transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const [Kb, N] = options.transposeB
    ? [b.shape[rb - 1], b.shape[rb - 2]]
    : [b.shape[rb - 2], b.shape[rb - 1]];
  if (K !== Kb) {
    throw new Error(
      `matmul: inner dims differ: a ${fmt(a.shape)} gives K=${K}, b ${fmt(b.shape)} gives K=${Kb}`,
    );
  }
  const batch = batchShape('matmul', a.shape, b.shape);
  const maxBytes = a.ctx.limits.maxStorageBufferBindingSize;
  const cSize = batch.reduce((x, y) => x * y, M * N);
  for (const [name, size] of [
    ['a', a.size],
    ['b', b.size],
    ['c', cSize],
  ] as const) {
    if (size * 4 > maxBytes) {
      throw new Error(
        `matmul: ${name} takes ${size * 4} bytes, more than maxStorageBufferBindingSize ${maxBytes}`,
      );
    }
  }
  const batchDims = mergeBatchDims(batch, a.shape, b.shape);
  if (batchDims.length > MAX_BATCH_DIMS) {
    throw new Error(
      `matmul: batch dims of a ${fmt(a.shape)} and b ${fmt(b.shape)} alternate broadcasting more than ${MAX_BATCH_DIMS} times`,
    );
  }
  return { M, N, K, batch, batchDims };
}
