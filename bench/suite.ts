// The benchmark itself, run in the page: every implementation on every selected shape, each
// first checked against the float64 reference at a small shape of the same kind, then timed;
// then the decode-layer section (a small transformer generating tokens, f32 and f16), then the
// sparse section (windows, block masks, documents against the dense mask; bench/sparse.ts).
import { type Context, createContext, matmul, randomUniform, seededRandom } from '../src';
import {
  type BackwardImpl,
  type BackwardRow,
  oursComposedBackward,
  oursFusedBackward,
  runBackwardSection,
  TRAIN_MODEL,
  type TrainRow,
} from './backward';
import { type DecodeOptions, runDecode } from './decode_layer';
import { naive } from './impl/naive';
import { deviceWithout, ortGqaWebgpu, ortWasm, ortWebgpu } from './impl/ort';
import { oursComposed, oursFused } from './impl/ours';
import { tfjsBackward, tfjsWebgpu } from './impl/tfjs';
import type { BenchInputs, CallStats, F32, Impl, ImplKind } from './impl/types';
import { PassProbe } from './probe';
import { measureRoofs, type Roofs, roofFraction } from './roofs';
import {
  type BenchShape,
  checkKey,
  checkShape,
  flops,
  selectBackward,
  selectShapes,
  selectSparseCases,
  selectsLayer,
  selectsSparse,
} from './shapes';
import { type SparsePeers, type SparseRow, timeSparse } from './sparse';
import { type Target, targets } from './targets';
import { benchInputs, CHECK_TOL, checkError, median, referenceOutput, timeCalls } from './timing';

export interface BenchOptions {
  /** Comma list of shape names or groups; '' or 'all' for every shape. */
  shapes: string;
  /** Comma list of implementation ids; '' or 'all' for every one. */
  impls: string;
  repeats: number;
  warmup: number;
  /** Slow implementations are skipped when the query length exceeds this. */
  maxSlowL: number;
  /** Also time our matmul at the GEMM shape of each prefill length (for the 60% target). */
  matmul: boolean;
  /**
   * Seconds of timed calls one row may take: a call slower than budget / repeats (judged by the
   * last warm-up call) gets fewer timed runs, never fewer than 2. 0: always `repeats`.
   */
  rowBudgetS: number;
  /** Measure the adapter's roofs first and report each row as a fraction of its roof. */
  roofs: boolean;
}

export const DEFAULT_OPTIONS: BenchOptions = {
  shapes: 'all',
  impls: 'all',
  repeats: 3,
  warmup: 1,
  maxSlowL: 1024,
  matmul: true,
  rowBudgetS: 30,
  roofs: true,
};

export const IMPL_IDS = [
  'ours',
  'ours-other',
  'ours-tiled',
  'composed',
  'ort-subgroups',
  'ort',
  'tfjs',
  'naive',
  'ort-wasm',
] as const;

export type Status = 'ok' | 'wrong' | 'skipped' | 'n/a' | 'error';

export interface Row {
  shape: string;
  impl: string;
  label: string;
  kind: ImplKind;
  status: Status;
  /** Why it was not timed, or how it ran. */
  note?: string;
  /** Largest |out - ref| / (1 + |ref|) of the check. */
  checkErr?: number;
  medianMs?: number;
  minMs?: number;
  gflops?: number;
  samplesMs?: number[];
  gpuMedianMs?: number;
  gpuGflops?: number;
  dispatches?: number;
  peakBytes?: number;
  kernel?: string;
  /**
   * Of the roof that bounds the shape (bench/roofs.ts): compute (f32 FMA) or bandwidth (read),
   * from GPU time where measured, else the median wall time.
   */
  roof?: { bound: 'compute' | 'bandwidth'; fraction: number };
}

export interface MatmulRow {
  L: number;
  shape: string;
  medianMs: number;
  minMs: number;
  gflops: number;
  gpuMedianMs?: number;
}

/**
 * The decode-layer section: a small transformer (MultiHeadAttention with RoPE and a KV cache,
 * GELU MLP) generating tokens one at a time, in each storage dtype. Sized to take seconds, not
 * minutes, on SwiftShader.
 */
