import type { HostResult, HostTensor } from './host';

/** Softmax over the last axis in float64. A row that is all -Infinity gives zeros. */
export function softmaxCpu(x: HostTensor): HostResult {
  const n = x.shape[x.shape.length - 1];
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.data.length / n; r++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j++) {
      const v = Number(x.data[r * n + j]);
      if (!(v <= max)) max = v;
    }
    if (max === Number.NEGATIVE_INFINITY) continue;
    let sum = 0;
    for (let j = 0; j < n; j++) {
      out[r * n + j] = Math.exp(Number(x.data[r * n + j]) - max);
      sum += out[r * n + j];
    }
    for (let j = 0; j < n; j++) out[r * n + j] /= sum;
  }
  return { data: out, shape: [...x.shape] };
}
