// Central finite differences for checking the float64 reference backwards.
import { expectClose } from './helpers';

/** ∂f/∂x_i for every i by central differences of step h. */
export function numericGradient(
  f: (x: Float64Array) => number,
  x: ArrayLike<number>,
  h = 1e-6,
): Float64Array {
  const base = Float64Array.from(x);
  return base.map((_, i) => {
    const up = base.slice();
    const down = base.slice();
    up[i] += h;
    down[i] -= h;
    return (f(up) - f(down)) / (2 * h);
  });
}

/** Σ out_i · w_i: a scalar whose gradient with respect to out is w (the upstream gradient). */
export function dot(out: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  return s;
}

/** Asserts an analytic gradient matches central differences (float64: 1e-6 + 1e-5 |ref|). */
export function expectGradient(analytic: ArrayLike<number>, numeric: ArrayLike<number>, label: string): void {
  expectClose(analytic, numeric, { atol: 1e-6, rtol: 1e-5 }, label);
}
