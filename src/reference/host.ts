import type { DType } from '../tensor';

/** A CPU-side n-d array, row-major: what the reference functions take and return. */
export interface HostTensor {
  data: ArrayLike<number | boolean>;
  shape: readonly number[];
  /** 'bool' marks a boolean mask; defaults to 'bool' for Uint8Array or boolean data, else 'f32'. */
  dtype?: DType;
}

/** A float64 result of a reference function. */
export interface HostResult {
  data: Float64Array;
  shape: number[];
}

export function isBool(t: HostTensor): boolean {
  return (
    t.dtype === 'bool' ||
    (t.dtype === undefined && (t.data instanceof Uint8Array || typeof t.data[0] === 'boolean'))
  );
}
