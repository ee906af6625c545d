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

export interface LinearBackwardCpuResult {
  /** [..., K] */
  dx: HostResult;
  /** [N, K] */
  dweight: HostResult;
  /** [N], when the forward had a bias */
  dbias?: HostResult;
  /** [..., N] (= dy), when the forward had a residual */
  dresidual?: HostResult;
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** d/dz of GELU's tanh form, 0.5 z (1 + tanh(c (z + 0.044715 z³))). */
export function geluGradCpu(z: number): number {
  const t = Math.tanh(GELU_C * (z + 0.044715 * z ** 3));
  return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * z * z);
}

/**
 * Gradients of {@link linearCpu} in float64 for the upstream gradient dy [..., N]:
 * dz = dy · act'(z) with z = x Wᵀ + bias, dx = dz W, dW = dzᵀ x, dbias = Σ_rows dz, dresidual = dy.
 * ReLU's derivative at z = 0 is taken as 0 (PyTorch's).
 */
export function linearBackwardCpu(
  x: HostTensor,
  w: HostTensor,
  dy: HostTensor,
  options: LinearCpuOptions = {},
): LinearBackwardCpuResult {
  const z = linearCpu(x, w, { bias: options.bias });
  const [N, K] = w.shape;
  const rows = x.data.length / K;
  if (dy.data.length !== rows * N) {
    throw new Error(`linearBackwardCpu: dy must have shape ${fmt(z.shape)}, received ${fmt(dy.shape)}`);
  }
  const dz = new Float64Array(rows * N);
  for (let e = 0; e < dz.length; e++) {
    const d = Number(dy.data[e]);
    dz[e] =
      options.activation === 'relu'
        ? z.data[e] > 0
          ? d
          : 0
        : options.activation === 'gelu'
          ? d * geluGradCpu(z.data[e])
          : d;
  }
  const dx = new Float64Array(rows * K);
  const dweight = new Float64Array(N * K);
  const dbias = new Float64Array(N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      const g = dz[r * N + n];
      dbias[n] += g;
      for (let k = 0; k < K; k++) {
        dx[r * K + k] += g * Number(w.data[n * K + k]);
        dweight[n * K + k] += g * Number(x.data[r * K + k]);
      }
    }
  }
  return {
    dx: { data: dx, shape: [...x.shape] },
    dweight: { data: dweight, shape: [N, K] },
    ...(options.bias ? { dbias: { data: dbias, shape: [N] } } : {}),
    ...(options.residual ? { dresidual: { data: Float64Array.from(dy.data, Number), shape: z.shape } } : {}),
  };
}