export const DECODE_LAYER: Required<
  Pick<DecodeOptions, 'steps' | 'layers' | 'embedDim' | 'numHeads' | 'numKvHeads' | 'prompt'>
> = {
  steps: 16,
  layers: 2,
  embedDim: 256,
  numHeads: 8,
  numKvHeads: 2,
  prompt: 16,
};

/** One dtype of the decode-layer section. */
export interface LayerRow {
  dtype: 'f32' | 'f16';
  status: 'ok' | 'error';
  /** Why it failed, or how f16 was stored. */
  note?: string;
  tokensPerSecond?: number;
  msPerLayer?: number;
  msPerToken?: number;
  /** The prompt's forward pass, pipeline compiles included. */
  prefillMs?: number;
  steps: number;
  layers: number;
}

export interface BenchReport {
  date: string;
  adapter: { vendor: string; architecture: string; description: string };
  features: string[];
  userAgent: string;
  options: BenchOptions;
  shapes: BenchShape[];
  rows: Row[];
  matmul: MatmulRow[];
  /** The decode-layer section (absent from results saved before it existed). */
  layer?: LayerRow[];
  /** Its model sizes. */
  layerModel?: typeof DECODE_LAYER;
  /** The adapter's roofs, measured at the start of the run (absent from older results). */
  roofs?: Roofs;
  /** The sparse section (absent from results saved before it existed). */
  sparse?: SparseRow[];
  /** The backward section's shapes and rows (absent from results saved before it existed). */
  backwardShapes?: BenchShape[];
  backward?: BackwardRow[];
  /** Training steps/s of the demo model, fused and composed attention, and its sizes. */
  train?: TrainRow[];
  trainModel?: typeof TRAIN_MODEL;
  targets: Target[];
}

export type BenchEvent =
  | {
      type: 'start';
      adapter: BenchReport['adapter'];
      features: string[];
      impls: string[];
      shapes: string[];
      /** Shapes of the backward section (empty when it is not selected). */
      backwardShapes: string[];
    }
  | { type: 'progress'; message: string }
  | { type: 'row'; row: Row }
  | { type: 'matmul'; row: MatmulRow }
  | { type: 'layer'; row: LayerRow }
  | { type: 'sparse'; row: SparseRow }
  | { type: 'backward'; row: BackwardRow }
  | { type: 'train'; row: TrainRow }
  | { type: 'done'; report: BenchReport };

/** Seeded uniform [-1, 1): the same inputs every run. */
function randomArray(seed: number, n: number): F32 {
  return randomUniform(seededRandom(seed), n);
}

function errorMessage(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
}

/** The implementations, on `ctx`'s adapter: ORT gets two devices of its own, tfjs one. */
async function createImpls(
  ctx: Context,
  probe: PassProbe,
  adapterFeatures: string[],
  wanted: Set<string>,
): Promise<Impl[]> {
  const gpu = navigator.gpu;
  const ortDevice = async (drop: string | undefined, label: string) => {
    const adapter = await gpu.requestAdapter();
    if (!adapter) throw new Error(`${label}: requestAdapter() returned null`);
    return deviceWithout(adapter, drop, label);
  };
  const hasSubgroups = adapterFeatures.includes('subgroups');
  const makers: Record<(typeof IMPL_IDS)[number], () => Impl | Promise<Impl>> = {
    ours: () => oursFused(ctx, probe),
    'ours-other': async () => {
      const attentionKernel = ctx.attentionKernel === 'registers' ? 'workgroup' : 'registers';
      const other = await createContext({ device: ctx.device, attentionKernel, label: 'bench:other' });
      return oursFused(other, probe, 'ours-other');
    },
    'ours-tiled': async () => {
      const tiled = await createContext({
        device: ctx.device,
        attentionKernel: 'tiled',
        label: 'bench:tiled',
      });
      return oursFused(tiled, probe, 'ours-tiled');
    },
    composed: () => oursComposed(ctx, probe),
    'ort-subgroups': async () => {
      const label = 'onnxruntime-web WebGPU, subgroups on';
      if (!hasSubgroups) return unavailable('ort-subgroups', label, 'the adapter has no subgroups');
      return ortWebgpu(await ortDevice(undefined, 'ort-subgroups'), 'ort-subgroups', label);
    },
    ort: async () => {
      const label = hasSubgroups ? 'onnxruntime-web WebGPU, subgroups off' : 'onnxruntime-web WebGPU';
      return ortWebgpu(await ortDevice('subgroup', 'ort'), 'ort', label);
    },
    tfjs: () => tfjsWebgpu(),
    naive: () => naive(ctx.device),
    'ort-wasm': () => ortWasm(),
  };
  const impls: Impl[] = [];
  for (const id of IMPL_IDS) if (wanted.has(id)) impls.push(await makers[id]());
  return impls;
}

