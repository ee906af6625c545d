import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

export interface LinearCpuOptions {
  /** [N] */
  bias?: HostTensor;
  activation?: 'relu' | 'gelu';
  /** [..., N], added last */
  residual?: HostTensor;
}

/**
 * PyTorch's Linear in float64: x [..., K], w [N, K] -> act(x Wᵀ + bias) + residual [..., N].
 * 'gelu' is the tanh approximation (PyTorch's approximate='tanh').
 */
export function linearCpu(x: HostTensor, w: HostTensor, options: LinearCpuOptions = {}): HostResult {
  const K = x.shape[x.shape.length - 1];
  if (w.shape.length !== 2 || w.shape[1] !== K) {
    throw new Error(`linearCpu: w must have shape [N, ${K}], received ${fmt(w.shape)}`);
  }
  const N = w.shape[0];
  const rows = x.data.length / K;
  const out = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let acc = options.bias ? Number(options.bias.data[n]) : 0;
      for (let i = 0; i < K; i++) acc += Number(x.data[r * K + i]) * Number(w.data[n * K + i]);
      if (options.activation === 'relu') acc = Math.max(acc, 0);
      if (options.activation === 'gelu') {
        acc = 0.5 * acc * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (acc + 0.044715 * acc ** 3)));
      }
      if (options.residual) acc += Number(options.residual.data[r * N + n]);
      out[r * N + n] = acc;
    }
  }
  return { data: out, shape: [...x.shape.slice(0, -1), N] };
}
