// The backward section of the benchmark (issue 10, item 5): per shape, the gradients dq, dk, dv of
// attention from ours fused (`attentionBackward`, probabilities recomputed from the forward's lse),
// ours composed (matmul + softmaxBackward, as composedAttention's backward: stores the L x L
// probabilities) and, in the page, tfjs-webgpu's `tf.grads` of its composed attention; each first
// checked against the float64 `attentionBackwardCpu` at a small shape of the same kind, then timed.
// Then training steps/s of the demo model (the reverse-digits transformer) with either attention.
// Runs in the page (bench/suite.ts) and in Node (bench/node_suite.ts): nothing here needs a browser.
import {
  AdamW,
  attention,
  attentionBackward,
  type Context,
  intTensor,
  matmul,
  randomUniform,
  seededRandom,
  softmax,
  softmaxBackward,
  type Tensor,
} from '../src';
import { attentionBackwardCpu } from '../src/reference';
import { type AttentionStep, composedAttention, fusedAttention } from '../src/train/attention_step';
import { transformerStep, uploadTransformer } from '../src/train/transformer';
import {
  initTransformerWeights,
  reverseDigitsBatch,
  type TransformerConfig,
  transformerParamShapes,
} from '../src/train/transformer_config';
import type { F32 } from './impl/types';
import type { PassProbe } from './probe';
import { type BenchShape, checkShape, flops } from './shapes';
import { benchInputs, CHECK_TOL, median, timeCalls } from './timing';

/** FlashAttention-2's count: the backward does 2.5x the forward's matmul FLOPs (5 matmuls to 2). */
export const BACKWARD_FLOP_FACTOR = 2.5;

/** Backward FLOPs of one call: 2.5 · 4·B·Hq·Lq·Lk·D (halved when causal). */
export function backwardFlops(s: BenchShape): number {
  return BACKWARD_FLOP_FACTOR * flops(s);
}

/** The goal of issue 10: our fused backward takes at most this many times our forward. */
export const BACKWARD_RATIO_GOAL = 3;

export interface BackwardInputs {
  shape: BenchShape;
  /** [B, Hq, Lq, D] */
  q: F32;
  /** [B, Hkv, Lk, D] */
  k: F32;
  /** [B, Hkv, Lk, D] */
  v: F32;
  /** [B, Hq, Lq, D]: d loss / d output */
  dO: F32;
}

/** What one timed call gives (as bench/impl/types.ts's CallStats). */
export interface BackwardCall {
  doneAt?: number;
  gpuMs?: number;
  dispatches?: number;
  /** Bytes the call allocated at its peak beyond what existed before it. */
  peakBytes?: number;
}

export interface BackwardPrepared {
  device?: GPUDevice;
  /** One forward call, as training would make it (ours: with the lse or the probabilities kept). */
  forward(): Promise<BackwardCall | undefined>;
  /** One backward call from the forward's saved results (tfjs: the whole tf.grads, forward included). */
  backward(): Promise<BackwardCall | undefined>;
  /** Gradients read back: dq [B, Hq, Lq, D], dk and dv [B, Hkv, Lk, D] (summed over each group). */
  grads(): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array }>;
  dispose(): void;
}

export interface BackwardImpl {
  id: string;
  label: string;
  kind: 'ours' | 'library';
  /** The backward call includes the forward (tf.grads records the tape each time). */
  backwardIncludesForward?: boolean;
  /** Skipped above the section's maxSlowL. */
  slow: boolean;
  unsupported?(s: BenchShape): string | undefined;
  note?(s: BenchShape): string | undefined;
  prepare(inputs: BackwardInputs): Promise<BackwardPrepared>;
  dispose(): void;
}

export type BackwardStatus = 'ok' | 'wrong' | 'skipped' | 'n/a' | 'error';

export interface BackwardRow {
  shape: string;
  impl: string;
  label: string;
  kind: 'ours' | 'library';
  status: BackwardStatus;
  note?: string;
  /** Largest |grad - ref| / (1 + |ref|) over dq, dk, dv at the check shape. */
  checkErr?: number;
  /** Median wall ms of the forward (as training calls it). */
  forwardMs?: number;
  /** Median wall ms of the backward (tfjs: of tf.grads, its forward included). */
  backwardMs?: number;
  /** Timed backward calls. */
  runs?: number;
  /** {@link backwardFlops} / backwardMs. */
  gflops?: number;
  /** GPU ms of the backward's passes (timestamp queries; ours). */
  gpuMs?: number;
  dispatches?: number;
  /** backwardMs / our fused forward's ms on the same shape. */
  ratio?: number;
  /** Peak bytes the backward call allocated beyond its inputs and saved forward results. */
  peakBytes?: number;
  /** Peak bytes of the forward call (outputs and what it saves for the backward included). */
  forwardPeakBytes?: number;
  /** Bytes of one L x L buffer of the shape, B·Hq·Lq·Lk·4. */
  llBytes?: number;
}

