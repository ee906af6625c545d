import {
  checkTransformerConfig,
  type TransformerConfig,
  transformerParamShapes,
} from '../train/transformer_config';
import { attentionCpu } from './attention';
import { attentionBackwardCpu } from './attention_backward';
import { softmaxCrossEntropyCpu } from './cross_entropy';
import { embeddingBackwardCpu, embeddingCpu } from './embedding';
import type { HostResult } from './host';
import { layerNormBackwardCpu, layerNormCpu } from './layer_norm';
import { linearBackwardCpu, linearCpu } from './linear';

export interface TransformerCpuResult {
  loss: number;
  /** [B, L, vocab] */
  logits: HostResult;
  /** d loss / d parameter by name */
  grads: Record<string, Float64Array>;
}

const split = (x: Float64Array, B: number, L: number, H: number): HostResult => {
  const d = x.length / (B * L * H);
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < d; i++) out[((b * H + h) * L + l) * d + i] = x[((b * L + l) * H + h) * d + i];
  return { data: out, shape: [B, H, L, d] };
};

const merge = (x: Float64Array, B: number, L: number, H: number): HostResult => {
  const d = x.length / (B * L * H);
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < d; i++) out[((b * L + l) * H + h) * d + i] = x[((b * H + h) * L + l) * d + i];
  return { data: out, shape: [B, L, H * d] };
};

const add = (a: HostResult, b: HostResult): HostResult => ({
  data: a.data.map((x, i) => x + b.data[i]),
  shape: a.shape,
});

/**
 * The demo transformer (src/train/transformer.ts) in float64: loss, logits and every parameter's
 * gradient for ids, targets [B, L] (targets -1 ignored), with causal attention through
 * attentionCpu / attentionBackwardCpu.
 */
export function transformerCpu(
  config: TransformerConfig,
  weights: Record<string, ArrayLike<number>>,
  ids: ArrayLike<number>,
  targets: ArrayLike<number>,
  shape: readonly [number, number],
): TransformerCpuResult {
  checkTransformerConfig('transformerCpu', config);
  const [B, L] = shape;
  const H = config.heads;
  const W = (name: string) => {
    const spec = transformerParamShapes(config).find(([n]) => n === name)!;
    return { data: weights[name], shape: spec[1] };
  };
  const idT = { data: ids, shape: [B, L] };
  const posT = { data: Array.from({ length: B * L }, (_, i) => i % L), shape: [B, L] };
  let h = add(embeddingCpu(idT, W('tok_emb.weight')), embeddingCpu(posT, W('pos_emb.weight')));
  const saved: Record<string, HostResult>[] = [];
  for (let i = 0; i < config.layers; i++) {
    const p = `layers.${i}.`;
    const a = layerNormCpu(h, W(`${p}ln1.weight`), W(`${p}ln1.bias`));
    const proj = (n: string) =>
      split(linearCpu(a, W(`${p}attn.${n}.weight`), { bias: W(`${p}attn.${n}.bias`) }).data, B, L, H);
    const q = proj('q_proj');
    const k = proj('k_proj');
    const v = proj('v_proj');
    const o = attentionCpu(q, k, v, { causal: true }).output;
    const om = merge(o.data, B, L, H);
    const h1 = linearCpu(om, W(`${p}attn.out_proj.weight`), {
      bias: W(`${p}attn.out_proj.bias`),
      residual: h,
    });
    const c = layerNormCpu(h1, W(`${p}ln2.weight`), W(`${p}ln2.bias`));
    const f = linearCpu(c, W(`${p}mlp.fc1.weight`), { bias: W(`${p}mlp.fc1.bias`), activation: 'gelu' });
    const h2 = linearCpu(f, W(`${p}mlp.fc2.weight`), { bias: W(`${p}mlp.fc2.bias`), residual: h1 });
    saved.push({ h, a, q, k, v, om, h1, c, f });
    h = h2;
  }
  const hf = layerNormCpu(h, W('ln_f.weight'), W('ln_f.bias'));
  const logits = linearCpu(hf, W('head.weight'));
  const ce = softmaxCrossEntropyCpu(logits, { data: targets, shape: [B, L] });

  const grads: Record<string, Float64Array> = {};
  const gHead = linearBackwardCpu(hf, W('head.weight'), ce.dlogits);
  grads['head.weight'] = gHead.dweight.data;
  const gf = layerNormBackwardCpu(h, W('ln_f.weight'), gHead.dx);
  grads['ln_f.weight'] = gf.dweight.data;
  grads['ln_f.bias'] = gf.dbias!.data;
  let dh = gf.dx;
  for (let i = config.layers - 1; i >= 0; i--) {
    const p = `layers.${i}.`;
    const s = saved[i];
    const g2 = linearBackwardCpu(s.f, W(`${p}mlp.fc2.weight`), dh, { bias: W(`${p}mlp.fc2.bias`) });
    grads[`${p}mlp.fc2.weight`] = g2.dweight.data;
    grads[`${p}mlp.fc2.bias`] = g2.dbias!.data;
    const g1 = linearBackwardCpu(s.c, W(`${p}mlp.fc1.weight`), g2.dx, {
      bias: W(`${p}mlp.fc1.bias`),
      activation: 'gelu',
    });
    grads[`${p}mlp.fc1.weight`] = g1.dweight.data;
    grads[`${p}mlp.fc1.bias`] = g1.dbias!.data;
    const gl2 = layerNormBackwardCpu(s.h1, W(`${p}ln2.weight`), g1.dx);
    grads[`${p}ln2.weight`] = gl2.dweight.data;
    grads[`${p}ln2.bias`] = gl2.dbias!.data;
    const dh1 = add(dh, gl2.dx);
    const go = linearBackwardCpu(s.om, W(`${p}attn.out_proj.weight`), dh1, {
      bias: W(`${p}attn.out_proj.bias`),
    });
    grads[`${p}attn.out_proj.weight`] = go.dweight.data;
    grads[`${p}attn.out_proj.bias`] = go.dbias!.data;
    const d = attentionBackwardCpu(s.q, s.k, s.v, split(go.dx.data, B, L, H), { causal: true });
    let da: HostResult | undefined;
    for (const [n, dn] of [
      ['q_proj', d.dq],
      ['k_proj', d.dk],
      ['v_proj', d.dv],
    ] as const) {
      const gp = linearBackwardCpu(s.a, W(`${p}attn.${n}.weight`), merge(dn.data, B, L, H), {
        bias: W(`${p}attn.${n}.bias`),
      });
      grads[`${p}attn.${n}.weight`] = gp.dweight.data;
      grads[`${p}attn.${n}.bias`] = gp.dbias!.data;
      da = da ? add(da, gp.dx) : gp.dx;
    }
    const gl1 = layerNormBackwardCpu(s.h, W(`${p}ln1.weight`), da!);
    grads[`${p}ln1.weight`] = gl1.dweight.data;
    grads[`${p}ln1.bias`] = gl1.dbias!.data;
    dh = add(dh1, gl1.dx);
  }
  grads['tok_emb.weight'] = embeddingBackwardCpu(idT, dh, config.vocab).data;
  grads['pos_emb.weight'] = embeddingBackwardCpu(posT, dh, config.maxLen).data;
  return { loss: ce.loss, logits, grads };
}
