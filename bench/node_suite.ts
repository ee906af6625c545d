// The benchmark in Node through Dawn (`npm run bench:node`, run by bench/node.mjs): no browser, our
// own kernels on the adapter Dawn picks (a real GPU when there is one, see src/node.ts), and
// onnxruntime-web's WebGPU MultiHeadAttention on the same adapter (bench/peers_node.ts). Steps: 1. every kernel form (ATTENTION_KERNELS) in each storage dtype checked
// against the float64 reference on small shapes, and again on a device without shader-f16 and
// subgroups where the adapter has them (the variants other adapters run); 2. the adapter's roofs (bench/roofs.ts);
// 3. tuning (src/tune.ts) of the kernel form for each shape; 4. each attention shape timed in each
// form, as GFLOP/s and as a fraction of the roof that bounds it, then the peers; 5. the decode layer (a small
// transformer generating tokens), f32 and f16; 6. the backward section; 7. the sparse section
// (bench/sparse.ts: each pattern against its dense bool mask, full attention and the peers).

import { loadavg } from 'node:os';
import {
  ATTENTION_KERNELS,
  type AttentionKernel,
  type Context,
  createContext,
  fromF16Bits,
  planAttention,
  randomUniform,
  seededRandom,
  type Tensor,
  type TuneResult,
  toF16Bits,
  tuneAttention,
  tunedKernel,
} from '../src';
import { nodeGpu } from '../src/node';
import { attention } from '../src/ops/attention';
import { matrixConfig } from '../src/ops/matrix_tiles';
import { attentionCpu } from '../src/reference';
import {
  type BackwardRow,
  oursComposedBackward,
  oursFusedBackward,
  runBackwardSection,
  TRAIN_MODEL,
  type TrainRow,
} from './backward';
import { runDecode } from './decode_layer';
import {
  BACKWARD_HEADER as BACKWARD_TABLE_HEADER,
  backwardCells,
  SPARSE_HEADER,
  sparseCells,
  trainCells,
} from './format';
import { NodePeers, type PeerRow } from './peers_node';
import { PassProbe } from './probe';
import { attentionBytes, attentionFlops, measureRoofs, type Roofs, roofFraction } from './roofs';
import {
  BACKWARD,
  type BenchShape,
  isSparseWord,
  SHAPES,
  selectBackward,
  selectSparseCases,
  selectsSparse,
} from './shapes';
import { SPARSE_CASES, type SparseCase, type SparseRow, timeSparse } from './sparse';
import { backwardTargets } from './targets';
import { benchInputs, median } from './timing';

export interface NodeBenchOptions {
  /** Few small shapes, short roofs and a short layer run: minutes on a CPU adapter. */
  quick: boolean;
  /** Comma list of shape names or groups; '' for the mode's default. */
  shapes: string;
  /** Timed calls per row at most (median taken). */
  repeats: number;
  /** Seconds one row's timed calls may take (fewer calls, at least 2, beyond it). */
  rowBudgetS: number;
  /** Time bound of tuning, ms. */
  tuneBudgetMs: number;
  /** Skip the decode layer. */
  noLayer: boolean;
  /** Skip the peers (onnxruntime-web) of the attention shapes. */
  noPeers: boolean;
}

export const NODE_DEFAULTS: NodeBenchOptions = {
  quick: false,
  shapes: '',
  repeats: 10,
  rowBudgetS: 10,
  tuneBudgetMs: 20_000,
  noLayer: false,
  noPeers: false,
};

/** Shapes a GPU needs to show the issue-12 targets (L >= 2048 at D 64 and 128, Lk >= 8192). */
const GPU_SHAPES: BenchShape[] = [
  { name: 'prefill-4096', group: 'prefill', B: 1, Hq: 8, Hkv: 8, Lq: 4096, Lk: 4096, D: 64, causal: false },
  { name: 'd128-2048', group: 'd128', B: 1, Hq: 8, Hkv: 8, Lq: 2048, Lk: 2048, D: 128, causal: false },
  {
    name: 'decode-gqa-32768',
    group: 'decode',
    B: 1,
    Hq: 32,
    Hkv: 8,
    Lq: 1,
    Lk: 32768,
    D: 128,
    causal: false,
  },
];
const ALL_SHAPES = [...SHAPES, ...GPU_SHAPES];
const QUICK_SHAPES = ['prefill-128', 'prefill-512', 'gqa-512', 'decode-2048'];

/** The decode-layer model: GPU-sized, or the page's small model in quick mode. */
const LAYER_MODEL = { steps: 64, layers: 4, embedDim: 2048, numHeads: 16, numKvHeads: 4, prompt: 512 };
const QUICK_LAYER_MODEL = { steps: 8, layers: 2, embedDim: 256, numHeads: 8, numKvHeads: 2, prompt: 16 };