export interface TrainRow {
  attention: string;
  status: 'ok' | 'error';
  note?: string;
  /** Timed steps (forward, backward, AdamW; the loss read back each step). */
  steps: number;
  stepsPerSecond?: number;
  msPerStep?: number;
  /** Loss of the last timed step (fused and composed start from the same weights and batches). */
  loss?: number;
}

/** The demo model of trainReverseDigits at its defaults: 4 digits, batch 32. */
export const TRAIN_MODEL = {
  digits: 4,
  batch: 32,
  dModel: 32,
  heads: 2,
  layers: 2,
  ffn: 64,
  steps: 8,
  warmup: 1,
};

export interface BackwardOptions {
  repeats: number;
  warmup: number;
  /** Slow implementations skipped above this query length. */
  maxSlowL: number;
  /** Seconds of timed calls one row may take (fewer runs, at least 2, beyond it); 0 = repeats. */
  rowBudgetS: number;
  /** Also time training steps of the demo model. */
  training: boolean;
}

export type BackwardEvent =
  | { type: 'progress'; message: string }
  | { type: 'backward'; row: BackwardRow }
  | { type: 'train'; row: TrainRow };

function errorMessage(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
}

/** benchInputs (q, k, v from seeds seed .. seed + 2) and dO from seed + 3. */
export function makeBackwardInputs(shape: BenchShape, seed: number): BackwardInputs {
  const { B, Hq, Lq, D } = shape;
  return { ...benchInputs(shape, seed), dO: randomUniform(seededRandom(seed + 3), B * Hq * Lq * D) };
}

/** Largest |a - e| / (1 + |e|) over the three gradients; Infinity on a mismatch or NaN. */
export function gradientError(
  actual: { dq: Float32Array; dk: Float32Array; dv: Float32Array },
  expected: { dq: Float64Array; dk: Float64Array; dv: Float64Array },
): number {
  let worst = 0;
  for (const name of ['dq', 'dk', 'dv'] as const) {
    const a = actual[name];
    const e = expected[name];
    if (a.length !== e.length) return Number.POSITIVE_INFINITY;
    for (let i = 0; i < e.length; i++) {
      const err = Math.abs(a[i] - e[i]) / (1 + Math.abs(e[i]));
      if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
    }
  }
  return worst;
}

/** [B, Hkv·group, L, D] -> [B, Hkv, L, D], summing each group of heads (the gradient of repeatHeads). */
export function sumHeads(x: Float32Array, B: number, Hkv: number, L: number, D: number, group: number) {
  if (group === 1) return x;
  const block = L * D;
  const out = new Float32Array(B * Hkv * block);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv; h++) {
      for (let g = 0; g < group; g++) {
        const src = ((b * Hkv + h) * group + g) * block;
        const dst = (b * Hkv + h) * block;
        for (let i = 0; i < block; i++) out[dst + i] += x[src + i];
      }
    }
  }
  return out;
}

/** Runs `call` with peak bytes and GPU time recorded, then frees what it returns. */
async function measured(
  ctx: Context,
  probe: PassProbe | undefined,
  call: () => Promise<Tensor[]>,
): Promise<BackwardCall> {
  const before = ctx.liveBytes;
  ctx.resetPeak();
  let value: Tensor[];
  let stats: BackwardCall;
  if (probe) {
    const r = await probe.record(call);
    value = r.value;
    stats = { doneAt: r.probe.doneAt, gpuMs: r.probe.gpuMs, dispatches: r.probe.dispatches };
  } else {
    value = await call();
    await ctx.device.queue.onSubmittedWorkDone();
    stats = { doneAt: performance.now() };
  }
  stats.peakBytes = ctx.peakBytes - before;
  for (const t of value) t.destroy();
  return stats;
}

function upload(ctx: Context, inputs: BackwardInputs) {
  const { B, Hq, Hkv, Lq, Lk, D } = inputs.shape;
  return {
    q: ctx.tensor(inputs.q, [B, Hq, Lq, D], { label: 'bench:q' }),
    k: ctx.tensor(inputs.k, [B, Hkv, Lk, D], { label: 'bench:k' }),
    v: ctx.tensor(inputs.v, [B, Hkv, Lk, D], { label: 'bench:v' }),
    dO: ctx.tensor(inputs.dO, [B, Hq, Lq, D], { label: 'bench:dO' }),
  };
}

