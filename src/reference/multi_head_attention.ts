import { expectRank } from '../shape';
import { attentionCpu } from './attention';
import type { HostResult, HostTensor } from './host';
import { linearCpu } from './linear';
import { type RopeOptions, ropeCpu } from './rope';

/**
 * Projection weights in PyTorch's Linear layout (y = x Wᵀ + b): q [E, E], k [Hkv·Dh, kdim],
 * v [Hkv·Dh, vdim], out [E, E], with Dh = E / numHeads; biases [rows of their weight].
 */
export interface MultiHeadAttentionCpuWeights {
  q: HostTensor;
  k: HostTensor;
  v: HostTensor;
  out: HostTensor;
  qBias?: HostTensor;
  kBias?: HostTensor;
  vBias?: HostTensor;
  outBias?: HostTensor;
}

export interface MultiHeadAttentionCpuOptions {
  numHeads: number;
  /** Heads of k and v (grouped-query attention); divides numHeads. Default numHeads. */
  numKvHeads?: number;
  /** Key and value input [B, S, kdim] (cross-attention), or separate ones; default x itself. */
  memory?: HostTensor | { key: HostTensor; value: HostTensor };
  causal?: boolean;
  /** Boolean (true = may attend) or additive, broadcastable to [B, numHeads, L, S]. */
  mask?: HostTensor;
  /** Rotary embedding of q and k after projection, positions from 0 (offset is ignored). */
  rope?: Omit<RopeOptions, 'offset'>;
}

export interface MultiHeadAttentionCpuResult {
  /** [B, L, E] */
  output: HostResult;
  /** [B, numHeads, L, S], the per-head softmax weights */
  weights: HostResult;
}

/**
 * nn.MultiheadAttention (batch_first) in float64, with grouped-query heads and rotary embeddings:
 * project x [B, L, E] to q and the memory to k and v, split heads, scaled dot-product attention
 * (same mask rules as `attentionCpu`), merge heads, project out.
 */
export function multiHeadAttentionCpu(
  x: HostTensor,
  weights: MultiHeadAttentionCpuWeights,
  options: MultiHeadAttentionCpuOptions,
): MultiHeadAttentionCpuResult {
  expectRank('multiHeadAttentionCpu x', x.shape, 3, 'B, L, E');
  const [B, L] = x.shape;
  const H = options.numHeads;
  const Hkv = options.numKvHeads ?? H;
  const memory = options.memory;
  const [key, value] = !memory ? [x, x] : 'key' in memory ? [memory.key, memory.value] : [memory, memory];
  const q = linearHeads(x, weights.q, weights.qBias, H);
  let k = linearHeads(key, weights.k, weights.kBias, Hkv);
  const v = linearHeads(value, weights.v, weights.vBias, Hkv);
  let qh: HostTensor = q;
  if (options.rope) {
    qh = ropeCpu(q, options.rope);
    k = ropeCpu(k, options.rope);
  }
  const att = attentionCpu(qh, k, v, { causal: options.causal, mask: options.mask });
  // merge heads: [B, H, L, Dh] -> [B, L, H·Dh]
  const Dh = att.output.shape[3];
  const merged = new Float64Array(B * L * H * Dh);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let l = 0; l < L; l++)
        for (let d = 0; d < Dh; d++)
          merged[(b * L + l) * H * Dh + h * Dh + d] = att.output.data[((b * H + h) * L + l) * Dh + d];
  const output = linearHeads({ data: merged, shape: [B, L, H * Dh] }, weights.out, weights.outBias, 1);
  return { output: { data: output.data, shape: [B, L, output.shape[3]] }, weights: att.weights };
}

/** y = x Wᵀ + b for x [B, L, K], w [N, K], split into heads: [B, heads, L, N / heads]. */
function linearHeads(x: HostTensor, w: HostTensor, bias: HostTensor | undefined, heads: number): HostResult {
  expectRank('multiHeadAttentionCpu input', x.shape, 3, 'B, L, K');
  const [B, L] = x.shape;
  const y = linearCpu(x, w, { bias });
  const N = y.shape[2];
  const d = N / heads;
  const out = new Float64Array(B * L * N);
  for (let r = 0; r < B * L; r++) {
    const b = Math.floor(r / L);
    const l = r % L;
    for (let n = 0; n < N; n++)
      out[((b * heads + Math.floor(n / d)) * L + l) * d + (n % d)] = y.data[r * N + n];
  }
  return { data: out, shape: [B, heads, L, d] };
}
