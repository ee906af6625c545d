#!/usr/bin/env node
// Headless benchmark runner: serves bench/index.html with Vite on 127.0.0.1, opens it in the
// system Chromium (WebGPU; SwiftShader when there is no GPU), prints each row as the page measures
// it (attention shapes, then the decode layer), and saves bench/results/<date>-<adapter>.{json,svg,md}.
//
//   npm run bench                                  every shape and implementation, saved
//   npm run bench -- --shapes prefill-512 --impl ours --repeats 3    quick, not saved
//   npm run bench -- --shapes layer                decode tokens/s of a small transformer, f32 and f16
//   npm run bench -- --shapes sparse --save        sparse attention against its dense mask, full attention and ORT, saved as <date>-<adapter>-sparse
//   npm run bench -- --shapes backward --save      gradients and training steps/s, saved as <date>-<adapter>-backward
//
// Options: --shapes a,b (names or groups: prefill, causal, d128, gqa, decode; layer: the decode-layer
// section, run after the attention shapes, also part of 'all'; sparse: windows, block masks and
// documents against the dense mask and full causal, also part of 'all'; backward: the backward section
// (dq, dk, dv of ours fused, ours composed and tfjs' tf.grads on prefill-512, prefill-1024,
// causal-1024, gqa-512, then training steps/s of the demo model), also part of 'all';
// backward:NAME selects one of its shapes, e.g. backward:prefill-512,backward:causal-1024), --impl a,b
// (ours, ours-other, composed, ort-subgroups, ort, tfjs, naive, ort-wasm), --repeats N, --warmup N,
// --max-slow-L N (slow implementations skipped above query length N), --row-budget-s N (a row
// whose calls are slow gets fewer timed runs, at least 2; 0 = always --repeats), --no-matmul,
// --no-roofs (skip measuring the adapter's roofs and the '% of roof' column), --save / --no-save (default: save only a full run), --out DIR, --timeout-min N,
// --screenshot FILE.png (of the page once done), --no-run (only load the page: with --screenshot,
// a picture of the heatmap), --render FILE.json (recompute that result's targets, rewrite its .md
// and .svg with the current code; no run).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright';
import { createServer } from 'vite';
import { chromiumArgs, findChromium } from '../scripts/chromium.mjs';
import { adapterSlug, sourceVersion } from './results_files.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'all' },
    impl: { type: 'string', default: 'all' },
    repeats: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    'max-slow-L': { type: 'string', default: '1024' },
    'no-matmul': { type: 'boolean', default: false },
    'row-budget-s': { type: 'string', default: '30' },
    'no-roofs': { type: 'boolean', default: false },
    save: { type: 'boolean' },
    'no-save': { type: 'boolean', default: false },
    out: { type: 'string', default: join(here, 'results') },
    screenshot: { type: 'string' },
    'no-run': { type: 'boolean', default: false },
    render: { type: 'string' },
    'timeout-min': { type: 'string', default: '30' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help) {
  const { readFile } = await import('node:fs/promises');
  const source = await readFile(fileURLToPath(import.meta.url), 'utf8');
  console.log(
    source
      .split('\n')
      .slice(
        1,
        source.split('\n').findIndex((l) => l.startsWith('import')),
      )
      .map((l) => l.slice(3))
      .join('\n'),
  );
  process.exit(0);
}

for (const name of ['repeats', 'warmup', 'max-slow-L', 'timeout-min']) {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < (name === 'warmup' ? 0 : 1)) {
    console.error(
      `--${name} must be a ${name === 'warmup' ? 'non-negative' : 'positive'} integer, received ${args[name]}`,
    );
    process.exit(2);
  }
}
const fullRun = args.shapes === 'all' && args.impl === 'all';
const save = args['no-save'] ? false : (args.save ?? fullRun);

if (args.render) {
  await render(args.render);
  process.exit(0);
}

/** Rewrites the .md and .svg of a saved results JSON with the current formatting code. */
async function render(jsonPath) {
  const { readFile } = await import('node:fs/promises');
  const server = await createServer({ configFile: join(here, 'vite.config.mjs'), logLevel: 'warn' });
  try {
    const { markdownReport } = await server.ssrLoadModule('/bench/format.ts');
    const { chartSvg } = await server.ssrLoadModule('/bench/chart.ts');
    const { targets } = await server.ssrLoadModule('/bench/targets.ts');
    const report = JSON.parse(await readFile(jsonPath, 'utf8'));
    report.targets = targets(report.shapes, report.rows, report.matmul, report.backward ?? []);
    await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    const stem = jsonPath.replace(/\.json$/, '');
    await writeFile(`${stem}.svg`, `${chartSvg(report)}\n`);
    await writeFile(`${stem}.md`, `Sources: ${report.sources ?? 'unknown'}. ${markdownReport(report)}\n`);
    console.log(`rewrote ${stem}.md, .svg`);
  } finally {
    await server.close();
  }
}

const executablePath = findChromium();
if (!executablePath) {
  console.error('bench: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)');
  process.exit(1);
}

const server = await createServer({
  configFile: join(here, 'vite.config.mjs'),
  logLevel: process.env.BENCH_VITE_LOG ?? 'warn',
  // No reloads mid-run when someone edits a source file.
  server: { port: 0, hmr: false, watch: null },
});
await server.listen();
const base = server.resolvedUrls?.local[0];
const browser = await chromium.launch({ executablePath, args: chromiumArgs(), headless: true });

/** Column widths of the terminal table; the last column (note) is not padded. */
const WIDTHS = [13, 38, 10, 10, 5, 8, 12, 8, 8, 10, 8, 9];
const LAYER_WIDTHS = [13, 10, 13, 13, 11];
const TRAIN_WIDTHS = [38, 9, 12, 11];
const trainLine = (cells) =>
  cells
    .map((c, i) => (i < TRAIN_WIDTHS.length ? String(c).padEnd(TRAIN_WIDTHS[i]) : c))
    .join(' ')
    .trimEnd();
