// Training loop of the demo: a 2-layer transformer learns to reverse digit sequences, entirely on
// the GPU (forward, backward, AdamW); the CPU only draws batches and reads the loss.
import type { Context } from '../context';
import { intTensor } from '../int_tensor';
import { AdamW } from '../ops/adamw';
import type { Tensor } from '../tensor';
import type { AttentionStep } from './attention_step';
import { transformerStep, uploadTransformer } from './transformer';
import {
  initTransformerWeights,
  reverseDigitsBatch,
  type TransformerConfig,
  transformerParamShapes,
} from './transformer_config';

export interface ReverseDigitsOptions {
  /** Digits per sequence. Default 4. */
  digits?: number;
  /** Sequences per step. Default 32. */
  batch?: number;
  /** Most steps to run. Default 600. */
  steps?: number;
  /** Stop once held-out token accuracy reaches this (checked every `evalEvery` steps). Default 0.99. */
  targetAccuracy?: number;
  evalEvery?: number;
  /** Default 3e-3. */
  lr?: number;
  /** Weights and batches. Default 1. */
  seed?: number;
  /** Model width and depth; vocab (11) and maxLen (2 · digits) are set by the task. */
  model?: Partial<Pick<TransformerConfig, 'dModel' | 'heads' | 'layers' | 'ffn'>>;
  attention?: AttentionStep;
  /** Give every evaluation the attention maps of held-out sequence 0 (`progress.attention`). */
  watchAttention?: boolean;
  /** Called after every evaluation. */
  onProgress?: (p: ReverseDigitsProgress) => void;
}

export interface ReverseDigitsProgress {
  step: number;
  /** Training loss of this step. */
  loss: number;
  /** Token accuracy of the reversed half on 256 held-out sequences (teacher forcing). */
  accuracy: number;
  seconds: number;
  /**
   * With `watchAttention`: per layer, the attention weights [heads, L, L] (row = query position)
   * of held-out sequence 0, whose tokens are `sequence`.
   */
  attention?: Float32Array[];
  sequence?: Int32Array;
}

/** Trains the demo model; returns every evaluation and the final parameters (caller destroys). */
export async function trainReverseDigits(
  ctx: Context,
  options: ReverseDigitsOptions = {},
): Promise<{ history: ReverseDigitsProgress[]; params: Record<string, Tensor>; config: TransformerConfig }> {
  const n = options.digits ?? 4;
  const batch = options.batch ?? 32;
  const steps = options.steps ?? 600;
  const evalEvery = options.evalEvery ?? 25;
  const seed = options.seed ?? 1;
  const config: TransformerConfig = {
    vocab: 11,
    dModel: 32,
    heads: 2,
    layers: 2,
    ffn: 64,
    ...options.model,
    maxLen: 2 * n,
  };
  const params = uploadTransformer(ctx, config, initTransformerWeights(config, seed));
  const names = transformerParamShapes(config).map(([name]) => name);
  const opt = new AdamW(
    names.map((name) => params[name]),
    { lr: options.lr ?? 3e-3, weightDecay: 0.01 },
  );
  let state = (seed * 2654435761) >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let heldState = 0x9e3779b9;
  const heldRandom = () => {
    heldState = (heldState + 0x6d2b79f5) >>> 0;
    let t = heldState;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const held = reverseDigitsBatch(heldRandom, 256, n);
  const heldIds = intTensor(ctx, held.ids, [256, held.length]);
  const heldTargets = intTensor(ctx, held.targets, [256, held.length]);
  const history: ReverseDigitsProgress[] = [];
  const start = performance.now();
  try {
    for (let step = 1; step <= steps; step++) {
      const b = reverseDigitsBatch(random, batch, n);
      const ids = intTensor(ctx, b.ids, [batch, b.length]);
      const targets = intTensor(ctx, b.targets, [batch, b.length]);
      const r = await transformerStep(params, config, ids, targets, { attention: options.attention });
      await opt.step(names.map((name) => r.grads![name]));
      const evaluate = step % evalEvery === 0 || step === steps;
      const loss = evaluate ? (await r.loss.read())[0] : Number.NaN;
      for (const t of [...Object.values(r.grads!), r.loss, r.logits, ids, targets]) t.destroy();
      if (!evaluate) continue;
      const e = await transformerStep(params, config, heldIds, heldTargets, {
        attention: options.attention,
        backward: false,
        returnWeights: options.watchAttention,
      });
      const logits = await e.logits.read();
      let attention: Float32Array[] | undefined;
      if (e.weights) {
        const per = config.heads * held.length * held.length; // one sequence's [H, L, L]
        attention = [];
        for (const w of e.weights) {
          attention.push((await w.read()).slice(0, per) as Float32Array);
          w.destroy();
        }
      }
      e.loss.destroy();
      e.logits.destroy();
      let right = 0;
      let total = 0;
      for (let i = 0; i < held.targets.length; i++) {
        if (held.targets[i] < 0) continue;
        let best = 0;
        for (let v = 1; v < config.vocab; v++) {
          if (logits[i * config.vocab + v] > logits[i * config.vocab + best]) best = v;
        }
        right += best === held.targets[i] ? 1 : 0;
        total++;
      }
      const progress: ReverseDigitsProgress = {
        step,
        loss,
        accuracy: right / total,
        seconds: (performance.now() - start) / 1000,
        ...(attention ? { attention, sequence: held.ids.slice(0, held.length) } : {}),
      };
      history.push(progress);
      options.onProgress?.(progress);
      if (progress.accuracy >= (options.targetAccuracy ?? 0.99)) break;
    }
  } finally {
    heldIds.destroy();
    heldTargets.destroy();
    opt.destroy();
  }
  return { history, params, config };
}
