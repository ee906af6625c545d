import type { DropoutOptions } from '../dropout';
import { fromF16Bits } from '../f16';
import type { PyTorchAttentionWeights, SeparateAttentionWeights } from '../layers/multi_head_attention';
import type { ScoringOptionKey } from '../ops/attention_plan';
import { expectRank } from '../shape';
import type { TensorData } from '../tensor';
import { type AttentionCpuOptions, attentionCpu } from './attention';
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

/**
 * What `multiHeadAttentionCpu` takes as weights: its own {@link MultiHeadAttentionCpuWeights}, or the
 * state dicts that `MultiHeadAttention.loadPyTorch` (packed `in_proj_weight`) and `loadSeparate`
 * (`q_proj_weight`, ...) take, read the same way (a Uint16Array holds f16 bits, as for the layer).
 */
export type MultiHeadAttentionCpuWeightsInput =
  | MultiHeadAttentionCpuWeights
  | PyTorchAttentionWeights
  | SeparateAttentionWeights;

// modData is the GPU snippets' data: the reference's JS functions hold their own
export interface MultiHeadAttentionCpuOptions
  extends Pick<AttentionCpuOptions, Exclude<ScoringOptionKey, 'modData'>> {
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
  /**
   * Dropout on the attention probabilities (as `attentionCpu`): what the layer's train forward
   * with `dropout: p` and `dropoutSeed: seed` computes.
   */
  dropout?: DropoutOptions;
}

export interface MultiHeadAttentionCpuResult {
  /** [B, L, E] */
  output: HostResult;
  /** [B, numHeads, L, S], the per-head softmax weights (after dropout, with `dropout`) */
  weights: HostResult;
}

/**
 * nn.MultiheadAttention (batch_first) in float64, with grouped-query heads and rotary embeddings:
 * project x [B, L, E] to q and the memory to k and v, split heads, scaled dot-product attention
 * (same mask rules and sparse options as `attentionCpu`), merge heads, project out.
 */
export function multiHeadAttentionCpu(
  x: HostTensor,
  weightsInput: MultiHeadAttentionCpuWeightsInput,
  options: MultiHeadAttentionCpuOptions,
): MultiHeadAttentionCpuResult {
  expectRank('multiHeadAttentionCpu x', x.shape, 3, 'B, L, E');
  const [B, L] = x.shape;
  const H = options.numHeads;
  const Hkv = options.numKvHeads ?? H;
  const weights = fromStateDict(weightsInput, x.shape[2], H, Hkv);
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
  const { numHeads: _h, numKvHeads: _g, memory: _m, rope: _r, ...attentionOptions } = options;
  const att = attentionCpu(qh, k, v, attentionOptions);
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

const WHAT = 'multiHeadAttentionCpu';

/** A flat state-dict entry as a host tensor of `shape` (f16 bits widened), its length checked. */
function entry(name: string, data: TensorData, shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new Error(
      `${WHAT}: ${name} must have ${n} elements ([${shape.join(', ')}]), received ${data.length}`,
    );
  }
  const values = data instanceof Uint16Array ? Float64Array.from(data, fromF16Bits) : data;
  return { data: values, shape, dtype: 'f32' };
}

function slice(data: TensorData, from: number, to: number): TensorData {
  return ArrayBuffer.isView(data) ? data.subarray(from, to) : data.slice(from, to);
}

/** The weights in `multiHeadAttentionCpu`'s own form, from any of the forms it takes. */
function fromStateDict(
  w: MultiHeadAttentionCpuWeightsInput,
  E: number,
  H: number,
  Hkv: number,
): MultiHeadAttentionCpuWeights {
  if (!('in_proj_weight' in w) && !('q_proj_weight' in w)) return w;
  const Ekv = (Hkv * E) / H;
  let q: TensorData;
  let k: TensorData;
  let v: TensorData;
  if ('in_proj_weight' in w) {
    if (Hkv !== H) {
      throw new Error(
        `${WHAT}: a packed in_proj_weight needs numKvHeads = numHeads, received numKvHeads=${Hkv}, numHeads=${H} (give q_proj_weight, k_proj_weight, v_proj_weight)`,
      );
    }
    entry('in_proj_weight', w.in_proj_weight, [3 * E, E]);
    q = slice(w.in_proj_weight, 0, E * E);
    k = slice(w.in_proj_weight, E * E, 2 * E * E);
    v = slice(w.in_proj_weight, 2 * E * E, 3 * E * E);
  } else {
    ({ q_proj_weight: q, k_proj_weight: k, v_proj_weight: v } = w);
  }
  const features = (name: string, data: TensorData) => {
    const d = data.length / Ekv;
    if (!Number.isInteger(d) || d < 1) {
      throw new Error(
        `${WHAT}: ${name} must have ${Ekv} rows (numKvHeads x head dim), received ${data.length} elements`,
      );
    }
    return d;
  };
  const separate = 'q_proj_weight' in w ? w : undefined;
  let qBias = separate?.q_proj_bias;
  let kBias = separate?.k_proj_bias;
  let vBias = separate?.v_proj_bias;
  const packed = w.in_proj_bias;
  if (packed !== undefined) {
    entry('in_proj_bias', packed, [E + 2 * Ekv]);
    qBias = slice(packed, 0, E);
    kBias = slice(packed, E, E + Ekv);
    vBias = slice(packed, E + Ekv, E + 2 * Ekv);
  }
  const bias = (name: string, data: TensorData | undefined, n: number) =>
    data === undefined ? undefined : entry(name, data, [n]);
  return {
    q: entry('q_proj_weight', q, [E, E]),
    k: entry('k_proj_weight', k, [Ekv, features('k_proj_weight', k)]),
    v: entry('v_proj_weight', v, [Ekv, features('v_proj_weight', v)]),
    out: entry('out_proj.weight', w['out_proj.weight'], [E, E]),
    qBias: bias('q_proj_bias', qBias, E),
    kBias: bias('k_proj_bias', kBias, Ekv),
    vBias: bias('v_proj_bias', vBias, Ekv),
    outBias: bias('out_proj.bias', w['out_proj.bias'], E),
  };
}
