// Pieces the training ops share: f32 input checks and the deterministic column-sum pass.
import columnSumSource from '../../shaders/column_sum.wgsl?raw';
import workgroupSumSource from '../../shaders/workgroup_sum.wgsl?raw';
import workgroupSumSingleSource from '../../shaders/workgroup_sum_single.wgsl?raw';
import type { Context } from '../context';
import type { Bindable, Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';

/** Invocations per workgroup of the elementwise training kernels. */
export const WG = 64;

/** Throws unless `t` is a usable, contiguous f32 tensor of `ctx` (of `shape`, when given). */
export function checkF32(op: string, name: string, t: Tensor, ctx: Context, shape?: readonly number[]): void {
  if (t === undefined || t === null || typeof t.assertUsable !== 'function') {
    throw new Error(`${op}: ${name} must be a Tensor, received ${t === null ? 'null' : typeof t}`);
  }
  t.assertUsable(`${op}: ${name}`, ctx);
  if (t.dtype !== 'f32') throw new Error(`${op}: ${name} must have dtype 'f32', received '${t.dtype}'`);
  if (shape && fmt(t.shape) !== fmt(shape)) {
    throw new Error(`${op}: ${name} must have shape ${fmt(shape)}, received ${fmt(t.shape)}`);
  }
}

/** Records out [F] = Σ_rows x [rows, F], rows added in order (no atomics). */
export function recordColumnSum(rec: Recording, x: Bindable, rows: number, F: number, out: Bindable): void {
  rec.dispatch({
    name: 'column_sum',
    sources: [columnSumSource],
    constants: { WG },
    uniforms: { rows, F },
    bindings: [x, out],
    workgroups: Math.ceil(F / WG),
  });
}

/** Rows per workgroup of the per-row kernels on CPU adapters (one invocation each). */
const CPU_ROWS = 4;

/**
 * How a per-row kernel (one that reduces over each row through `workgroupSum`/`workgroupMax`) lays
 * rows on invocations, and the WGSL defining those: on a GPU a workgroup of `gpuWG` invocations per
 * row, reducing in workgroup memory (workgroup_sum.wgsl); on a fallback adapter (a CPU) one
 * invocation per row, CPU_ROWS rows per workgroup, with no barrier (workgroup_sum_single.wgsl).
 * On SwiftShader a workgroup per row cost ~0.1-0.2 ms per workgroup (a layer norm of [4096, 512]:
 * 736 ms against 57), and one row per single-invocation workgroup lost on long rows (idle SIMD lanes).
 * `workgroups(rows)`: the dispatch for `rows` rows (the kernel's `rows` uniform).
 */
export function rowLayout(
  ctx: Context,
  gpuWG: number,
): { WG: number; source: string; workgroups: (rows: number) => number } {
  return ctx.adapterInfo?.isFallbackAdapter
    ? { WG: CPU_ROWS, source: workgroupSumSingleSource, workgroups: (rows) => Math.ceil(rows / CPU_ROWS) }
    : { WG: gpuWG, source: workgroupSumSource, workgroups: (rows) => rows };
}
