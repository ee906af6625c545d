// Text of the results: table cells (the page and the terminal show the same), and the Markdown
// report that goes next to the JSON and into the README.

import { BACKWARD_FLOP_FACTOR, type BackwardRow, type TRAIN_MODEL, type TrainRow } from './backward';
import type { SparseRow } from './sparse';
import type { BenchReport, LayerRow, MatmulRow, Row } from './suite';
import type { Target } from './targets';

export const HEADER = [
  'shape',
  'implementation',
  'median ms',
  'min ms',
  'runs',
  'GFLOP/s',
  '% of roof',
  'GPU ms',
  'ours ×',
  'dispatches',
  'peak MiB',
  'check err',
  'note',
];

/** What each column of {@link HEADER} means, in the order of the header (shown under the table). */
export const COLUMN_NOTES: Record<string, string> = {
  shape: 'the problem: B, heads, Lq, Lk, D of a named shape (see the chart panels and bench/shapes.ts)',
  implementation:
    'who computes it: ours (fused flash kernel), a peer library, or a composed or naive baseline',
  'median ms': 'wall time from the call to the GPU finishing (onSubmittedWorkDone), median of the timed runs',
  'min ms': 'the fastest timed run',
  runs: 'timed runs after warm-up (fewer, at least 2, where a row would take longer than its time budget)',
  'GFLOP/s':
    'useful work 4·B·H·Lq·Lk·D (halved when causal) / median; or why the row was not timed: wrong, skipped, n/a, error',
  '% of roof':
    'of the adapter’s roof measured in the same run (bench/roofs.ts): GFLOP/s of the f32 FMA roof where the shape is compute-bound (prefill), GB/s (q, k, v read and the output written once) of the vec4 read roof where it is bandwidth-bound (decode); from GPU ms where measured',
  'GPU ms': 'time on the GPU from timestamp queries (ours only, where the adapter has timestamp-query)',
  'ours ×':
    'our fused GFLOP/s divided by this row’s: above 1 we are faster, below 1 the row is (blank on our own rows)',
  dispatches: 'compute passes one call records (ours only)',
  'peak MiB': 'largest GPU memory the call held at once, inputs included (ours only)',
  'check err':
    'largest |out − ref| / (1 + |ref|) against the float64 reference; above 1e-3 the row is marked wrong',
  note: 'which kernel ran, how a peer was run, or why a row was not timed',
};

/** What kind of adapter the numbers come from, in words: CPU emulation or a GPU. */
export function adapterKind(adapter: { vendor: string; architecture: string; description: string }): {
  cpu: boolean;
  text: string;
} {
  const words = `${adapter.vendor} ${adapter.architecture} ${adapter.description}`.toLowerCase();
  const emulator = ['swiftshader', 'llvmpipe', 'lavapipe', 'warp', 'software'].find((w) => words.includes(w));
  if (emulator) {
    return {
      cpu: true,
      text:
        `CPU emulation (${emulator === 'warp' ? 'WARP' : emulator === 'swiftshader' ? 'SwiftShader' : emulator}): ` +
        'WGSL runs on the CPU cores, so these numbers compare implementations on the same emulator, not GPUs. ' +
        'There the CPU peer (onnxruntime-web wasm) beating GPU libraries is expected: it runs native-style ' +
        'CPU code, while every WebGPU implementation pays for emulated GPU threads and memory.',
    };
  }
  return { cpu: false, text: 'a GPU: WebGPU implementations run on the graphics hardware.' };
}

/** The CSS class of a result row: our rows stand out, wrong and failed rows are marked. */
export function rowClass(row: { impl: string; status: string }): string {
  return [
    row.impl === 'ours' ? 'ours' : '',
    row.status === 'wrong' || row.status === 'error' ? row.status : '',
  ]
    .filter(Boolean)
    .join(' ');
}

const num = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x) ? '' : x >= 100 ? x.toFixed(0) : x.toPrecision(3);

