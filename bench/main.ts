// The benchmark page. A person sets options and presses Run; the headless runner (bench/run.mjs)
// opens it with ?auto=1 and options in the query, and hears every event through
// window.__benchReport (Playwright's exposeFunction).
import { chartSvg } from './chart';
import {
  HEADER,
  LAYER_HEADER,
  layerCells,
  MATMUL_HEADER,
  markdownReport,
  matmulCells,
  oursByShape,
  rowCells,
  SPARSE_HEADER,
  sparseCells,
  TARGET_HEADER,
  targetCells,
} from './format';
import { showHeatmap } from './heatmap';
import type { SparseRow } from './sparse';
import {
  type BenchEvent,
  type BenchOptions,
  DEFAULT_OPTIONS,
  type LayerRow,
  type MatmulRow,
  type Row,
  runBench,
} from './suite';

/** What the page sends the runner: the suite's events, the last one with the chart and Markdown. */
export type PageEvent =
  | Exclude<BenchEvent, { type: 'done' | 'row' | 'start' | 'layer' | 'sparse' }>
  | (Extract<BenchEvent, { type: 'start' }> & { header: string[] })
  | { type: 'row'; row: Row; cells: string[] }
  /** A decode-layer row; the first one carries the header. */
  | { type: 'layer'; row: LayerRow; cells: string[]; header?: string[] }
  /** A sparse-section row; the first one carries the header. */
  | { type: 'sparse'; row: SparseRow; cells: string[]; header?: string[] }
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
  };
}

function fillTable(
  table: HTMLTableElement,
  header: string[],
  rows: string[][],
  classes: string[] = [],
): void {
  table.replaceChildren();
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
  let shapes: Parameters<typeof chartSvg>[0]['shapes'] = [];
  let adapter = { vendor: '', architecture: '', description: '' };
  const progress = $('progress');
  const render = () => {
    const ours = oursByShape(rows);
    fillTable(
      $('results'),
      HEADER,
      rows.map((r) => rowCells(r, ours.get(r.shape))),
      rows.map((r) => (r.impl === 'ours' ? 'ours' : '')),
    );
    if (matmulRows.length) fillTable($('matmul'), MATMUL_HEADER, matmulRows.map(matmulCells));
    if (layerRows.length) fillTable($('layer'), LAYER_HEADER, layerRows.map(layerCells));
    if (sparseRows.length) fillTable($('sparse'), SPARSE_HEADER, sparseRows.map(sparseCells));
    $('chart').innerHTML = chartSvg({ rows, shapes, adapter });
  };
  await runBench(options, (event) => {
    if (event.type === 'start') {
      adapter = event.adapter;
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
    } else {
      shapes = event.report.shapes;
      render();
      fillTable($('targets'), TARGET_HEADER, event.report.targets.map(targetCells));
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
