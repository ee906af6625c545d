// The attention of a training step: fused (attention + attentionBackward from the forward's lse,
// the default) or composed of matmul and softmax (which stores the L x L probabilities).
import { attention } from '../ops/attention';
import { attentionBackward } from '../ops/attention_backward';
import { matmul } from '../ops/matmul';
import { softmax } from '../ops/softmax';
import { softmaxBackward } from '../ops/softmax_backward';
import type { Tensor } from '../tensor';

/** What an attention forward keeps for its backward. */
export interface AttentionSaved {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  output: Tensor;
  /** Tensors the step made for its backward (the probabilities, or a row log-sum-exp). */
  extra: Tensor[];
}

/**
 * Causal self-attention for training: q, k, v [B, H, L, d] -> output [B, H, L, d], scale
 * 1/sqrt(d), and its backward -> dq, dk, dv [B, H, L, d]. The caller destroys `extra` (and the
 * gradients) when done. With `withWeights`, the forward also gives the weights [B, H, L, L].
 */
export interface AttentionStep {
  /** Label for logs. */
  readonly name: string;
  forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    withWeights?: boolean,
  ): Promise<{ saved: AttentionSaved; weights?: Tensor }>;
  backward(saved: AttentionSaved, dOutput: Tensor): Promise<{ dq: Tensor; dk: Tensor; dv: Tensor }>;
}

/**
 * The fused attention: `attention` keeps the row log-sum-exp, `attentionBackward` recomputes the
 * probabilities from it (no L x L buffer, unless the weights are asked for to be shown).
 */
export const fusedAttention: AttentionStep = {
  name: 'fused (attention + attentionBackward)',
  async forward(q, k, v, withWeights = false) {
    const r = await attention(q, k, v, { causal: true, returnLse: true, returnWeights: withWeights });
    return { saved: { q, k, v, output: r.output, extra: [r.lse] }, weights: r.weights };
  },
  backward(saved, dOutput) {
    const { q, k, v, output } = saved;
    return attentionBackward(q, k, v, output, dOutput, { causal: true, lse: saved.extra[0] });
  },
};

/**
 * Attention composed of matmul, softmax and softmaxBackward: stores the [B, H, L, L]
 * probabilities (fine for the short sequences of the demo; a fused backward recomputes them).
 * `weights` is the probabilities themselves (do not destroy them separately).
 */
export const composedAttention: AttentionStep = {
  name: 'composed (matmul + softmax)',
  async forward(q, k, v) {
    const scale = 1 / Math.sqrt(q.shape[3]);
    const scores = await matmul(q, k, { transposeB: true, alpha: scale }); // [B, H, L, L]
    const probs = await softmax(scores, { causal: true });
    scores.destroy();
    const output = await matmul(probs, v);
    return { saved: { q, k, v, output, extra: [probs] }, weights: probs };
  },
  async backward(saved, dOutput) {
    const { q, k, v } = saved;
    const probs = saved.extra[0];
    const scale = 1 / Math.sqrt(q.shape[3]);
    const dProbs = await matmul(dOutput, v, { transposeB: true }); // dO Vᵀ
    const dv = await matmul(probs, dOutput, { transposeA: true }); // Pᵀ dO
    const dScores = await softmaxBackward(probs, dProbs); // d/d(scaled scores)
    dProbs.destroy();
    const dq = await matmul(dScores, k, { alpha: scale });
    const dk = await matmul(dScores, q, { transposeA: true, alpha: scale });
    dScores.destroy();
    return { dq, dk, dv };
  },
};