const FORMS: readonly AttentionKernel[] = ATTENTION_KERNELS;
const TOL = { f32: 1e-4, f16: 2e-3 };

export interface CheckRow {
  form: AttentionKernel;
  dtype: 'f32' | 'f16';
  /** Optional shader features the device was created without ('' for none: the device's all). */
  without: string;
  shape: string;
  /** What the plan ran: path and form. */
  kernel: string;
  /** Largest |out - ref| / (atol / rtol + |ref|) scaled so that 1 is the tolerance. */
  err: number;
  ok: boolean;
  error?: string;
}

export interface NodeRow {
  shape: string;
  form: AttentionKernel;
  /** Whether this form is the context's rule (default) and tuning's choice for the shape. */
  rule: boolean;
  tuned: boolean;
  kernel: string;
  status: 'ok' | 'error' | 'skipped';
  note?: string;
  runs?: number;
  medianMs?: number;
  gpuMs?: number;
  gflops?: number;
  gbps?: number;
  bound?: 'compute' | 'bandwidth';
  /** Of the bounding roof, from GPU time where measured, else wall time. */
  roofFraction?: number;
}

export interface NodeLayerRow {
  dtype: 'f32' | 'f16';
  status: 'ok' | 'error';
  note?: string;
  tokensPerSecond?: number;
  msPerLayer?: number;
  prefillMs?: number;
}

export interface NodeBenchReport {
  date: string;
  runner: 'node';
  adapter: { vendor: string; architecture: string; description: string; isFallbackAdapter: boolean };
  features: string[];
  /** The kernel form the context's rule picks on this adapter. */
  ruleKernel: AttentionKernel;
  options: NodeBenchOptions;
  checks: CheckRow[];
  roofs: Roofs;
  tuning: TuneResult;
  shapes: BenchShape[];
  rows: NodeRow[];
  /** Peers timed on the attention shapes (bench/peers_node.ts); absent with noPeers. */
  peers?: PeerRow[];
  /** Why no peer ran, when they could not be set up (e.g. onnxruntime-web missing). */
  peerError?: string;
  layerModel: typeof LAYER_MODEL;
  layer: NodeLayerRow[];
  /** The backward section (ours fused and composed; no peers in Node), when selected. */
  backwardShapes?: BenchShape[];
  backward?: BackwardRow[];
  train?: TrainRow[];
  trainModel?: typeof TRAIN_MODEL;
  /** The sparse section (with onnxruntime-web unless noPeers), when selected. */
  sparse?: SparseRow[];
  seconds: number;
  /** The machine's 1-minute load average at the start and the end (CPU adapters share the cores). */
  loadAverage: [number, number];
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);

const isBackwardWord = (w: string) => w === BACKWARD || w.startsWith(`${BACKWARD}:`);

/** The backward section's shapes: those --shapes names (backward, backward:NAME), all in a full run. */
function selectBackwardShapes(o: NodeBenchOptions): BenchShape[] {
  if (!o.shapes) return o.quick ? [] : selectBackward('all');
  const words = o.shapes.split(',').filter(Boolean);
  if (words.includes('all')) return selectBackward('all');
  const backward = words.filter(isBackwardWord);
  return backward.length ? selectBackward(backward.join(',')) : [];
}

/** The sparse section's cases: those --shapes names (sparse, a case's name), all in a full run. */
function selectSparse(o: NodeBenchOptions): SparseCase[] {
  if (!o.shapes) return o.quick ? [] : SPARSE_CASES;
  return selectsSparse(o.shapes) ? selectSparseCases(o.shapes) : [];
}

function selectShapes(o: NodeBenchOptions): BenchShape[] {
  const all = (o.shapes || (o.quick ? QUICK_SHAPES.join(',') : 'all')).split(',').filter(Boolean);
  if (all.includes('all')) return ALL_SHAPES;
  const words = all.filter((w) => !isBackwardWord(w) && !isSparseWord(w));
  const unknown = words.filter((w) => !ALL_SHAPES.some((s) => s.name === w || s.group === w));
  if (unknown.length) {
    throw new Error(
      `--shapes: unknown ${unknown.join(', ')}; expected names or groups of ${ALL_SHAPES.map((s) => s.name).join(', ')}`,
    );
  }
  return ALL_SHAPES.filter((s) => words.includes(s.name) || words.includes(s.group));
}