async function readGrads(g: { dq: Tensor; dk: Tensor; dv: Tensor }) {
  const out = {
    dq: (await g.dq.read()) as Float32Array,
    dk: (await g.dk.read()) as Float32Array,
    dv: (await g.dv.read()) as Float32Array,
  };
  for (const t of [g.dq, g.dk, g.dv]) t.destroy();
  return out;
}

/**
 * A T5-style relative bias per head and distance read by scoreMod and trained by modDataGrad, all
 * zeros (so that dq, dk, dv are plain attention's, checked as such; the bias's gradient is summed
 * all the same: the atomic adds of every attended key).
 */
function relativeBias(ctx: Context, s: BenchShape) {
  const width = s.Lq + s.Lk - 1;
  const at = `h * ${width}u + i + ${s.Lk - 1}u - j`;
  const table = ctx.zeros([s.Hq, width], { label: 'bench:relative-bias' });
  return {
    table,
    forward: {
      scoreMod: `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + bias(${at}); }`,
      modData: { bias: table },
    },
    backward: {
      scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }',
      modDataGrad: `fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { bias_grad(${at}, ds); }`,
    },
  };
}

/**
 * Ours fused: attention(..., returnLse) forward; attentionBackward from its output and lse. With
 * `trainedBias`, also a relative bias read by scoreMod whose gradient the backward returns
 * (modDataGrad): what training a learned bias adds.
 */
export function oursFusedBackward(ctx: Context, probe?: PassProbe, trainedBias = false): BackwardImpl {
  return {
    id: trainedBias ? 'ours-bias' : 'ours',
    label: trainedBias
      ? 'ours fused, relative bias trained (scoreMod, modDataGrad)'
      : 'ours fused (attentionBackward)',
    kind: 'ours',
    slow: false,
    async prepare(inputs) {
      const { q, k, v, dO } = upload(ctx, inputs);
      const { causal } = inputs.shape;
      const bias = trainedBias ? relativeBias(ctx, inputs.shape) : undefined;
      const forward = async () => {
        const r = await attention(q, k, v, { causal, returnLse: true, ...bias?.forward });
        return [r.output, r.lse!];
      };
      const [output, lse] = await forward();
      const call = () =>
        attentionBackward(q, k, v, output, dO, { causal, lse, ...bias?.forward, ...bias?.backward });
      const backward = async () => {
        const g = await call();
        return [g.dq, g.dk, g.dv, ...Object.values(g.dModData ?? {})];
      };
      return {
        device: ctx.device,
        forward: () => measured(ctx, probe, forward),
        backward: () => measured(ctx, probe, backward),
        grads: async () => {
          const g = await call();
          for (const t of Object.values(g.dModData ?? {})) t.destroy();
          return readGrads(g);
        },
        dispose: () => {
          for (const t of [q, k, v, dO, output, lse, bias?.table]) t?.destroy();
        },
      };
    },
    dispose() {},
  };
}

/**
 * Ours composed, as composedAttention: scores = q·kᵀ·scale, softmax (causal in the op), output =
 * P·v, P kept; backward dP = dO·vᵀ, dv = Pᵀ·dO, dS = softmaxBackward(P, dP), dq = dS·k·scale,
 * dk = dSᵀ·q·scale. GQA without causal folds a group's query heads into rows, so dk, dv sum over
 * the group in the matmul.
 */
export function oursComposedBackward(ctx: Context, probe?: PassProbe): BackwardImpl {
  return {
    id: 'composed',
    label: 'ours composed (matmul + softmaxBackward)',
    kind: 'ours',
    slow: true,
    unsupported: (s) =>
      s.causal && s.Hq !== s.Hkv ? 'causal GQA would need k, v repeated (not benchmarked)' : undefined,
    async prepare(inputs) {
      const { B, Hq, Hkv, Lq, D, causal } = inputs.shape;
      const { q, k, v, dO } = upload(ctx, inputs);
      const rows = [B, Hkv, (Hq / Hkv) * Lq, D];
      const qRows = ctx.wrap(q.buffer, rows);
      const dORows = ctx.wrap(dO.buffer, rows);
      const scale = 1 / Math.sqrt(D);
      const forward = async () => {
        const scores = await matmul(qRows, k, { transposeB: true, alpha: scale });
        const probs = await softmax(scores, { causal });
        scores.destroy();
        const out = await matmul(probs, v);
        return [out, probs];
      };
      const [output, probs] = await forward();
      const backward = async () => {
        const dProbs = await matmul(dORows, v, { transposeB: true });
        const dv = await matmul(probs, dORows, { transposeA: true });
        const dScores = await softmaxBackward(probs, dProbs);
        dProbs.destroy();
        const dq = await matmul(dScores, k, { alpha: scale });
        const dk = await matmul(dScores, qRows, { transposeA: true, alpha: scale });
        dScores.destroy();
        return [dq, dk, dv];
      };
      return {
        device: ctx.device,
        forward: () => measured(ctx, probe, forward),
        backward: () => measured(ctx, probe, backward),
        grads: async () => {
          const [dq, dk, dv] = await backward();
          return readGrads({ dq, dk, dv });
        },
        dispose: () => {
          for (const t of [q, k, v, dO, output, probs]) t.destroy();
        },
      };
    },
    dispose() {},
  };
}

