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

/**
 * Invocations per row of a kernel that sums over each row through `workgroupSum`, and the WGSL
 * defining it: `gpuWG` invocations summing in workgroup memory (workgroup_sum.wgsl) on a GPU; one
 * (workgroup_sum_single.wgsl, no barrier) on a fallback adapter, a CPU, where barriers made these
 * kernels up to 7x slower (a layer norm of [256, 32]: 8.3 against 1.1 ms on SwiftShader).
 */
export function rowSum(ctx: Context, gpuWG: number): { WG: number; source: string } {
  return ctx.adapterInfo?.isFallbackAdapter
    ? { WG: 1, source: workgroupSumSingleSource }
    : { WG: gpuWG, source: workgroupSumSource };
}