const layerLine = (cells) =>
  cells
    .map((c, i) => (i < LAYER_WIDTHS.length ? String(c).padEnd(LAYER_WIDTHS[i]) : c))
    .join(' ')
    .trimEnd();
const SPARSE_WIDTHS = [20, 46, 8, 10, 14, 8, 10, 9];
const sparseLine = (cells) =>
  cells
    .map((c, i) => (i < SPARSE_WIDTHS.length ? String(c).padEnd(SPARSE_WIDTHS[i]) : c))
    .join(' ')
    .trimEnd();
const line = (cells) => cells.map((c, i) => (i < WIDTHS.length ? String(c).padEnd(WIDTHS[i]) : c)).join(' ');
const progress = (message) => {
  const t = new Date().toISOString().slice(11, 19);
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K\x1b[2m${t} ${message}\x1b[0m`);
  else process.stderr.write(`${t} ${message}\n`);
};
const clearProgress = () => {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
};

/** Runs the page's benchmark and prints its rows as they come; resolves with the 'done' event. */
async function runOnPage(page) {
  const done = new Promise((resolve, reject) => {
    let header;
    page.exposeFunction('__benchReport', (event) => {
      if (event.type === 'start') {
        const a = event.adapter;
        console.log(`adapter: ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ')}`);
        console.log(`features: ${event.features.join(', ')}`);
        console.log(`shapes: ${event.shapes.join(', ') || 'none'}`);
        if (event.backwardShapes?.length) console.log(`backward shapes: ${event.backwardShapes.join(', ')}`);
        console.log(`implementations: ${event.impls.join('; ') || 'none'}\n`);
        header = event.header;
      } else if (event.type === 'progress') {
        progress(event.message);
      } else if (event.type === 'row') {
        clearProgress();
        if (header) console.log(line(header));
        header = undefined;
        console.log(line(event.cells));
      } else if (event.type === 'matmul') {
        clearProgress();
        const r = event.row;
        console.log(`  our matmul ${r.shape}: ${r.medianMs.toFixed(1)} ms, ${r.gflops.toFixed(2)} GFLOP/s`);
      } else if (event.type === 'layer') {
        clearProgress();
        if (event.header) console.log(`\n${layerLine(event.header)}`);
        console.log(layerLine(event.cells));
      } else if (event.type === 'sparse') {
        clearProgress();
        if (event.header) console.log(`\n${sparseLine(event.header)}`);
        console.log(sparseLine(event.cells));
      } else if (event.type === 'backward' || event.type === 'train') {
        clearProgress();
        if (event.header) console.log(`\n${(event.type === 'backward' ? line : trainLine)(event.header)}`);
        console.log((event.type === 'backward' ? line : trainLine)(event.cells));
      } else if (event.type === 'done') {
        clearProgress();
        resolve(event);
      } else if (event.type === 'error') {
        reject(new Error(`page: ${event.message}`));
      }
    });
  });
  const query = new URLSearchParams({
    auto: '1',
    shapes: args.shapes,
    impl: args.impl,
    repeats: args.repeats,
    warmup: args.warmup,
    maxSlowL: args['max-slow-L'],
    matmul: args['no-matmul'] ? '0' : '1',
    rowBudgetS: args['row-budget-s'],
    roofs: args['no-roofs'] ? '0' : '1',
  });
  await page.goto(`${base}bench/index.html?${query}`);
  const timeoutMs = Number(args['timeout-min']) * 60_000;
  return Promise.race([
    done,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`no result after ${args['timeout-min']} min`)), timeoutMs),
    ),
  ]);
}

/** Writes <date>-<adapter>.json, .svg and .md under --out. */
async function saveResults(result) {
  const slug = adapterSlug(result.report.adapter);
  // A run of only the backward (sparse) section is saved apart from the full runs.
  const words = args.shapes.split(',').filter(Boolean);
  const backwardOnly = words.length > 0 && words.every((w) => w === 'backward' || w.startsWith('backward:'));
  const sparseOnly = words.length > 0 && words.every((w) => w === 'sparse');
  const suffix = backwardOnly ? '-backward' : sparseOnly ? '-sparse' : '';
  const stem = join(args.out, `${result.report.date.slice(0, 10)}-${slug}${suffix}`);
  await mkdir(args.out, { recursive: true });
  const report = { ...result.report, sources: sourceVersion(['src', 'shaders']) };
  await writeFile(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`);
  // The chart draws the forward rows only: none, no chart.
  if (report.rows.length) await writeFile(`${stem}.svg`, `${result.svg}\n`);
  await writeFile(`${stem}.md`, `Sources: ${report.sources}. ${result.markdown}\n`);
  console.log(`\nsaved ${stem}.json${report.rows.length ? ', .svg' : ''}, .md`);
}

let exitCode = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`page console: ${m.text()}`);
  });
  if (args['no-run']) {
    await page.goto(`${base}bench/index.html`);
  } else {
    const result = await runOnPage(page);
    if (result.report.targets.length) {
      const targets = result.markdown.split('\n').slice(-2 - result.report.targets.length);
      console.log(`\n${targets.join('\n')}`);
    }
    if (save) await saveResults(result);
  }
  if (args.screenshot) {
    await page.waitForSelector('body[data-heatmap="ready"]', { timeout: 120_000 });
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(`screenshot: ${args.screenshot}`);
  }
} catch (e) {
  clearProgress();
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
  exitCode = 1;
} finally {
  await browser.close();
  await server.close();
}
process.exit(exitCode);