/** Small shapes of every kind the benchmark times: odd lengths, GQA, causal, D 128, decode. */
const CHECK_SHAPES: BenchShape[] = [
  { name: 'prefill', group: '', B: 1, Hq: 2, Hkv: 2, Lq: 77, Lk: 77, D: 64, causal: false },
  { name: 'causal', group: '', B: 1, Hq: 2, Hkv: 2, Lq: 77, Lk: 77, D: 64, causal: true },
  { name: 'gqa', group: '', B: 1, Hq: 4, Hkv: 2, Lq: 33, Lk: 77, D: 64, causal: false },
  { name: 'd128', group: '', B: 1, Hq: 2, Hkv: 2, Lq: 20, Lk: 45, D: 128, causal: true },
  { name: 'decode', group: '', B: 1, Hq: 8, Hkv: 2, Lq: 1, Lk: 333, D: 128, causal: false },
];

/** The kernel a call runs, with its split over keys (flash) or its key chunks (decode). */
function kernelOf(q: Tensor, k: Tensor, v: Tensor, causal: boolean): string {
  const plan = planAttention(q, k, v, { causal });
  if (plan.path === 'flash') {
    return `flash (${plan.kernel}${plan.keySplits > 1 ? `, ${plan.keySplits} key splits` : ''})`;
  }
  return plan.path === 'decode' ? `decode (${plan.kernel}, ${plan.chunks} chunks)` : plan.path;
}

/**
 * Shader features whose absence selects other kernel variants (f16 storage unpacked or packed,
 * reductions with or without subgroups): the checks run again on a device without them.
 */
const VARIANT_FEATURES: readonly GPUFeatureName[] = ['shader-f16', 'subgroups'];
/** The shapes of that second round (its variants matter, not more shapes): flash and decode paths. */
const REDUCED_CHECK_SHAPES = CHECK_SHAPES.filter((s) => s.name === 'causal' || s.name === 'decode');

/** One form and dtype on one small shape against the float64 reference. */
async function check(
  ctx: Context,
  form: AttentionKernel,
  dtype: 'f32' | 'f16',
  s: BenchShape,
  without: string,
) {
  const random = seededRandom(7);
  const round = (x: Float32Array) => (dtype === 'f16' ? x.map((e) => fromF16Bits(toF16Bits(e))) : x);
  const qd = round(randomUniform(random, s.B * s.Hq * s.Lq * s.D));
  const kd = round(randomUniform(random, s.B * s.Hkv * s.Lk * s.D));
  const vd = round(randomUniform(random, s.B * s.Hkv * s.Lk * s.D));
  const q = ctx.tensor(qd, [s.B, s.Hq, s.Lq, s.D], { dtype });
  const k = ctx.tensor(kd, [s.B, s.Hkv, s.Lk, s.D], { dtype });
  const v = ctx.tensor(vd, [s.B, s.Hkv, s.Lk, s.D], { dtype });
  const row: CheckRow = { form, dtype, without, shape: s.name, kernel: '', err: Number.NaN, ok: false };
  try {
    row.kernel = kernelOf(q, k, v, s.causal);
    const { output } = await attention(q, k, v, { causal: s.causal });
    const got = (await output.read()) as Float32Array;
    output.destroy();
    const ref = attentionCpu(
      { data: qd, shape: [s.B, s.Hq, s.Lq, s.D] },
      { data: kd, shape: [s.B, s.Hkv, s.Lk, s.D] },
      { data: vd, shape: [s.B, s.Hkv, s.Lk, s.D] },
      { causal: s.causal },
    ).output.data;
    // the matrix form multiplies f16 operands (its documented precision) whatever the storage
    const tol = TOL[form === 'matrix' ? 'f16' : dtype];
    let worst = 0;
    for (let i = 0; i < ref.length; i++) {
      const e = Math.abs(got[i] - ref[i]) / (tol + tol * Math.abs(ref[i]));
      if (!(e <= worst)) worst = Number.isNaN(e) ? Number.POSITIVE_INFINITY : e;
    }
    row.err = worst;
    row.ok = worst <= 1 && got.length === ref.length;
  } catch (e) {
    row.error = message(e);
  } finally {
    for (const t of [q, k, v]) t.destroy();
  }
  return row;
}