/** An implementation this adapter cannot run at all. */
function unavailable(id: string, label: string, reason: string): Impl {
  return {
    id,
    label,
    kind: 'library',
    slow: true,
    unsupported: () => reason,
    prepare: () => Promise.reject(new Error(reason)),
    dispose() {},
  };
}

/** Times `run` (see timeCalls) and derives GFLOP/s from `flop`. */
async function time(run: () => Promise<CallStats | undefined>, flop: number, o: BenchOptions) {
  const { samples, gpu, last } = await timeCalls(run, o);
  const medianMs = median(samples);
  const gpuMedianMs = gpu.length ? median(gpu) : undefined;
  return {
    medianMs,
    minMs: Math.min(...samples),
    gflops: flop / medianMs / 1e6,
    samplesMs: samples,
    gpuMedianMs,
    gpuGflops: gpuMedianMs ? flop / gpuMedianMs / 1e6 : undefined,
    last,
  };
}

/** Our matmul at the GEMM shape [8, L, 64] x [8, 64, L] of prefill length L (2·8·L·L·64 flops). */
async function timeMatmul(ctx: Context, probe: PassProbe, L: number, o: BenchOptions): Promise<MatmulRow> {
  const a = ctx.tensor(randomArray(1, 8 * L * 64), [8, L, 64], { label: 'bench:a' });
  const b = ctx.tensor(randomArray(2, 8 * 64 * L), [8, 64, L], { label: 'bench:b' });
  const run = async () => {
    const { value, probe: p } = await probe.record(() => matmul(a, b));
    value.destroy();
    return { doneAt: p.doneAt, gpuMs: p.gpuMs };
  };
  try {
    const t = await time(run, 2 * 8 * L * L * 64, o);
    const { medianMs, minMs, gflops, gpuMedianMs } = t;
    return { L, shape: `[8, ${L}, 64] x [8, 64, ${L}]`, medianMs, minMs, gflops, gpuMedianMs };
  } finally {
    a.destroy();
    b.destroy();
  }
}

/** Runs the decode-layer model in `dtype`; a failure is a row that says so. */
async function timeLayer(ctx: Context, dtype: LayerRow['dtype']): Promise<LayerRow> {
  const base = { dtype, steps: DECODE_LAYER.steps, layers: DECODE_LAYER.layers };
  // f16 without shader-f16 is stored packed in u32 words (unpacked to f32 in the kernels).
  const note = dtype === 'f16' ? (ctx.hasF16 ? 'shader-f16' : 'packed in u32, no shader-f16') : undefined;
  try {
    const r = await runDecode(ctx, { ...DECODE_LAYER, dtype });
    if (!r.last.every(Number.isFinite)) {
      return { ...base, status: 'error', note: `non-finite output: ${r.last.join(', ')}` };
    }
    const { tokensPerSecond, msPerLayer, msPerToken, prefillMs } = r;
    return { ...base, status: 'ok', note, tokensPerSecond, msPerLayer, msPerToken, prefillMs };
  } catch (e) {
    return { ...base, status: 'error', note: errorMessage(e) };
  }
}

