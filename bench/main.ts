// The benchmark page. A person sets options and presses Run; the headless runner (bench/run.mjs)
// opens it with ?auto=1 and options in the query, and hears every event through
// window.__benchReport (Playwright's exposeFunction).

import type { BackwardRow, TrainRow } from './backward';
import { TRAIN_MODEL } from './backward';
import { chartSvg } from './chart';
import {
  adapterKind,
  BACKWARD_COLUMN_NOTES,
  BACKWARD_HEADER,
  backwardCells,
  COLUMN_NOTES,
  HEADER,
  LAYER_HEADER,
  layerCells,
  layerModelText,
  MATMUL_HEADER,
  markdownReport,
  matmulCells,
  oursByShape,
  rowCells,
  rowClass,
  SPARSE_HEADER,
  sparseCells,
  TARGET_HEADER,
  TRAIN_HEADER,
  targetCells,
  trainCells,
  trainModelText,
} from './format';
import { drawColourScale, showHeatmap } from './heatmap';
import { SHAPES } from './shapes';
import type { SparseRow } from './sparse';
import {
  type BenchEvent,
  type BenchOptions,
  DECODE_LAYER,
  DEFAULT_OPTIONS,
  type LayerRow,
  type MatmulRow,
  type Row,
  runBench,
} from './suite';

/** What the page sends the runner: the suite's events, the last one with the chart and Markdown. */
export type PageEvent =
  | Exclude<BenchEvent, { type: 'done' | 'row' | 'start' | 'layer' | 'sparse' | 'backward' | 'train' }>
  | (Extract<BenchEvent, { type: 'start' }> & { header: string[] })
  | { type: 'row'; row: Row; cells: string[] }
  /** A decode-layer row; the first one carries the header. */
  | { type: 'layer'; row: LayerRow; cells: string[]; header?: string[] }
  /** A sparse-section row; the first one carries the header. */
  | { type: 'sparse'; row: SparseRow; cells: string[]; header?: string[] }
  /** A backward-section row; the first one carries the header. */
  | { type: 'backward'; row: BackwardRow; cells: string[]; header?: string[] }
  /** A training-steps row; the first one carries the header. */
  | { type: 'train'; row: TrainRow; cells: string[]; header?: string[] }
  | (Extract<BenchEvent, { type: 'done' }> & { svg: string; markdown: string })
  | { type: 'error'; message: string };