/** The cells of one row; `ours` is our fused row of the same shape, for the ratio column. */
export function rowCells(row: Row, ours: Row | undefined): string[] {
  const timed = row.status === 'ok';
  const ratio =
    timed && ours?.status === 'ok' && row.impl !== 'ours' ? `${num(ours.gflops! / row.gflops!)}×` : '';
  // The GFLOP/s column names a status other than ok; the note says why.
  const note = [row.kernel ? `kernel: ${row.kernel}` : '', row.note ?? ''].filter(Boolean).join('; ');
  return [
    row.shape,
    row.label,
    timed ? num(row.medianMs) : '',
    timed ? num(row.minMs) : '',
    timed ? String(row.samplesMs?.length ?? '') : '',
    timed ? num(row.gflops) : row.status,
    timed && row.roof
      ? `${(100 * row.roof.fraction).toFixed(1)}% ${row.roof.bound === 'compute' ? 'FMA' : 'read'}`
      : '',
    num(row.gpuMedianMs),
    ratio,
    row.dispatches === undefined ? '' : String(row.dispatches),
    row.peakBytes === undefined ? '' : (row.peakBytes / 2 ** 20).toFixed(2),
    row.checkErr === undefined ? '' : row.checkErr.toExponential(1),
    note,
  ];
}

export const MATMUL_HEADER = ['matmul', 'median ms', 'min ms', 'GFLOP/s', 'GPU ms'];

export function matmulCells(row: MatmulRow): string[] {
  return [row.shape, num(row.medianMs), num(row.minMs), num(row.gflops), num(row.gpuMedianMs)];
}

export const LAYER_HEADER = [
  'decode layer',
  'tokens/s',
  'ms per layer',
  'ms per token',
  'prefill ms',
  'note',
];

/** One dtype of the decode-layer section; the tokens/s column names a status other than ok. */
export function layerCells(row: LayerRow): string[] {
  const timed = row.status === 'ok';
  return [
    row.dtype,
    timed ? num(row.tokensPerSecond) : row.status,
    num(row.msPerLayer),
    num(row.msPerToken),
    num(row.prefillMs),
    row.note ?? '',
  ];
}

export const SPARSE_HEADER = [
  'sparse',
  'pattern',
  'density',
  'sparse ms',
  'dense mask ms',
  'x dense',
  'full ms',
  'x full',
  'peer ms',
  'x peer',
  'note',
];

/**
 * One case of the sparse section: speed-ups over the dense bool mask, over full attention (causal
 * for causal patterns, else unmasked) and over the peer with a dense bias.
 */
export function sparseCells(row: SparseRow): string[] {
  const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(1)}x` : '');
  const notes = [
    row.note ?? (row.blockMaskMs === undefined ? '' : `createBlockMask ${num(row.blockMaskMs)} ms`),
    row.peerNote ?? '',
  ];
  return [
    row.name,
    row.pattern,
    row.density === undefined ? '' : `${(row.density * 100).toFixed(1)}%`,
    row.status === 'ok' ? num(row.sparseMs) : row.status,
    num(row.denseMs),
    ratio(row.denseMs, row.sparseMs),
    num(row.fullMs),
    ratio(row.fullMs, row.sparseMs),
    row.peerStatus === 'ok' ? num(row.peerMs) : (row.peerStatus ?? ''),
    ratio(row.peerMs, row.sparseMs),
    notes.filter(Boolean).join('; '),
  ];
}

/** What the decode-layer model is, in words. */
export function layerModelText(m: NonNullable<BenchReport['layerModel']>): string {
  return (
    `${m.layers} transformer blocks (E = ${m.embedDim}, ${m.numHeads} query heads, ${m.numKvHeads} kv heads, RoPE, KV cache,` +
    ` GELU MLP 4·E), random weights, ${m.prompt}-token prompt prefilled, then ${m.steps} tokens generated one at a time` +
    ' after one untimed token, waiting for the GPU after each'
  );
}

export const BACKWARD_HEADER = [
  'shape',
  'implementation',
  'forward ms',
  'backward ms',
  'runs',
  'GFLOP/s',
  'bwd / our fwd',
  'GPU ms',
  'dispatches',
  'peak MiB',
  'L×L MiB',
  'check err',
  'note',
];

/** What each column of {@link BACKWARD_HEADER} means (shown under the table and in the report). */
export const BACKWARD_COLUMN_NOTES: Record<string, string> = {
  'forward ms':
    'median wall time of the forward as training calls it: ours fused with returnLse, ours composed keeping the probabilities',
  'backward ms':
    'median wall time of dq, dk, dv from the saved forward (tfjs: the whole tf.grads call, which records its forward again)',
  runs: 'timed backward runs after warm-up',
  'GFLOP/s': `backward FLOPs counted as FlashAttention-2 does, ${BACKWARD_FLOP_FACTOR}x the forward's 4·B·H·Lq·Lk·D (halved when causal) = 10·B·H·Lq·Lk·D, / backward ms`,
  'bwd / our fwd': `backward ms / our fused forward ms on the same shape (goal for ours fused: <= 3×)`,
  'GPU ms': 'GPU time of the backward from timestamp queries (ours only)',
  dispatches: 'compute passes one backward call records (ours only)',
  'peak MiB':
    'largest memory the backward call allocated beyond its inputs and the saved forward results (ctx.peakBytes; ours only)',
  'L×L MiB':
    'one B·Hq·Lq·Lk f32 buffer of the shape, for comparison: a peak above it means an L×L buffer was made',
  'check err':
    'largest |grad − ref| / (1 + |ref|) over dq, dk, dv against the float64 attentionBackwardCpu at a small shape of the same kind (L = 77); above 1e-3 the row is marked wrong',
};

