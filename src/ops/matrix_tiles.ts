// The tiles of the 'matrix' flash kernel (shaders/flash_attention_matrix.wgsl) on a context: the
// subgroup-matrix builtins in a shape the adapter reports, or their emulation, and how many value
// dims one workgroup keeps in workgroup memory.
import type { Context, SubgroupMatrixConfig } from '../context';
import { SUBGROUP_MATRIX_FEATURE } from '../kernel_forms';

/** The kernel's rows per block, keys per tile and q / k dims per chunk (BR, BC, KC there). */
const BLOCK = 32;
/** Words of per-row state of the kernel (rowM .. rowShift: six arrays of BLOCK). */
const ROW_STATE_BYTES = 6 * BLOCK * 4;

/**
 * The tile shape of the emulation: M != N, so that the specs catch a swapped axis; K = 8, since
 * SwiftShader unrolls the products (K = 16 took three times as long to compile there).
 */
const EMULATED_TILES = { M: 8, N: 16, K: 8 } as const;

/** How the 'matrix' kernel multiplies: tile shape, builtins or emulation, value dims per workgroup. */
export interface MatrixTiles {
  /** The subgroup-matrix builtins (else their emulation with ordinary invocations). */
  builtin: boolean;
  M: number;
  N: number;
  K: number;
  /** Value dims per workgroup (a multiple of 32): Dv is split over workgroups above it. */
  valueDims: number;
}

/**
 * The subgroup-matrix shape the 'matrix' kernel uses on `ctx`: where the device has subgroup
 * matrices, shader-f16 and subgroups, the largest f16 x f16 -> f32 shape the adapter reports whose
 * M, N and K divide 32; undefined otherwise (the kernel then runs the emulation).
 */
export function matrixConfig(ctx: Context): SubgroupMatrixConfig | undefined {
  const usable =
    ctx.features.has(SUBGROUP_MATRIX_FEATURE) &&
    ctx.features.has('shader-f16') &&
    ctx.features.has('subgroups');
  if (!usable) return undefined;
  return ctx.adapterInfo.subgroupMatrixConfigs
    .filter(
      (c) =>
        c.componentType === 'f16' &&
        c.resultComponentType === 'f32' &&
        [c.M, c.N, c.K].every((x) => x > 0 && BLOCK % x === 0),
    )
    .sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K)[0];
}

/**
 * The tiles of the 'matrix' kernel for value head dim `Dv` on `ctx`: the builtins in the shape of
 * {@link matrixConfig}, else the emulation; as many value dims per workgroup as workgroup memory
 * holds; undefined when not even 32 fit (maxComputeWorkgroupStorageSize).
 */
export function matrixTiles(ctx: Context, Dv: number): MatrixTiles | undefined {
  const config = matrixConfig(ctx);
  const builtin = config !== undefined;
  const { M, N, K } = config ?? EMULATED_TILES;
  // S [BR, BC] and O [BR, VG] in f32; operands P [BR, BC] and v [BC, VG] (f16, or f32 emulated)
  const operandBytes = builtin ? 2 : 4;
  const bytes = (vg: number) =>
    4 * (BLOCK * BLOCK + BLOCK * vg) + operandBytes * (BLOCK * BLOCK + BLOCK * vg) + ROW_STATE_BYTES;
  const limit = ctx.limits.maxComputeWorkgroupStorageSize;
  let valueDims = Math.ceil(Dv / 32) * 32;
  while (valueDims > 32 && bytes(valueDims) > limit) valueDims = Math.ceil(valueDims / 2 / 32) * 32;
  if (bytes(valueDims) > limit) return undefined;
  return { builtin, M, N, K, valueDims };
}
