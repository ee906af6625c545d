import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

export interface SoftmaxCrossEntropyCpuResult {
  /** The mean of -log softmax(logits)[target] over rows whose target is not -1; NaN if none. */
  loss: number;
  /** d loss / d logits [..., V]: (softmax - onehot(target)) / count, zero rows where ignored. */
  dlogits: HostResult;
}

/**
 * PyTorch's cross_entropy(logits, targets, ignore_index=-1, reduction='mean') and its gradient in
 * float64: logits [..., V], targets [...] integers in [0, V) or -1 (ignored).
 */
export function softmaxCrossEntropyCpu(
  logits: HostTensor,
  targets: HostTensor,
): SoftmaxCrossEntropyCpuResult {
  const V = logits.shape[logits.shape.length - 1];
  const rows = targets.data.length;
  if (logits.shape.length < 1 || rows * V !== logits.data.length) {
    throw new Error(
      `softmaxCrossEntropyCpu: logits must have shape [${[...targets.shape, 'V'].join(', ')}], received ${fmt(logits.shape)}`,
    );
  }
  const ts = Array.from(targets.data as ArrayLike<number>, (v, i) => {
    const t = Number(v);
    if (!Number.isInteger(t) || t < -1 || t >= V) {
      throw new Error(
        `softmaxCrossEntropyCpu: targets[${i}] must be -1 or an integer in [0, ${V}), received ${v}`,
      );
    }
    return t;
  });
  const count = ts.filter((t) => t >= 0).length;
  const dlogits = new Float64Array(rows * V);
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    if (ts[r] < 0) continue;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < V; j++) max = Math.max(max, Number(logits.data[r * V + j]));
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(Number(logits.data[r * V + j]) - max);
    const lse = max + Math.log(s);
    sum += lse - Number(logits.data[r * V + ts[r]]);
    for (let j = 0; j < V; j++) {
      dlogits[r * V + j] = (Math.exp(Number(logits.data[r * V + j]) - lse) - (j === ts[r] ? 1 : 0)) / count;
    }
  }
  return { loss: sum / count, dlogits: { data: dlogits, shape: [...logits.shape] } };
}
