// The tensor an op writes its result to: a new one, or the caller's `out`, checked.
import type { Context } from '../context';
import { elementStorage } from '../f16';
import { RUN_OPTION_KEYS, type RunOptions } from '../options';
import type { Recording } from '../program';
import { fmt } from '../shape';
import { type DType, expectTensor, Tensor } from '../tensor';

/** Where the work and the one result of an op go. */
export interface OutputOptions extends RunOptions {
  /** Write the result into this 'f32' tensor (the result's shape) instead of a new one. */
  out?: Tensor;
}
export const OUTPUT_OPTION_KEYS = ['out', ...RUN_OPTION_KEYS] as const;

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
  // (an empty result is only asked for by attention and its backward)
  out.assertUsable(what, ctx, false, true);
  if (out.dtype !== dtype || out.shape.length !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new Error(
      `${what}: expected a ${dtype} tensor of shape ${fmt(shape)}, received ${out.dtype} ${fmt(out.shape)}`,
    );
  }
  if (elementStorage(ctx, dtype) === 'f16-packed') rec.clear(out.binding);
  return out as Tensor<D>;
}

/**
 * Checks the `out` option of an op with several results: undefined, or an object of some of
 * `keys`. A bare tensor (the `out` of single-result ops) or a misspelt key would otherwise be
 * ignored silently.
 */
export function checkResults(op: string, out: unknown, keys: readonly string[]): void {
  if (out === undefined) return;
  const what =
    typeof out !== 'object' || out === null
      ? String(out === null ? null : typeof out)
      : out instanceof Tensor
        ? `a Tensor (write { ${keys[0]}: tensor })`
        : Object.keys(out)
            .filter((key) => !keys.includes(key))
            .map((key) => `the key '${key}'`)[0];
  if (what !== undefined) {
    throw new Error(
      `${op}: options.out must be an object { ${keys.map((k) => `${k}?`).join(', ')} }, received ${what}`,
    );
  }
}

/**
 * Submits `rec` (records it into `encoder` when given); when that fails, destroys `made`, the
 * result tensors the call created (not the caller's `out` tensors), and rethrows.
 */
export async function submitOrFree(
  rec: Recording,
  encoder: GPUCommandEncoder | undefined,
  made: readonly (Tensor | undefined)[],
): Promise<void> {
  try {
    await rec.submit(encoder);
  } catch (e) {
    for (const t of made) t?.destroy();
    throw e;
  }
}