/** Runs the Node benchmark; `progress` hears each step, `row` each result as it comes. */
export async function runNodeBench(
  partial: Partial<NodeBenchOptions>,
  progress: (message: string) => void,
  onRow: (line: string) => void = () => {},
): Promise<NodeBenchReport> {
  const o = { ...NODE_DEFAULTS, ...partial };
  const started = performance.now();
  const loadAtStart = loadavg()[0];
  const shapes = selectShapes(o);
  // as in the Node specs: e.g. enable-dawn-features=allow_unsafe_apis (subgroup matrices) or
  // disable-dawn-features=timestamp_quantization (Dawn rounds timestamps to 65.5 us by default)
  const gpu = await nodeGpu(process.env.WEBGPU_ATTENTION_DAWN_FLAGS?.split(',').filter(Boolean) ?? []);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('bench:node: requestAdapter() returned null (no WebGPU adapter)');
  const features = [...adapter.features].sort();
  const ctx = await createContext({ gpu, adapter, label: 'bench:node' });
  const errors: string[] = [];
  ctx.device.addEventListener('uncapturederror', (e) => {
    errors.push((e as GPUUncapturedErrorEvent).error.message);
  });
  const forms = new Map<AttentionKernel, Context>();
  for (const form of FORMS) {
    forms.set(
      form,
      await createContext({ device: ctx.device, attentionKernel: form, label: `bench:${form}` }),
    );
  }
  // a second device without the variant features the adapter has, for the checks' second round
  const missing = VARIANT_FEATURES.filter((f) => ctx.features.has(f));
  const reduced = missing.length
    ? await createContext({
        gpu,
        adapter: (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? undefined,
        disableFeatures: [...missing],
        label: 'bench:reduced',
      })
    : undefined;
  const probe = new PassProbe(ctx.device);
  let peers: NodePeers | undefined;
  let peerError: string | undefined;
  try {
    const a = ctx.adapterInfo;
    progress(`adapter: ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ')}`);

    // 1. checks
    const checks: CheckRow[] = [];
    const dtypes = ['f32', 'f16'] as const;
    const rounds: [
      without: string,
      shapes: BenchShape[],
      formContext: (f: AttentionKernel) => Promise<Context>,
    ][] = [['', CHECK_SHAPES, async (f) => forms.get(f)!]];
    if (reduced) {
      const device = reduced.device;
      rounds.push([
        missing.join(', '),
        REDUCED_CHECK_SHAPES,
        (f) => createContext({ device, attentionKernel: f }),
      ]);
    }
    for (const [without, checkShapes, formContext] of rounds) {
      for (const form of FORMS) {
        const fc = await formContext(form);
        for (const dtype of dtypes) {
          for (const s of checkShapes) {
            const what = `${form} ${dtype} ${s.name}${without ? ` without ${without}` : ''}`;
            progress(`check ${what}`);
            const row = await check(fc, form, dtype, s, without);
            checks.push(row);
            if (!row.ok) onRow(`CHECK FAILED: ${what}: ${row.error ?? `err ${row.err}`}`);
          }
        }
        if (without) fc.destroy();
      }
    }
    await ctx.sync();
    if (reduced) {
      await reduced.sync();
      reduced.destroy();
    }
    if (errors.length) throw new Error(`WebGPU error during the checks: ${errors[0]}`);
    const passed = new Set(FORMS.filter((f) => checks.every((c) => c.form !== f || c.ok)));
    onRow(`checks: ${checks.filter((c) => c.ok).length} of ${checks.length} passed`);

    // 2. roofs
    const roofs = await measureRoofs(ctx.device, {
      targetMs: o.quick ? 20 : 40,
      samples: o.quick ? 3 : 5,
      bytes: o.quick ? 32 * 2 ** 20 : 512 * 2 ** 20,
      progress,
    });
    const r = (x: { value: number; unit: string } | undefined) =>
      x ? `${x.value.toPrecision(4)} ${x.unit}` : '-';
    onRow(
      `roofs (${roofs.timing}): f32 FMA ${r(roofs.f32)}, f16 FMA ${r(roofs.f16)}, read ${r(roofs.read)}, copy ${r(roofs.copy)}`,
    );

    // 3. tuning
    const tuneShapes = shapes.map((s) => ({
      B: s.B,
      Hq: s.Hq,
      Hkv: s.Hkv,
      Lq: s.Lq,
      Lk: s.Lk,
      D: s.D,
      Dv: s.D,
      causal: s.causal,
    }));
    const tuning = await tuneAttention(ctx, tuneShapes, {
      // the tuner's own candidates (the matrix form only where its builtins run) that passed
      candidates: FORMS.filter((f) => passed.has(f) && (f !== 'matrix' || matrixConfig(ctx) !== undefined)),
      budgetMs: o.tuneBudgetMs,
      repeats: o.quick ? 2 : 5,
      progress,
    });

    // 4. attention shapes, ours in every form, then the peers
    if (!o.noPeers) {
      try {
        peers = await NodePeers.create(gpu, { repeats: o.repeats, rowBudgetS: o.rowBudgetS }, roofs);
      } catch (e) {
        peerError = message(e);
        onRow(`peers: none (${peerError})`);
      }
    }
    const rows: NodeRow[] = [];
    const peerRows: PeerRow[] = [];
    for (const [index, s] of shapes.entries()) {
      // the same inputs for our forms and the peers
      const inputs = benchInputs(s, 1000 + index);
      const { q: qd, k: kd, v: vd } = inputs;
      const ts = { ...s, Dv: s.D };
      const choice = tunedKernel(ctx, ts, 'f32', s.causal);
      for (const form of FORMS) {
        const fc = forms.get(form)!;
        const base = { shape: s.name, form, rule: form === ctx.attentionKernel, tuned: form === choice };
        if (!passed.has(form)) {
          rows.push({ ...base, kernel: '', status: 'skipped', note: 'failed its checks' });
          continue;
        }
        progress(`${s.name}: ${form}`);
        const q = fc.tensor(qd, [s.B, s.Hq, s.Lq, s.D]);
        const k = fc.tensor(kd, [s.B, s.Hkv, s.Lk, s.D]);
        const v = fc.tensor(vd, [s.B, s.Hkv, s.Lk, s.D]);
        const row: NodeRow = { ...base, kernel: kernelOf(q, k, v, s.causal), status: 'ok' };
        try {
          const call = async () => {
            const { value, probe: p } = await probe.record(() => attention(q, k, v, { causal: s.causal }));
            value.output.destroy();
            return p;
          };
          const t0 = performance.now();
          await call(); // compiles
          const warmMs = performance.now() - t0;
          const affordable = Math.floor((o.rowBudgetS * 1000) / Math.max(warmMs, 1e-3));
          const runs = Math.min(o.repeats, Math.max(2, affordable));
          const wall: number[] = [];
          const gpuMs: number[] = [];
          for (let i = 0; i < runs; i++) {
            const t = performance.now();
            const p = await call();
            wall.push(p.doneAt - t);
            if (p.gpuMs !== undefined) gpuMs.push(p.gpuMs);
          }
          row.runs = runs;
          row.medianMs = median(wall);
          row.gpuMs = gpuMs.length === runs ? median(gpuMs) : undefined;
          const ms = row.gpuMs ?? row.medianMs;
          const fr = roofFraction(s, ms, roofs);
          row.gflops = attentionFlops(s) / ms / 1e6;
          row.gbps = attentionBytes(s) / ms / 1e6;
          row.bound = fr.bound;
          row.roofFraction = fr.fraction;
        } catch (e) {
          row.status = 'error';
          row.note = message(e);
        } finally {
          for (const t of [q, k, v]) t.destroy();
        }
        rows.push(row);
        onRow(nodeRowLine(row));
      }
      for (const peer of peers?.peers ?? []) {
        progress(`${s.name}: ${peer.label}`);
        const row = await peers!.time(peer, s, inputs);
        peerRows.push(row);
        onRow(`peer: ${peerCells(row, rows).filter(Boolean).join(' | ')}`);
      }
    }

    // 5. decode layer
    const layerModel = o.quick ? QUICK_LAYER_MODEL : LAYER_MODEL;
    const layer: NodeLayerRow[] = [];
    if (!o.noLayer) {
      for (const dtype of ['f32', 'f16'] as const) {
        progress(`decode layer ${dtype}`);
        try {
          const res = await runDecode(ctx, { ...layerModel, dtype });
          const ok = res.last.every(Number.isFinite);
          layer.push({
            dtype,
            status: ok ? 'ok' : 'error',
            note: ok
              ? dtype === 'f16'
                ? ctx.hasF16
                  ? 'shader-f16'
                  : 'packed f16'
                : undefined
              : 'non-finite',
            tokensPerSecond: res.tokensPerSecond,
            msPerLayer: res.msPerLayer,
            prefillMs: res.prefillMs,
          });
        } catch (e) {
          layer.push({ dtype, status: 'error', note: message(e) });
        }
        const l = layer.at(-1)!;
        onRow(
          `decode layer ${dtype}: ${l.status === 'ok' ? `${l.tokensPerSecond!.toFixed(1)} tokens/s` : l.note}`,
        );
      }
    }
    // 6. backward section (bench/backward.ts): ours fused and composed, then training steps
    const backwardShapes = selectBackwardShapes(o);
    let backward: { rows: BackwardRow[]; train: TrainRow[] } = { rows: [], train: [] };
    if (backwardShapes.length) {
      backward = await runBackwardSection(
        ctx,
        [
          oursFusedBackward(ctx, probe),
          oursFusedBackward(ctx, probe, true),
          oursComposedBackward(ctx, probe),
        ],
        backwardShapes,
        {
          repeats: o.repeats,
          warmup: 1,
          maxSlowL: Number.POSITIVE_INFINITY,
          rowBudgetS: o.rowBudgetS,
          training: true,
        },
        (e) => {
          if (e.type === 'progress') progress(e.message);
          else if (e.type === 'backward')
            onRow(`backward: ${backwardCells(e.row).filter(Boolean).join(' | ')}`);
          else onRow(`training: ${trainCells(e.row).filter(Boolean).join(' | ')}`);
        },
      );
    }

    // 7. sparse section (bench/sparse.ts): windows, block masks, documents
    const sparse: SparseRow[] = [];
    for (const c of selectSparse(o)) {
      progress(`sparse: ${c.name}`);
      const row = await timeSparse(
        ctx,
        c,
        { repeats: o.repeats, warmup: 1, rowBudgetS: o.rowBudgetS },
        peers?.sparse,
      );
      sparse.push(row);
      onRow(`sparse: ${sparseCells(row).filter(Boolean).join(' | ')}`);
    }

    await ctx.sync();
    if (errors.length) throw new Error(`WebGPU error: ${errors[0]}`);
    return {
      date: new Date().toISOString(),
      runner: 'node',
      adapter: ctx.adapterInfo,
      features,
      ruleKernel: ctx.attentionKernel,
      options: o,
      checks,
      roofs,
      tuning,
      shapes,
      rows,
      ...(o.noPeers ? {} : { peers: peerRows, peerError }),
      layerModel,
      layer,
      backwardShapes,
      backward: backward.rows,
      train: backward.train,
      trainModel: TRAIN_MODEL,
      sparse,
      seconds: (performance.now() - started) / 1000,
      loadAverage: [loadAtStart, loadavg()[0]],
    };
  } finally {
    peers?.dispose();
    probe.destroy();
    for (const c of forms.values()) c.destroy();
    reduced?.destroy();
    ctx.destroy();
  }
}

const fixed = (x: number | undefined, digits = 3) =>
  x === undefined || !Number.isFinite(x) ? '' : x >= 100 ? x.toFixed(0) : x.toPrecision(digits);

/** Columns of the attention table. */
export const NODE_HEADER = [
  'shape',
  'form',
  'chosen by',
  'kernel',
  'runs',
  'median ms',
  'GPU ms',
  'GFLOP/s',
  'GB/s',
  'bound',
  '% of roof',
];

export function nodeRowCells(r: NodeRow): string[] {
  const by = [r.rule ? 'rule' : '', r.tuned ? 'tuning' : ''].filter(Boolean).join(', ');
  if (r.status !== 'ok') return [r.shape, r.form, by, r.kernel, '', r.status, '', '', '', '', r.note ?? ''];
  return [
    r.shape,
    r.form,
    by,
    r.kernel,
    String(r.runs),
    fixed(r.medianMs),
    fixed(r.gpuMs),
    fixed(r.gflops),
    fixed(r.gbps),
    r.bound ?? '',
    r.roofFraction === undefined ? '' : `${(100 * r.roofFraction).toFixed(1)}%`,
  ];
}

const WIDTHS = [17, 10, 13, 18, 5, 10, 9, 9, 8, 10, 9];
export function nodeRowLine(r: NodeRow): string {
  return nodeRowCells(r)
    .map((c, i) => c.padEnd(WIDTHS[i]))
    .join(' ')
    .trimEnd();
}
export const nodeHeaderLine = () =>
  NODE_HEADER.map((c, i) => c.padEnd(WIDTHS[i]))
    .join(' ')
    .trimEnd();

/** Columns of the peers' table. */
export const PEER_HEADER = [
  'shape',
  'peer',
  'runs',
  'median ms',
  'GFLOP/s',
  'GB/s',
  '% of roof',
  'ours ms',
  'ours x faster',
  'note',
];

/** A peer's row, with our fastest form's wall time on the shape (`rows`) and how many times faster it is. */
export function peerCells(r: PeerRow, rows: readonly NodeRow[]): string[] {
  if (r.status !== 'ok') return [r.shape, r.peer, '', r.status, '', '', '', '', '', r.note ?? ''];
  const ours = rows.filter((x) => x.shape === r.shape && x.status === 'ok').map((x) => x.medianMs!);
  const best = ours.length ? Math.min(...ours) : undefined;
  return [
    r.shape,
    r.peer,
    String(r.runs),
    fixed(r.medianMs),
    fixed(r.gflops),
    fixed(r.gbps),
    r.roofFraction === undefined ? '' : `${(100 * r.roofFraction).toFixed(1)}%`,
    fixed(best),
    best === undefined ? '' : `${fixed(r.medianMs! / best)}x`,
    r.note ?? '',
  ];
}

/** The issue-12 targets this run can speak to (on a GPU; reported on any adapter). */
export function nodeTargets(report: NodeBenchReport): { target: string; value?: number; goal: number }[] {
  // the faster form's fraction, at the worst of the matching shapes (every one must meet it)
  const best = (pred: (s: BenchShape) => boolean) => {
    const xs = report.shapes.filter(pred).map((s) => bestOf(report, s.name));
    return xs.length && xs.every(Number.isFinite) ? Math.min(...xs) : undefined;
  };
  return [
    {
      target: 'prefill, L >= 2048 (D 64 and 128): fraction of the f32 FMA roof',
      value: best((s) => s.Lq >= 2048 && !s.causal),
      goal: 0.4,
    },
    {
      target: 'prefill, H 8, L 512: fraction of the f32 FMA roof',
      value: best((s) => s.name === 'prefill-512'),
      goal: 0.2,
    },
    {
      target: 'decode, Lk >= 8192: fraction of the read bandwidth',
      value: best((s) => s.Lq === 1 && s.Lk >= 8192),
      goal: 0.65,
    },
  ];
}

/** The faster form's roof fraction on shape `name` (-Infinity when none ran). */
function bestOf(report: NodeBenchReport, name: string): number {
  const xs = report.rows.filter((r) => r.shape === name && r.status === 'ok').map((r) => r.roofFraction!);
  return xs.length ? Math.max(...xs) : Number.NEGATIVE_INFINITY;
}

/** The features the checks' second round ran without ('' where it did not run). */
const reducedChecks = (report: NodeBenchReport) => report.checks.find((c) => c.without)?.without ?? '';

/** The Markdown report written next to the JSON. */
export function nodeMarkdown(report: NodeBenchReport, sources: string): string {
  const a = report.adapter;
  const roof = (x: { value: number; unit: string; work: string } | undefined) =>
    x ? `${fixed(x.value, 4)} ${x.unit} | ${x.work}` : 'n/a (no shader-f16) |';
  const table = (header: string[], rows: string[][]) =>
    [
      `| ${header.join(' | ')} |`,
      `|${header.map(() => '---').join('|')}|`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n');
  const failed = report.checks.filter((c) => !c.ok);
  const lines = [
    `# bench:node: ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ')}`,
    '',
    `Sources: ${sources}. ${report.date}, ${report.seconds.toFixed(0)} s${report.options.quick ? ', --quick' : ''}, ` +
      `load average ${report.loadAverage.map((x) => x.toFixed(1)).join(' -> ')}. ` +
      `Adapter features: ${report.features.join(', ')}. The context's rule picks the \`${report.ruleKernel}\` form here` +
      `${a.isFallbackAdapter ? ' (a fallback adapter: compute runs on the CPU, so these are not GPU figures)' : ''}.`,
    '',
    '## Checks against the float64 reference',
    '',
    `${report.checks.length - failed.length} of ${report.checks.length} passed (every form: ${FORMS.join(', ')}; f32 and f16 storage; shapes ${CHECK_SHAPES.map((s) => s.name).join(', ')}` +
      `${reducedChecks(report) ? `; and ${REDUCED_CHECK_SHAPES.map((s) => s.name).join(', ')} again on a device without ${reducedChecks(report)}, for the variants adapters without them run` : ''}` +
      '; error in units of the tolerance, f32 1e-4 + 1e-4·|ref|, f16 (and the matrix form, whose products take f16 operands) 2e-3 + 2e-3·|ref|).' +
      (failed.length
        ? ` Failed: ${failed.map((c) => `${c.form} ${c.dtype} ${c.shape}${c.without ? ` without ${c.without}` : ''} (${c.error ?? c.err.toPrecision(3)})`).join('; ')}.`
        : ''),
    '',
    `## Roofs (measured in this run, ${report.roofs.timing})`,
    '',
    table(
      ['roof', 'value', 'how'],
      [
        ['f32 FMA', ...roof(report.roofs.f32).split(' | ')],
        ['f16 FMA', ...roof(report.roofs.f16).split(' | ')],
        ['read (vec4 kernel)', ...roof(report.roofs.read).split(' | ')],
        ['copy (copyBufferToBuffer)', ...roof(report.roofs.copy).split(' | ')],
      ],
    ),
    '',
    '## Attention',
    '',
    'Each shape in every kernel form. GFLOP/s counts 4·B·H·Lq·Lk·D (halved when causal); GB/s counts q, k, v read ' +
      'and the output written once. "bound": compute when the call does more flops per byte than the adapter\'s ' +
      'ridge point (f32 roof / read roof), else bandwidth; "% of roof" is GFLOP/s of the f32 FMA roof or GB/s of the ' +
      'read roof, from GPU time where timestamps exist, else wall time. "chosen by": the form the context\'s rule ' +
      'picks, and the one tuning picked.',
    '',
    table(
      NODE_HEADER,
      report.rows.map((r) => nodeRowCells(r).map((c) => c.replaceAll('|', '/'))),
    ),
    '',
    ...(report.peers
      ? [
          '## Peers on the same adapter',
          '',
          "onnxruntime-web's WebGPU MultiHeadAttention (bench/impl/ort.ts), with and without the adapter's subgroups, " +
            'checked against the float64 reference on a small shape of the same kind first, then timed by the wall ' +
            'clock until its device is idle (it exposes no GPU time). "ours ms": our fastest form\'s median wall ms ' +
            '(the table above); "ours x faster": the peer\'s ms over ours.' +
            (report.peerError ? ` No peer ran: ${report.peerError}.` : ''),
          '',
          table(
            PEER_HEADER,
            report.peers.map((r) => peerCells(r, report.rows).map((c) => c.replaceAll('|', '/'))),
          ),
          '',
        ]
      : []),
    '## Tuning',
    '',
    table(
      ['class', 'chosen', ...FORMS.map((f) => `${f} ms`), 'timing'],
      Object.entries(report.tuning.choices).map(([cls, c]) => [
        cls,
        c.kernel,
        ...FORMS.map((f) => fixed(c.ms[f])),
        c.timing,
      ]),
    ),
    ...(report.tuning.skipped.length
      ? [
          '',
          `Not tuned: ${report.tuning.skipped.map((s) => `Lq ${s.shape.Lq} Lk ${s.shape.Lk}${s.shape.causal ? ' causal' : ''} (${s.reason})`).join('; ')}.`,
        ]
      : []),
    '',
    '## Issue-12 targets (meant for a GPU)',
    '',
    table(
      ['target', 'measured', 'goal'],
      nodeTargets(report).map((t) => [
        t.target,
        t.value === undefined || !Number.isFinite(t.value)
          ? 'not measured'
          : `${(100 * t.value).toFixed(1)}%`,
        `${100 * t.goal}%`,
      ]),
    ),
  ];
  if (report.layer.length) {
    const m = report.layerModel;
    lines.push(
      '',
      `## Decode layer (${m.layers} layers, E ${m.embedDim}, ${m.numHeads} / ${m.numKvHeads} heads, prompt ${m.prompt}, ${m.steps} tokens)`,
      '',
      table(
        ['dtype', 'tokens/s', 'ms per layer', 'prefill ms', 'note'],
        report.layer.map((l) => [
          l.dtype,
          fixed(l.tokensPerSecond),
          fixed(l.msPerLayer),
          fixed(l.prefillMs),
          l.note ?? '',
        ]),
      ),
    );
  }
  if (report.backward?.length) {
    lines.push(
      '',
      '## Backward',
      '',
      'dq, dk, dv of attention, checked against the float64 attentionBackwardCpu first (L = 77, same heads). ' +
        "GFLOP/s counts the backward as FlashAttention-2 does: 2.5x the forward's 4·B·H·Lq·Lk·D (halved when causal). " +
        '"bwd / our fwd": backward ms over our fused forward (with returnLse) ms (goal <= 3x). "peak MiB": what the ' +
        'backward call allocated beyond its inputs and saved forward results; "L×L MiB": one B·Hq·Lq·Lk f32 buffer.',
      '',
      table(
        BACKWARD_TABLE_HEADER,
        report.backward.map((r) => backwardCells(r).map((c) => c.replaceAll('|', '/'))),
      ),
      '',
      table(
        ['target', 'shape', 'measured', 'goal', 'met'],
        backwardTargets(report.backward).map((t) => [
          t.name,
          t.shape,
          t.value === undefined ? 'not measured' : `${t.value.toPrecision(3)}×`,
          `${t.atMost ? '≤' : '≥'} ${t.goal}×`,
          t.met === undefined ? '?' : t.met ? 'yes' : 'no',
        ]),
      ),
    );
  }
  if (report.train?.length) {
    lines.push(
      '',
      '## Training steps of the demo model',
      '',
      table(
        ['training step', 'steps/s', 'ms per step', 'loss after', 'note'],
        report.train.map((r) => trainCells(r)),
      ),
    );
  }
  if (report.sparse?.length) {
    // without peers (--no-peers), the columns 'peer ms' and 'x peer' are left out
    const ran = report.sparse.some((r) => r.peerStatus !== undefined);
    const withoutPeer = (_: string, i: number) => ran || !SPARSE_HEADER[i].includes('peer');
    lines.push(
      '',
      '## Sparse',
      '',
      'q, k, v [1, H, L, 64] f32 (bench/sparse.ts), wall ms per call: each pattern against the same call with a dense ' +
        'bool mask [L, L] (not at L = 16384) and full attention (causal for causal patterns, unmasked for block masks); ' +
        (ran
          ? "peer: onnxruntime-web's fastest that can express the pattern (the note names it). "
          : 'no peers (--no-peers). ') +
        'Issue-11 goals: a 10%-density block mask >= 5x its dense mask; window 256 at L = 16384 >= 10x full causal.',
      '',
      table(
        SPARSE_HEADER.filter(withoutPeer),
        report.sparse.map((r) => sparseCells(r).filter(withoutPeer)),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
