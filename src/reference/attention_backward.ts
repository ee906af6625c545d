import { fmt } from '../shape';
import { type AttentionCpuOptions, attentionSizes, rowScores, scoreRules } from './attention';
import type { HostResult, HostTensor } from './host';

export interface AttentionBackwardCpuResult {
  /** [B, Hq, Lq, D] */
  dq: HostResult;
  /** [B, Hkv, Lk, D], summed over the query heads that read each kv head. */
  dk: HostResult;
  /** [B, Hkv, Lk, Dv], summed over the query heads that read each kv head. */
  dv: HostResult;
  /** [Hq], only with `sinks`: d loss / d sinks[h] = -Σ_{b,i} P_sink(b, h, i) · delta(b, h, i). */
  dsinks?: HostResult;
}

/**
 * Gradients of attention in float64, given dOutput = d loss / d output [B, Hq, Lq, Dv]; the forward
 * (`attentionCpu` with the same options) is recomputed. Per row with P = the softmax, Z = the
 * dropout factors (0 or 1 / (1 - p); 1 without dropout), O = output: delta = Σ_d dO·O,
 * dV += (P Z)ᵀ dO, dP = (dO Vᵀ) Z, dS = P (dP - delta), d(scale·q·k) = dS · d modify/ds
 * (softcap: 1 - tanh²(s/c); scoreMod: `scoreModGrad` or a central finite difference), dQ = scale · dS K,
 * dK = scale · dSᵀ Q; with sinks P_sink = exp(sink - lse) and dsink = -Σ P_sink · delta.
 * `modDataGrad` hears P (dP - delta), d loss / d scoreMod's output, of each attended key.
 * Rows with no allowed key get zero gradients. The additive mask and ALiBi get no gradient.
 */
export function attentionBackwardCpu(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  dOutput: HostTensor,
  options: AttentionCpuOptions = {},
): AttentionBackwardCpuResult {
  const what = 'attentionBackwardCpu';
  const sizes = attentionSizes(what, q, k, v);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = sizes;
  const want = [B, Hq, Lq, Dv];
  if (dOutput.shape.length !== 4 || dOutput.shape.some((n, a) => n !== want[a])) {
    throw new Error(
      `${what} dOutput: expected shape ${fmt(want)} (the output's), received ${fmt(dOutput.shape)}`,
    );
  }
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const rules = scoreRules(options, sizes, what);
  const group = Hq / Hkv;

  const dq = new Float64Array(B * Hq * Lq * D);
  const dk = new Float64Array(B * Hkv * Lk * D);
  const dv = new Float64Array(B * Hkv * Lk * Dv);
  const dsinks = rules.hasSinks ? new Float64Array(Hq) : undefined;
  const s = new Float64Array(Lk);
  const raw = new Float64Array(Lk);
  const p = new Float64Array(Lk);
  const z = new Float64Array(Lk);
  const o = new Float64Array(Dv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const { max, sum, lse } = rowScores(rules, q, k, sizes, scale, b, h, i, s, raw);
        if (lse === Number.NEGATIVE_INFINITY) continue; // nothing attended, no sink: zero gradients
        const dO = (d: number) => Number(dOutput.data[row * Dv + d]);
        const vAt = (j: number, d: number) => Number(v.data[((b * Hkv + hk) * Lk + j) * Dv + d]);
        o.fill(0);
        for (let j = 0; j < Lk; j++) {
          p[j] = s[j] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(s[j] - max) / sum;
          z[j] = rules.dropout(b, h, i, j);
          if (p[j] === 0) continue;
          for (let d = 0; d < Dv; d++) o[d] += p[j] * z[j] * vAt(j, d);
        }
        let delta = 0;
        for (let d = 0; d < Dv; d++) delta += dO(d) * o[d];
        if (dsinks) dsinks[h] -= (Math.exp(rules.sink(h) - max) / sum) * delta;
        for (let j = 0; j < Lk; j++) {
          if (p[j] === 0) continue;
          const kv = (b * Hkv + hk) * Lk + j;
          let dp = 0;
          for (let d = 0; d < Dv; d++) {
            dv[kv * Dv + d] += p[j] * z[j] * dO(d);
            dp += dO(d) * vAt(j, d);
          }
          // d loss / d score (also d loss / d scoreMod's output: what follows it adds constants)
          const dScore = p[j] * (dp * z[j] - delta);
          options.modDataGrad?.(rules.capped(raw[j]), b, h, i, j, dScore);
          const ds = dScore * rules.modifyGrad(raw[j], b, h, i, j) * scale;
          for (let d = 0; d < D; d++) {
            dq[row * D + d] += ds * Number(k.data[kv * D + d]);
            dk[kv * D + d] += ds * Number(q.data[row * D + d]);
          }
        }
      }
    }
  }
  return {
    dq: { data: dq, shape: [B, Hq, Lq, D] },
    dk: { data: dk, shape: [B, Hkv, Lk, D] },
    dv: { data: dv, shape: [B, Hkv, Lk, Dv] },
    ...(dsinks ? { dsinks: { data: dsinks, shape: [Hq] } } : {}),
  };
}