/** Times `run` (see timeCalls): median wall and GPU ms. */
async function time(run: () => Promise<BackwardCall | undefined>, o: BackwardOptions) {
  const { samples, gpu, runs, last } = await timeCalls(run, o);
  return { ms: median(samples), runs, gpuMs: gpu.length ? median(gpu) : undefined, last };
}

/**
 * Runs the backward section on `shapes` with `impls` (ours fused first: its forward time is the
 * ratio's denominator), then the training steps; `emit` hears every row.
 */
export async function runBackwardSection(
  ctx: Context,
  impls: BackwardImpl[],
  shapes: BenchShape[],
  options: BackwardOptions,
  emit: (e: BackwardEvent) => void,
): Promise<{ rows: BackwardRow[]; train: TrainRow[] }> {
  const gpuErrors: string[] = [];
  const watched = new WeakSet<GPUDevice>();
  const watch = (device: GPUDevice | undefined) => {
    if (!device || watched.has(device)) return;
    watched.add(device);
    device.addEventListener('uncapturederror', (e) => {
      gpuErrors.push((e as GPUUncapturedErrorEvent).error.message);
    });
  };
  const rows: BackwardRow[] = [];
  const checks = new Map<string, { err: number } | { error: string }>();
  const references = new Map<string, { dq: Float64Array; dk: Float64Array; dv: Float64Array }>();

  const reference = (small: BenchShape, inputs: BackwardInputs) => {
    const key = small.name;
    let ref = references.get(key);
    if (!ref) {
      const { B, Hq, Hkv, Lq, Lk, D } = small;
      const r = attentionBackwardCpu(
        { data: inputs.q, shape: [B, Hq, Lq, D] },
        { data: inputs.k, shape: [B, Hkv, Lk, D] },
        { data: inputs.v, shape: [B, Hkv, Lk, D] },
        { data: inputs.dO, shape: [B, Hq, Lq, D] },
        { causal: small.causal },
      );
      ref = { dq: r.dq.data, dk: r.dk.data, dv: r.dv.data };
      references.set(key, ref);
    }
    return ref;
  };

  const check = async (impl: BackwardImpl, shape: BenchShape) => {
    const small = checkShape(shape);
    const key = `${impl.id}|${small.name}`;
    let result = checks.get(key);
    if (!result) {
      const inputs = makeBackwardInputs(small, 7);
      const ref = reference(small, inputs);
      try {
        const prepared = await impl.prepare(inputs);
        watch(prepared.device);
        try {
          const errors = gpuErrors.length;
          result = { err: gradientError(await prepared.grads(), ref) };
          await prepared.device?.queue.onSubmittedWorkDone();
          if (gpuErrors.length > errors) result = { error: `WebGPU error: ${gpuErrors[errors]}` };
        } finally {
          prepared.dispose();
        }
      } catch (e) {
        result = { error: errorMessage(e) };
      }
      checks.set(key, result);
    }
    return result;
  };

  for (const [index, shape] of shapes.entries()) {
    let inputs: BackwardInputs | undefined;
    let oursForwardMs: number | undefined;
    const llBytes = shape.B * shape.Hq * shape.Lq * shape.Lk * 4;
    for (const impl of impls) {
      const base = { shape: shape.name, impl: impl.id, label: impl.label, kind: impl.kind, llBytes };
      const row = await (async (): Promise<BackwardRow> => {
        const reason = impl.unsupported?.(shape);
        if (reason) return { ...base, status: 'n/a', note: reason };
        if (impl.slow && shape.Lq > options.maxSlowL) {
          return { ...base, status: 'skipped', note: `skipped (L > ${options.maxSlowL})` };
        }
        emit({ type: 'progress', message: `backward ${shape.name}: checking ${impl.label}` });
        const checked = await check(impl, shape);
        if ('error' in checked) return { ...base, status: 'error', note: checked.error };
        if (!(checked.err <= CHECK_TOL)) {
          const note = `wrong on this adapter: error ${checked.err.toExponential(1)} > ${CHECK_TOL}`;
          return { ...base, status: 'wrong', checkErr: checked.err, note };
        }
        try {
          inputs ??= makeBackwardInputs(shape, 2000 + index);
          const prepared = await impl.prepare(inputs);
          watch(prepared.device);
          try {
            const errors = gpuErrors.length;
            emit({ type: 'progress', message: `backward ${shape.name}: timing ${impl.label} forward` });
            const f = await time(prepared.forward, options);
            emit({ type: 'progress', message: `backward ${shape.name}: timing ${impl.label} backward` });
            const b = await time(prepared.backward, options);
            await prepared.device?.queue.onSubmittedWorkDone();
            if (gpuErrors.length > errors)
              return { ...base, status: 'error', note: `WebGPU error: ${gpuErrors[errors]}` };
            if (impl.id === 'ours') oursForwardMs = f.ms;
            const notes = [
              impl.note?.(shape),
              impl.backwardIncludesForward ? 'backward ms = tf.grads, its forward included' : undefined,
            ].filter(Boolean);
            return {
              ...base,
              status: 'ok',
              note: notes.length ? notes.join('; ') : undefined,
              checkErr: checked.err,
              forwardMs: f.ms,
              backwardMs: b.ms,
              runs: b.runs,
              gflops: backwardFlops(shape) / b.ms / 1e6,
              gpuMs: b.gpuMs,
              dispatches: b.last?.dispatches,
              ratio: oursForwardMs ? b.ms / oursForwardMs : undefined,
              peakBytes: b.last?.peakBytes,
              forwardPeakBytes: f.last?.peakBytes,
            };
          } finally {
            prepared.dispose();
          }
        } catch (e) {
          return { ...base, status: 'error', note: errorMessage(e) };
        }
      })();
      rows.push(row);
      emit({ type: 'backward', row });
    }
  }

  const train: TrainRow[] = [];
  if (options.training) {
    for (const step of [fusedAttention, composedAttention]) {
      emit({ type: 'progress', message: `training steps: ${step.name}` });
      const row = await timeTraining(ctx, step);
      train.push(row);
      emit({ type: 'train', row });
    }
  }
  return { rows, train };
}