declare global {
  interface Window {
    __benchReport?: (event: PageEvent) => void;
  }
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function send(event: PageEvent): void {
  if (window.__benchReport) window.__benchReport(event);
  else if (event.type === 'error') console.error(event.message);
}

function optionsFromUrl(): BenchOptions {
  const p = new URLSearchParams(location.search);
  const n = (name: string, fallback: number) => (p.has(name) ? Number(p.get(name)) : fallback);
  return {
    shapes: p.get('shapes') ?? DEFAULT_OPTIONS.shapes,
    impls: p.get('impl') ?? DEFAULT_OPTIONS.impls,
    repeats: n('repeats', DEFAULT_OPTIONS.repeats),
    warmup: n('warmup', DEFAULT_OPTIONS.warmup),
    maxSlowL: n('maxSlowL', DEFAULT_OPTIONS.maxSlowL),
    matmul: p.get('matmul') !== '0',
    rowBudgetS: n('rowBudgetS', DEFAULT_OPTIONS.rowBudgetS),
    roofs: p.get('roofs') !== '0',
  };
}

/** Fills and shows a table; a section with no rows stays hidden. */
function fillTable(
  table: HTMLTableElement,
  caption: string,
  header: string[],
  rows: string[][],
  classes: string[] = [],
): void {
  table.replaceChildren();
  table.hidden = rows.length === 0;
  table.createCaption().textContent = caption;
  const head = table.createTHead().insertRow();
  for (const h of header) head.appendChild(document.createElement('th')).textContent = h;
  const body = table.createTBody();
  rows.forEach((cells, i) => {
    const tr = body.insertRow();
    if (classes[i]) tr.className = classes[i];
    for (const c of cells) tr.insertCell().textContent = c;
  });
}

async function run(options: BenchOptions): Promise<void> {
  const rows: Row[] = [];
  const matmulRows: MatmulRow[] = [];
  const layerRows: LayerRow[] = [];
  const sparseRows: SparseRow[] = [];
  const backwardRows: BackwardRow[] = [];
  const trainRows: TrainRow[] = [];
  let shapes: Parameters<typeof chartSvg>[0]['shapes'] = [];
  let adapter = { vendor: '', architecture: '', description: '' };
  const progress = $('progress');
  for (const id of [
    'chart',
    'not-drawn',
    'results',
    'columns',
    'matmul',
    'layer',
    'sparse',
    'backward',
    'backward-columns',
    'train',
    'targets',
  ])
    $(id).hidden = true;
  const render = () => {
    const ours = oursByShape(rows);
    fillTable(
      $('results'),
      'Attention: every implementation on every shape (f32); red rows are wrong or failed',
      HEADER,
      rows.map((r) => rowCells(r, ours.get(r.shape))),
      rows.map(rowClass),
    );
    $('columns').hidden = rows.length === 0;
    fillTable($('matmul'), 'Our matmul', MATMUL_HEADER, matmulRows.map(matmulCells));
    fillTable(
      $('layer'),
      `Decode layer: ${layerModelText(DECODE_LAYER)}`,
      LAYER_HEADER,
      layerRows.map(layerCells),
    );
    fillTable(
      $('sparse'),
      'Sparse attention; red rows are wrong or failed (ours or the peer)',
      SPARSE_HEADER,
      sparseRows.map(sparseCells),
      sparseRows.map((r) =>
        rowClass({ impl: '', status: r.status === 'ok' ? (r.peerStatus ?? 'ok') : r.status }),
      ),
    );
    fillTable(
      $('backward'),
      'Backward: dq, dk, dv of attention (f32), checked against float64 first; red rows are wrong or failed',
      BACKWARD_HEADER,
      backwardRows.map(backwardCells),
      backwardRows.map(rowClass),
    );
    $('backward-columns').hidden = backwardRows.length === 0;
    fillTable(
      $('train'),
      `Training steps: ${trainModelText(TRAIN_MODEL)}`,
      TRAIN_HEADER,
      trainRows.map(trainCells),
    );
    // The chart draws correct, timed rows of the prefill and decode shapes; nothing else makes one.
    const groups = new Map(shapes.map((s) => [s.name, s.group]));
    const charted = rows.some(
      (r) => r.status === 'ok' && ['prefill', 'decode'].includes(groups.get(r.shape) ?? ''),
    );
    $('chart').hidden = !charted;
    $('chart').innerHTML = charted ? chartSvg({ rows, shapes, adapter }) : '';
    const failed = rows.filter((r) => r.status === 'wrong' || r.status === 'error');
    $('not-drawn').hidden = failed.length === 0;
    $('not-drawn').textContent = failed.length
      ? `Not drawn, marked red below: ${failed.map((r) => `${r.label} on ${r.shape} (${r.status}${r.checkErr === undefined ? '' : `, error ${r.checkErr.toExponential(1)}`})`).join('; ')}.`
      : '';
  };
  await runBench(options, (event) => {
    if (event.type === 'start') {
      adapter = event.adapter;
      shapes = SHAPES.filter((s) => event.shapes.includes(s.name));
      send({ ...event, header: HEADER });
    } else if (event.type === 'progress') {
      progress.textContent = event.message;
      send(event);
    } else if (event.type === 'row') {
      rows.push(event.row);
      render();
      send({
        type: 'row',
        row: event.row,
        cells: rowCells(event.row, oursByShape(rows).get(event.row.shape)),
      });
    } else if (event.type === 'matmul') {
      matmulRows.push(event.row);
      render();
      send(event);
    } else if (event.type === 'layer') {
      layerRows.push(event.row);
      render();
      const header = layerRows.length === 1 ? LAYER_HEADER : undefined;
      send({ ...event, cells: layerCells(event.row), header });
    } else if (event.type === 'sparse') {
      sparseRows.push(event.row);
      render();
      const header = sparseRows.length === 1 ? SPARSE_HEADER : undefined;
      send({ ...event, cells: sparseCells(event.row), header });
    } else if (event.type === 'backward') {
      backwardRows.push(event.row);
      render();
      const header = backwardRows.length === 1 ? BACKWARD_HEADER : undefined;
      send({ ...event, cells: backwardCells(event.row), header });
    } else if (event.type === 'train') {
      trainRows.push(event.row);
      render();
      const header = trainRows.length === 1 ? TRAIN_HEADER : undefined;
      send({ ...event, cells: trainCells(event.row), header });
    } else {
      shapes = event.report.shapes;
      render();
      fillTable(
        $('targets'),
        'Targets: our speed over a peer’s on the shapes the goals name',
        TARGET_HEADER,
        event.report.targets.map(targetCells),
      );
      progress.textContent = 'done';
      send({ ...event, svg: chartSvg(event.report), markdown: markdownReport(event.report) });
    }
  });
}

async function main(): Promise<void> {
  const options = optionsFromUrl();
  const form = $<HTMLFormElement>('options');
  for (const [name, value] of Object.entries(options)) {
    const input = form.elements.namedItem(name);
    if (input instanceof HTMLInputElement) input.value = String(value);
  }
  const adapter = await navigator.gpu?.requestAdapter();
  $('adapter').textContent = adapter
    ? `Adapter: ${[adapter.info.vendor, adapter.info.architecture, adapter.info.description].filter(Boolean).join(' / ')}; features: ${[...adapter.features].sort().join(', ')}`
    : 'No WebGPU adapter (serve the page from http://127.0.0.1 or localhost, in a browser with WebGPU).';
  if (!adapter) throw new Error('no WebGPU adapter');
  const kind = adapterKind(adapter.info);
  $('adapter-kind').className = kind.cpu ? 'cpu' : 'gpu';
  $('adapter-kind').textContent = `This adapter is ${kind.text}`;
  const notes = $('columns').querySelector('dl')!;
  for (const h of HEADER) {
    notes.appendChild(document.createElement('dt')).textContent = h;
    notes.appendChild(document.createElement('dd')).textContent = COLUMN_NOTES[h];
  }
  const backwardNotes = $('backward-columns').querySelector('dl')!;
  for (const h of BACKWARD_HEADER) {
    const text = BACKWARD_COLUMN_NOTES[h] ?? COLUMN_NOTES[h];
    if (!text) continue;
    backwardNotes.appendChild(document.createElement('dt')).textContent = h;
    backwardNotes.appendChild(document.createElement('dd')).textContent = text;
  }
  drawColourScale($('heatmap-scale'));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(form);
    void run({
      shapes: String(f.get('shapes')),
      impls: String(f.get('impls')),
      repeats: Number(f.get('repeats')),
      warmup: Number(f.get('warmup')),
      maxSlowL: Number(f.get('maxSlowL')),
      matmul: options.matmul,
      rowBudgetS: options.rowBudgetS,
      roofs: options.roofs,
    }).catch((err: unknown) => {
      $('progress').textContent = `error: ${err instanceof Error ? err.message : String(err)}`;
    });
  });

  try {
    await showHeatmap($<HTMLCanvasElement>('heatmap'), $('heatmap-status'));
  } catch (err) {
    console.error(err);
    $('heatmap-status').textContent = `heatmap failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  document.body.dataset.heatmap = 'ready';
  if (new URLSearchParams(location.search).get('auto') === '1') await run(options);
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? `${err.message}\n${err.stack ?? ''}` : String(err);
  $('progress').textContent = `error: ${message}`;
  send({ type: 'error', message });
});