const mib = (bytes: number | undefined) => (bytes === undefined ? '' : (bytes / 2 ** 20).toFixed(2));

/** The cells of one backward row; the GFLOP/s column names a status other than ok. */
export function backwardCells(row: BackwardRow): string[] {
  const timed = row.status === 'ok';
  return [
    row.shape,
    row.label,
    timed ? num(row.forwardMs) : '',
    timed ? num(row.backwardMs) : '',
    timed ? String(row.runs ?? '') : '',
    timed ? num(row.gflops) : row.status,
    timed && row.ratio !== undefined ? `${num(row.ratio)}×` : '',
    num(row.gpuMs),
    row.dispatches === undefined ? '' : String(row.dispatches),
    mib(row.peakBytes),
    mib(row.llBytes),
    row.checkErr === undefined ? '' : row.checkErr.toExponential(1),
    row.note ?? '',
  ];
}

export const TRAIN_HEADER = ['training step', 'steps/s', 'ms per step', 'loss after', 'note'];

export function trainCells(row: TrainRow): string[] {
  const timed = row.status === 'ok';
  return [
    row.attention,
    timed ? num(row.stepsPerSecond) : row.status,
    num(row.msPerStep),
    row.loss === undefined ? '' : row.loss.toFixed(5),
    row.note ?? '',
  ];
}

/** What the training rows measure, in words. */
export function trainModelText(m: typeof TRAIN_MODEL): string {
  return (
    `the reverse-digits demo model (trainReverseDigits' defaults: ${m.layers} layers, d = ${m.dModel}, ${m.heads} heads, FFN ${m.ffn},` +
    ` ${m.digits} digits so L = ${2 * m.digits}, batch ${m.batch}, causal), forward + backward + AdamW with the loss read back,` +
    ` ${m.steps} steps timed after ${m.warmup} untimed; both start from the same weights and batches`
  );
}

export const TARGET_HEADER = ['target', 'shape', 'measured', 'goal', 'against', 'met'];

export function targetCells(t: Target): string[] {
  return [
    t.name,
    t.shape,
    t.value === undefined ? 'not measured' : `${num(t.value)}×`,
    `${t.atMost ? '≤' : '≥'} ${t.goal}×`,
    t.against,
    t.met === undefined ? '?' : t.met ? 'yes' : 'no',
  ];
}

/** Our fused row for each shape. */
export function oursByShape(rows: Row[]): Map<string, Row> {
  return new Map(rows.filter((r) => r.impl === 'ours').map((r) => [r.shape, r]));
}