/**
 * Steps of the demo model (trainReverseDigits' defaults: 4 digits, batch 32, 2 layers, d 32,
 * 2 heads): forward, backward and AdamW, the loss read back each step; warm-up steps untimed.
 */
export async function timeTraining(ctx: Context, step: AttentionStep, m = TRAIN_MODEL): Promise<TrainRow> {
  const config: TransformerConfig = {
    vocab: 11,
    dModel: m.dModel,
    heads: m.heads,
    layers: m.layers,
    ffn: m.ffn,
    maxLen: 2 * m.digits,
  };
  const base = { attention: step.name, steps: m.steps };
  const params = uploadTransformer(ctx, config, initTransformerWeights(config, 1));
  const names = transformerParamShapes(config).map(([name]) => name);
  const opt = new AdamW(
    names.map((n) => params[n]),
    { lr: 3e-3, weightDecay: 0.01 },
  );
  const random = seededRandom(5);
  try {
    let loss = Number.NaN;
    const one = async () => {
      const b = reverseDigitsBatch(random, m.batch, m.digits);
      const ids = intTensor(ctx, b.ids, [m.batch, b.length]);
      const targets = intTensor(ctx, b.targets, [m.batch, b.length]);
      const r = await transformerStep(params, config, ids, targets, { attention: step });
      await opt.step(names.map((n) => r.grads![n]));
      loss = (await r.loss.read())[0];
      for (const t of [...Object.values(r.grads!), r.loss, r.logits, ids, targets]) t.destroy();
    };
    for (let i = 0; i < m.warmup; i++) await one();
    const t0 = performance.now();
    for (let i = 0; i < m.steps; i++) await one();
    const ms = (performance.now() - t0) / m.steps;
    if (!Number.isFinite(loss)) return { ...base, status: 'error', note: `loss ${loss}` };
    return { ...base, status: 'ok', stepsPerSecond: 1000 / ms, msPerStep: ms, loss };
  } catch (e) {
    return { ...base, status: 'error', note: errorMessage(e) };
  } finally {
    opt.destroy();
    for (const t of Object.values(params)) t.destroy();
  }
}
