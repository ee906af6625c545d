import { broadcastStrides, expectRank, fmt } from '../shape';
import { type HostResult, type HostTensor, isBool } from './host';

export interface AttentionCpuOptions {
  scale?: number;
  causal?: boolean;
  /** Boolean (true = may attend) or additive mask, broadcastable to [B, Hq, Lq, Lk]. */
  mask?: HostTensor;
}

export interface AttentionCpuResult {
  /** [B, Hq, Lq, Dv] */
  output: HostResult;
  /** [B, Hq, Lq], the natural-log sum of exp of the scaled, masked scores; -Infinity for empty rows. */
  lse: HostResult;
  /** [B, Hq, Lq, Lk], the softmax weights; a row of zeros where nothing may be attended. */
  weights: HostResult;
}

/**
 * Scaled dot-product attention in float64: the ground truth every GPU path is checked against.
 * q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv]. Same semantics as `attention`.
 */
export function attentionCpu(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  options: AttentionCpuOptions = {},
): AttentionCpuResult {
  expectRank('attentionCpu q', q.shape, 4, 'B, Hq, Lq, D');
  expectRank('attentionCpu k', k.shape, 4, 'B, Hkv, Lk, D');
  expectRank('attentionCpu v', v.shape, 4, 'B, Hkv, Lk, Dv');
  const [B, Hq, Lq, D] = q.shape;
  const [, Hkv, Lk] = k.shape;
  const Dv = v.shape[3];
  if (k.shape[0] !== B || k.shape[3] !== D || Hq % Hkv !== 0) {
    throw new Error(`attentionCpu k: shape ${fmt(k.shape)} does not fit q ${fmt(q.shape)}`);
  }
  if (v.shape[0] !== B || v.shape[1] !== Hkv || v.shape[2] !== Lk) {
    throw new Error(`attentionCpu v: shape ${fmt(v.shape)} does not fit k ${fmt(k.shape)}`);
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const mask = options.mask;
  const ms = mask ? broadcastStrides('attentionCpu mask', mask.shape, [B, Hq, Lq, Lk]) : [0, 0, 0, 0];
  const boolMask = mask ? isBool(mask) : false;

  const output = new Float64Array(B * Hq * Lq * Dv);
  const lse = new Float64Array(B * Hq * Lq);
  const weights = new Float64Array(B * Hq * Lq * Lk);
  const s = new Float64Array(Lk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < Lk; j++) {
          let allowed = !options.causal || j <= i + (Lk - Lq);
          let bias = 0;
          if (mask) {
            const m = mask.data[b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3]];
            if (boolMask) allowed &&= Boolean(m);
            else bias = Number(m);
          }
          if (!allowed) {
            s[j] = Number.NEGATIVE_INFINITY;
            continue;
          }
          let dot = 0;
          for (let d = 0; d < D; d++) {
            dot += Number(q.data[row * D + d]) * Number(k.data[((b * Hkv + hk) * Lk + j) * D + d]);
          }
          s[j] = dot * scale + bias;
          if (!(s[j] <= max)) max = s[j]; // a NaN score becomes the max, so the row turns NaN
        }
        if (max === Number.NEGATIVE_INFINITY) {
          lse[row] = Number.NEGATIVE_INFINITY; // nothing may be attended: zero output, no NaN
          continue;
        }
        let sum = 0;
        for (let j = 0; j < Lk; j++) {
          const p = s[j] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(s[j] - max);
          weights[row * Lk + j] = p;
          sum += p;
        }
        lse[row] = max + Math.log(sum);
        for (let j = 0; j < Lk; j++) {
          const p = weights[row * Lk + j] / sum;
          weights[row * Lk + j] = p;
          if (p === 0) continue;
          for (let d = 0; d < Dv; d++) {
            output[row * Dv + d] += p * Number(v.data[((b * Hkv + hk) * Lk + j) * Dv + d]);
          }
        }
      }
    }
  }
  return {
    output: { data: output, shape: [B, Hq, Lq, Dv] },
    lse: { data: lse, shape: [B, Hq, Lq] },
    weights: { data: weights, shape: [B, Hq, Lq, Lk] },
  };
}
