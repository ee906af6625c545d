import type { SoftmaxSettings } from '../options';
import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

/** The options of {@link softmaxCpu}: those of the GPU op's math. */
export type SoftmaxOptions = SoftmaxSettings;

/**
 * Softmax over the last axis in float64. -Infinity entries (and causally masked ones) get weight 0;
 * a row with nothing left gives zeros.
 */
export function softmaxCpu(x: HostTensor, options: SoftmaxOptions = {}): HostResult {
  const rank = x.shape.length;
  if (options.causal && rank < 2) {
    throw new Error(`softmaxCpu: causal needs x of rank >= 2 [..., Lq, Lk], received shape ${fmt(x.shape)}`);
  }
  const scale = options.scale ?? 1;
  const n = x.shape[rank - 1];
  const lq = options.causal ? x.shape[rank - 2] : 1;
  const out = new Float64Array(x.data.length);
  const row = new Float64Array(n);
  for (let r = 0; r < x.data.length / n; r++) {
    const limit = options.causal ? (r % lq) + n - lq : n - 1;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      const v = Number(x.data[r * n + j]);
      row[j] = j > limit || v === Number.NEGATIVE_INFINITY ? Number.NEGATIVE_INFINITY : v * scale;
      if (!(row[j] <= max)) max = row[j];
    }
    if (max === Number.NEGATIVE_INFINITY) continue;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      out[r * n + j] = Math.exp(row[j] - max);
      sum += out[r * n + j];
    }
    for (let j = 0; j < n; j++) out[r * n + j] /= sum;
  }
  return { data: out, shape: [...x.shape] };
}

/** Gradient of softmax in float64 from its output y and dy (both [..., n]): scale · y · (dy − Σ dy·y). */
export function softmaxBackwardCpu(
  y: HostTensor,
  dy: HostTensor,
  options: { scale?: number } = {},
): HostResult {
  if (y.data.length !== dy.data.length) {
    throw new Error(`softmaxBackwardCpu: dy must have y's shape ${fmt(y.shape)}, received ${fmt(dy.shape)}`);
  }
  const scale = options.scale ?? 1;
  const n = y.shape[y.shape.length - 1];
  const out = new Float64Array(y.data.length);
  for (let r = 0; r < y.data.length / n; r++) {
    let dot = 0;
    for (let j = 0; j < n; j++) dot += Number(dy.data[r * n + j]) * Number(y.data[r * n + j]);
    for (let j = 0; j < n; j++) {
      out[r * n + j] = scale * Number(y.data[r * n + j]) * (Number(dy.data[r * n + j]) - dot);
    }
  }
  return { data: out, shape: [...y.shape] };
}
