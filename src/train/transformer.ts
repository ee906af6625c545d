import accumulateSource from '../../shaders/accumulate.wgsl?raw';
import type { Context } from '../context';
import { type IntTensor, intTensor } from '../int_tensor';
import { softmaxCrossEntropy } from '../ops/cross_entropy';
import { embedding, embeddingBackward } from '../ops/embedding';
import { mergeHeads, splitHeads } from '../ops/heads';
import { layerNorm, layerNormBackward } from '../ops/layer_norm';
import { linear } from '../ops/linear';
import { linearBackward } from '../ops/linear_backward';
import { WG } from '../ops/train_common';
import { Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { type AttentionSaved, type AttentionStep, fusedAttention } from './attention_step';
import { checkTransformerConfig, type TransformerConfig, transformerParamShapes } from './transformer_config';

/** Parameters by name (see transformerParamShapes), f32 tensors. */
export type TransformerParams = Record<string, Tensor>;

export interface TransformerStepOptions {
  /** The attention forward and backward; default {@link fusedAttention}. */
  attention?: AttentionStep;
  /** Compute gradients (default true); false gives the loss and logits only. */
  backward?: boolean;
  /** Return every layer's attention weights [B, H, L, L] (when the attention step gives them). */
  returnWeights?: boolean;
}

export interface TransformerStepResult {
  /** [1] the mean cross-entropy over targets that are not -1 */
  loss: Tensor;
  /** [B, L, vocab] */
  logits: Tensor;
  /** d loss / d parameter, by parameter name; with `backward` */
  grads?: Record<string, Tensor>;
  /** per layer [B, H, L, L]; with `returnWeights` */
  weights?: Tensor[];
}

/** Uploads weights (by name, in the shapes of transformerParamShapes) as f32 tensors. */
export function uploadTransformer(
  ctx: Context,
  config: TransformerConfig,
  weights: Record<string, ArrayLike<number>>,
): TransformerParams {
  checkTransformerConfig('uploadTransformer', config);
  const out: TransformerParams = {};
  for (const [name, shape] of transformerParamShapes(config)) {
    const w = weights[name];
    if (!w) throw new Error(`uploadTransformer: weights['${name}'] is missing (shape ${fmt(shape)})`);
    out[name] = ctx.tensor(Float32Array.from(w), shape, { label: name });
  }
  return out;
}

/** a + b, elementwise, into a new tensor. */
async function add(a: Tensor, b: Tensor): Promise<Tensor> {
  const out = a.ctx.zeros(a.shape, 'f32', 'add');
  const rec = new Recording(a.ctx, 'add');
  rec.copy(a.buffer, a.byteOffset, out.buffer, out.byteOffset, a.size * 4);
  rec.dispatch({
    name: 'accumulate',
    sources: [accumulateSource],
    constants: { WG },
    uniforms: { total: a.size },
    bindings: [out.binding, b.binding],
    workgroups: Math.ceil(a.size / WG),
  });
  await rec.submit();
  return out;
}

interface LayerSaved {
  h: Tensor;
  a: Tensor;
  attention: AttentionSaved;
  om: Tensor;
  h1: Tensor;
  c: Tensor;
  f: Tensor;
}

/**
 * One forward (and backward) pass of the demo transformer on the GPU: ids, targets [B, L]
 * (IntTensors; target -1 = ignored) -> mean cross-entropy, logits and the gradient of every
 * parameter. Pre-LayerNorm blocks: h += out_proj(attention(q, k, v of ln1(h))), h += fc2(gelu(fc1(
 * ln2(h)))); logits = head(ln_f(h)). The attention step is a parameter so that a fused
 * attentionBackward can replace the composed one. Everything but the results is freed.
 */
export async function transformerStep(
  params: TransformerParams,
  config: TransformerConfig,
  ids: IntTensor,
  targets: IntTensor,
  options: TransformerStepOptions = {},
): Promise<TransformerStepResult> {
  checkTransformerConfig('transformerStep', config);
  const attention = options.attention ?? fusedAttention;
  const wantGrads = options.backward ?? true;
  if (ids.rank !== 2 || fmt(targets.shape) !== fmt(ids.shape)) {
    throw new Error(
      `transformerStep: ids and targets must both have shape [B, L], received ${fmt(ids.shape)} and ${fmt(targets.shape)}`,
    );
  }
  const [B, L] = ids.shape;
  if (L > config.maxLen) {
    throw new Error(
      `transformerStep: ids: sequence length must be <= maxLen ${config.maxLen}, received ${L}`,
    );
  }
  for (const [name, shape] of transformerParamShapes(config)) {
    const t = params[name];
    if (!t || fmt(t.shape) !== fmt(shape)) {
      throw new Error(
        `transformerStep: params['${name}'] must have shape ${fmt(shape)}, received ${t ? fmt(t.shape) : 'nothing'}`,
      );
    }
  }
  const { ctx } = ids;
  const H = config.heads;
  const P = (name: string) => params[name];
  const positions = intTensor(
    ctx,
    Int32Array.from({ length: B * L }, (_, i) => i % L),
    [B, L],
  );
  try {
    const flat = await ctx.scope(async () => {
      const kept: Record<string, Tensor> = {};
      let h = await add(
        await embedding(ids, P('tok_emb.weight')),
        await embedding(positions, P('pos_emb.weight')),
      );
      const saved: LayerSaved[] = [];
      for (let i = 0; i < config.layers; i++) {
        const p = `layers.${i}.`;
        const a = await layerNorm(h, P(`${p}ln1.weight`), P(`${p}ln1.bias`));
        const proj = async (n: string) =>
          splitHeads(await linear(a, P(`${p}attn.${n}.weight`), { bias: P(`${p}attn.${n}.bias`) }), H);
        const q = await proj('q_proj');
        const k = await proj('k_proj');
        const v = await proj('v_proj');
        const att = await attention.forward(q, k, v, options.returnWeights);
        if (options.returnWeights && att.weights) kept[`weights.${i}`] = att.weights;
        const om = await mergeHeads(att.saved.output);
        const h1 = await linear(om, P(`${p}attn.out_proj.weight`), {
          bias: P(`${p}attn.out_proj.bias`),
          residual: h,
        });
        const c = await layerNorm(h1, P(`${p}ln2.weight`), P(`${p}ln2.bias`));
        const f = await linear(c, P(`${p}mlp.fc1.weight`), {
          bias: P(`${p}mlp.fc1.bias`),
          activation: 'gelu',
        });
        const h2 = await linear(f, P(`${p}mlp.fc2.weight`), { bias: P(`${p}mlp.fc2.bias`), residual: h1 });
        saved.push({ h, a, attention: att.saved, om, h1, c, f });
        h = h2;
      }
      const hf = await layerNorm(h, P('ln_f.weight'), P('ln_f.bias'));
      const logits = await linear(hf, P('head.weight'));
      const ce = await softmaxCrossEntropy(logits, targets);
      kept.loss = ce.loss;
      kept.logits = logits;
      if (!wantGrads) return kept;

      const grad = (name: string, t: Tensor) => {
        kept[`grad.${name}`] = t;
      };
      const gHead = await linearBackward(hf, P('head.weight'), ce.dlogits);
      grad('head.weight', gHead.dweight);
      const gf = await layerNormBackward(h, P('ln_f.weight'), gHead.dx);
      grad('ln_f.weight', gf.dweight);
      grad('ln_f.bias', gf.dbias!);
      let dh = gf.dx;
      for (let i = config.layers - 1; i >= 0; i--) {
        const p = `layers.${i}.`;
        const s = saved[i];
        const g2 = await linearBackward(s.f, P(`${p}mlp.fc2.weight`), dh, { bias: P(`${p}mlp.fc2.bias`) });
        grad(`${p}mlp.fc2.weight`, g2.dweight);
        grad(`${p}mlp.fc2.bias`, g2.dbias!);
        const g1 = await linearBackward(s.c, P(`${p}mlp.fc1.weight`), g2.dx, {
          bias: P(`${p}mlp.fc1.bias`),
          activation: 'gelu',
        });
        grad(`${p}mlp.fc1.weight`, g1.dweight);
        grad(`${p}mlp.fc1.bias`, g1.dbias!);
        const gl2 = await layerNormBackward(s.h1, P(`${p}ln2.weight`), g1.dx);
        grad(`${p}ln2.weight`, gl2.dweight);
        grad(`${p}ln2.bias`, gl2.dbias!);
        const dh1 = await add(dh, gl2.dx);
        const go = await linearBackward(s.om, P(`${p}attn.out_proj.weight`), dh1, {
          bias: P(`${p}attn.out_proj.bias`),
        });
        grad(`${p}attn.out_proj.weight`, go.dweight);
        grad(`${p}attn.out_proj.bias`, go.dbias!);
        const d = await attention.backward(s.attention, await splitHeads(go.dx, H));
        let da: Tensor | undefined;
        for (const [n, dn] of [
          ['q_proj', d.dq],
          ['k_proj', d.dk],
          ['v_proj', d.dv],
        ] as const) {
          const gp = await linearBackward(s.a, P(`${p}attn.${n}.weight`), await mergeHeads(dn), {
            bias: P(`${p}attn.${n}.bias`),
          });
          grad(`${p}attn.${n}.weight`, gp.dweight);
          grad(`${p}attn.${n}.bias`, gp.dbias!);
          da = da ? await add(da, gp.dx) : gp.dx;
        }
        const gl1 = await layerNormBackward(s.h, P(`${p}ln1.weight`), da!);
        grad(`${p}ln1.weight`, gl1.dweight);
        grad(`${p}ln1.bias`, gl1.dbias!);
        dh = await add(dh1, gl1.dx);
      }
      grad('tok_emb.weight', await embeddingBackward(ids, dh, config.vocab));
      grad('pos_emb.weight', await embeddingBackward(positions, dh, config.maxLen));
      return kept;
    });
    const result: TransformerStepResult = { loss: flat.loss, logits: flat.logits };
    if (wantGrads) {
      result.grads = Object.fromEntries(
        transformerParamShapes(config).map(([name]) => [name, flat[`grad.${name}`]]),
      );
    }
    if (options.returnWeights) {
      result.weights = Array.from({ length: config.layers }, (_, i) => flat[`weights.${i}`]).filter(Boolean);
    }
    return result;
  } finally {
    positions.destroy();
  }
}