/** Runs the benchmark; `emit` hears every row as soon as it is measured. */
export async function runBench(
  partial: Partial<BenchOptions>,
  emit: (event: BenchEvent) => void,
): Promise<BenchReport> {
  const options = { ...DEFAULT_OPTIONS, ...partial };
  const shapes = selectShapes(options.shapes);
  const backwardShapes = selectBackward(options.shapes);
  const implWords = options.impls.split(',').filter(Boolean);
  const all = implWords.length === 0 || implWords.includes('all');
  const unknown = implWords.filter((w) => w !== 'all' && !(IMPL_IDS as readonly string[]).includes(w));
  if (unknown.length) {
    throw new Error(`--impl: unknown ${unknown.join(', ')}; expected some of ${IMPL_IDS.join(', ')}`);
  }
  const wanted = new Set<string>(all ? IMPL_IDS : implWords);

  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('bench: navigator.gpu.requestAdapter() returned null');
  const adapterFeatures = [...adapter.features].sort();
  const ctx = await createContext({ adapter, label: 'bench' });
  // WebGPU errors on any implementation's device: a call that raised one did not really run.
  const gpuErrors: string[] = [];
  const watched = new WeakSet<GPUDevice>();
  const watch = (device: GPUDevice | undefined) => {
    if (!device || watched.has(device)) return;
    watched.add(device);
    device.addEventListener('uncapturederror', (e) => {
      gpuErrors.push((e as GPUUncapturedErrorEvent).error.message);
    });
  };
  const probe = new PassProbe(ctx.device);
  let roofs: Roofs | undefined;
  if (options.roofs && shapes.length) {
    try {
      roofs = await measureRoofs(ctx.device, { progress: (message) => emit({ type: 'progress', message }) });
    } catch (e) {
      emit({ type: 'progress', message: `roofs: ${errorMessage(e)}` });
    }
  }
  const impls = shapes.length ? await createImpls(ctx, probe, adapterFeatures, wanted) : [];
  emit({
    type: 'start',
    adapter: ctx.adapterInfo,
    features: adapterFeatures,
    impls: impls.map((i) => i.label),
    shapes: shapes.map((s) => s.name),
    backwardShapes: backwardShapes.map((s) => s.name),
  });

  // One check per implementation and kind of shape (prefill lengths share theirs).
  const checks = new Map<string, { err: number } | { error: string }>();
  const check = async (impl: Impl, shape: BenchShape) => {
    const key = `${impl.id}|${checkKey(shape)}`;
    let result = checks.get(key);
    if (!result) {
      const inputs = benchInputs(checkShape(shape), 7);
      try {
        const prepared = await impl.prepare(inputs);
        watch(prepared.device);
        try {
          const errors = gpuErrors.length;
          result = { err: checkError(await prepared.output(), referenceOutput(inputs)) };
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

  const measure = async (impl: Impl, shape: BenchShape, inputs: () => BenchInputs): Promise<Row> => {
    const base = { shape: shape.name, impl: impl.id, label: impl.label, kind: impl.kind };
    const reason = impl.unsupported?.(shape);
    if (reason) return { ...base, status: 'n/a', note: reason };
    if (impl.slow && shape.Lq > options.maxSlowL) {
      return { ...base, status: 'skipped', note: `skipped (L > ${options.maxSlowL})` };
    }
    emit({ type: 'progress', message: `${shape.name}: checking ${impl.label}` });
    const checked = await check(impl, shape);
    if ('error' in checked) return { ...base, status: 'error', note: checked.error };
    if (!(checked.err <= CHECK_TOL)) {
      const note = `wrong on this adapter: error ${checked.err.toExponential(1)} > ${CHECK_TOL}`;
      return { ...base, status: 'wrong', checkErr: checked.err, note };
    }
    emit({ type: 'progress', message: `${shape.name}: timing ${impl.label}` });
    try {
      const prepared = await impl.prepare(inputs());
      watch(prepared.device);
      try {
        const errors = gpuErrors.length;
        const { last, ...t } = await time(prepared.run, flops(shape), options);
        const roof = roofs && roofFraction(shape, t.gpuMedianMs ?? t.medianMs, roofs);
        await prepared.device?.queue.onSubmittedWorkDone();
        if (gpuErrors.length > errors)
          return { ...base, status: 'error', note: `WebGPU error: ${gpuErrors[errors]}` };
        return {
          ...base,
          status: 'ok',
          note: impl.note?.(shape),
          checkErr: checked.err,
          ...t,
          dispatches: last?.dispatches,
          peakBytes: last?.peakBytes,
          kernel: last?.kernel,
          roof: roof && { bound: roof.bound, fraction: roof.fraction },
        };
      } finally {
        prepared.dispose();
      }
    } catch (e) {
      return { ...base, status: 'error', note: errorMessage(e) };
    }
  };

  const rows: Row[] = [];
  const matmulRows: MatmulRow[] = [];
  for (const [index, shape] of shapes.entries()) {
    let inputs: BenchInputs | undefined;
    const lazyInputs = () => {
      inputs ??= benchInputs(shape, 1000 + index);
      return inputs;
    };
    for (const impl of impls) {
      const row = await measure(impl, shape, lazyInputs);
      rows.push(row);
      emit({ type: 'row', row });
    }
    if (options.matmul && wanted.has('ours') && shape.group === 'prefill') {
      emit({ type: 'progress', message: `matmul at the GEMM shape of ${shape.name}` });
      const row = await timeMatmul(ctx, probe, shape.Lq, options);
      matmulRows.push(row);
      emit({ type: 'matmul', row });
    }
  }

  const layerRows: LayerRow[] = [];
  if (selectsLayer(options.shapes)) {
    for (const dtype of ['f32', 'f16'] as const) {
      emit({ type: 'progress', message: `decode layer: ${dtype}` });
      const row = await timeLayer(ctx, dtype);
      layerRows.push(row);
      emit({ type: 'layer', row });
    }
  }

  const sparseRows: SparseRow[] = [];
  if (selectsSparse(options.shapes)) {
    // the fastest peer on every attention shape (README): onnxruntime-web WebGPU, subgroups off
    // (with subgroups its prefill is wrong on SwiftShader); windows also through its
    // GroupQueryAttention's local_window_size
    let peers: SparsePeers | undefined;
    if (wanted.has('ort')) {
      const device = await deviceWithout((await navigator.gpu.requestAdapter())!, 'subgroup', 'ort-sparse');
      const label = adapterFeatures.includes('subgroups')
        ? 'onnxruntime-web WebGPU (subgroups off)'
        : 'onnxruntime-web WebGPU';
      peers = { bias: ortWebgpu(device, 'ort', label), window: ortGqaWebgpu(device, 'ort-gqa', label) };
    }
    for (const c of selectSparseCases(options.shapes)) {
      emit({ type: 'progress', message: `sparse: ${c.name}` });
      const row = await timeSparse(ctx, c, options, peers);
      sparseRows.push(row);
      emit({ type: 'sparse', row });
    }
    peers?.bias?.dispose();
  }

  let backward: { rows: BackwardRow[]; train: TrainRow[] } = { rows: [], train: [] };
  if (backwardShapes.length) {
    const makers: [string, () => BackwardImpl][] = [
      ['ours', () => oursFusedBackward(ctx, probe)],
      ['composed', () => oursComposedBackward(ctx, probe)],
      ['tfjs', () => tfjsBackward()],
    ];
    const backwardImpls = makers.filter(([id]) => wanted.has(id)).map(([, make]) => make());
    backward = await runBackwardSection(
      ctx,
      backwardImpls,
      backwardShapes,
      { ...options, training: wanted.has('ours') || wanted.has('composed') },
      (e) => emit(e),
    );
    for (const impl of backwardImpls) impl.dispose();
  }

  for (const impl of impls) impl.dispose();
  probe.destroy();
  ctx.destroy();
  const report: BenchReport = {
    date: new Date().toISOString(),
    adapter: ctx.adapterInfo,
    features: adapterFeatures,
    userAgent: navigator.userAgent,
    options,
    shapes,
    rows,
    matmul: matmulRows,
    layer: layerRows,
    layerModel: DECODE_LAYER,
    roofs,
    sparse: sparseRows,
    backwardShapes,
    backward: backward.rows,
    train: backward.train,
    trainModel: TRAIN_MODEL,
    targets: targets(shapes, rows, matmulRows, backward.rows),
  };
  emit({ type: 'done', report });
  return report;
}
