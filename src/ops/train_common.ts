// Pieces the training ops share: f32 input checks and the deterministic column-sum pass.
import columnSumSource from '../../shaders/column_sum.wgsl?raw';
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
