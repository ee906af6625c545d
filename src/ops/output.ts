// The tensor an op writes its result to: a new one, or the caller's `out`, checked.
import type { Context } from '../context';
import { elementStorage } from '../f16';
import type { Recording } from '../program';
import { fmt } from '../shape';
import { type DType, expectTensor, type Tensor } from '../tensor';

/**
 * `out` when given (checked: a tensor of `ctx` with this shape and dtype, zeroed by `rec` where
 * the kernel ORs packed halves into it), else a new zero-filled tensor.
 */
export function resultTensor<D extends DType>(
  ctx: Context,
  rec: Recording,
  what: string,
  out: Tensor | undefined,
  shape: readonly number[],
  dtype: D,
): Tensor<D> {
  if (out === undefined) return ctx.zeros(shape, { dtype, label: what });
  expectTensor(what, out);
  out.assertUsable(what, ctx);
  if (out.dtype !== dtype || out.shape.length !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new Error(
      `${what}: expected a ${dtype} tensor of shape ${fmt(shape)}, received ${out.dtype} ${fmt(out.shape)}`,
    );
  }
  if (elementStorage(ctx, dtype) === 'f16-packed') rec.clear(out.binding);
  return out as Tensor<D>;
}