function markdownTable(header: string[], rows: string[][]): string {
  const esc = (c: string) => c.replaceAll('|', '\\|');
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/**
 * GFLOP/s of every implementation (columns) on every shape (rows), Markdown; a cell that was
 * not timed says why (wrong, skipped, n/a, error).
 */
export function summaryTable(report: Pick<BenchReport, 'rows' | 'shapes'>): string {
  const impls = [...new Map(report.rows.map((r) => [r.impl, r.label])).entries()];
  const cell = (shape: string, impl: string) => {
    const r = report.rows.find((x) => x.shape === shape && x.impl === impl);
    return !r ? '' : r.status === 'ok' ? num(r.gflops) : r.status;
  };
  return markdownTable(
    ['GFLOP/s', ...impls.map(([, label]) => label)],
    report.shapes.map((s) => [
      `${s.name} (B=${s.B}, H=${s.Hq}${s.Hkv !== s.Hq ? `/${s.Hkv}` : ''}, Lq=${s.Lq}, Lk=${s.Lk}, D=${s.D}${s.causal ? ', causal' : ''})`,
      ...impls.map(([id]) => cell(s.name, id)),
    ]),
  );
}

/** The whole report as Markdown: adapter, options, summary, results, our matmul, decode layer, targets. */
export function markdownReport(report: BenchReport): string {
  const ours = oursByShape(report.rows);
  const a = report.adapter;
  const o = report.options;
  return [
    `Adapter: **${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ') || 'unknown'}**` +
      ` (features: ${report.features.join(', ') || 'none'}), ${report.date.slice(0, 10)}.`,
    ...(report.roofs
      ? [
          `Roofs measured in this run (${report.roofs.timing}): f32 FMA ${num(report.roofs.f32.value)} GFLOP/s` +
            `${report.roofs.f16 ? `, f16 FMA ${num(report.roofs.f16.value)} GFLOP/s` : ''}, read ${num(report.roofs.read.value)} GB/s,` +
            ` copy ${num(report.roofs.copy.value)} GB/s (read + write).`,
        ]
      : []),
    ...(report.rows.length
      ? [
          `f32, wall time from the call to the GPU finishing (onSubmittedWorkDone), median and min of ${o.repeats} runs after ${o.warmup} warm-up` +
            ` (fewer, at least 2, where a row's runs would take over ${o.rowBudgetS} s: column "runs");` +
            ` GFLOP/s = 4·B·H·Lq·Lk·D / median (halved when causal); GPU ms from timestamp queries (ours only);` +
            ` "ours ×" = our fused GFLOP/s over the row's; slow implementations skipped above L = ${o.maxSlowL}.`,
          '',
          summaryTable(report),
          '',
          markdownTable(
            HEADER,
            report.rows.map((r) => rowCells(r, ours.get(r.shape))),
          ),
          '',
        ]
      : ['']),
    ...(report.matmul.length ? [markdownTable(MATMUL_HEADER, report.matmul.map(matmulCells)), ''] : []),
    ...(report.layer?.length && report.layerModel
      ? [
          `Decode layer: ${layerModelText(report.layerModel)}.`,
          '',
          markdownTable(LAYER_HEADER, report.layer.map(layerCells)),
          '',
        ]
      : []),
    ...(report.sparse?.length
      ? [
          'Sparse: q, k, v [1, H, L, 64] f32; dense mask = the same pattern as a bool mask [L, L]; full = causal attention for causal patterns, unmasked for block masks; peer = the fastest of onnxruntime-web WebGPU (subgroups off) MultiHeadAttention with the pattern as an additive attention_bias [L, L] and, for causal windows, GroupQueryAttention with local_window_size (the note names which, then the other).',
          '',
          markdownTable(SPARSE_HEADER, report.sparse.map(sparseCells)),
          '',
        ]
      : []),
    ...(report.backward?.length
      ? [
          `Backward: dq, dk, dv of attention (f32), each implementation checked against the float64 attentionBackwardCpu first;` +
            ` median of up to ${o.repeats} runs after ${o.warmup} warm-up.` +
            ` GFLOP/s counts the backward as FlashAttention-2 does: ${BACKWARD_FLOP_FACTOR}× the forward's 4·B·H·Lq·Lk·D (halved when causal).` +
            ' Columns: ' +
            Object.entries(BACKWARD_COLUMN_NOTES)
              .map(([k, v]) => `*${k}*: ${v}`)
              .join('; ') +
            '.',
          '',
          markdownTable(BACKWARD_HEADER, report.backward.map(backwardCells)),
          '',
        ]
      : []),
    ...(report.train?.length && report.trainModel
      ? [
          `Training steps: ${trainModelText(report.trainModel)}.`,
          '',
          markdownTable(TRAIN_HEADER, report.train.map(trainCells)),
          '',
        ]
      : []),
    ...(report.targets.length ? [markdownTable(TARGET_HEADER, report.targets.map(targetCells))] : []),
  ].join('\n');
}
