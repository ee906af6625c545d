// GFLOP/s against sequence length as a standalone SVG: one panel for the prefill lengths
// (B=1, H=8, D=64), one for decode (Lq=1, H=32, D=128, against Lk); one line per implementation,
// log-log axes. Only correct, timed rows are drawn.
import type { BenchReport, Row } from './suite';

const COLORS: Record<string, string> = {
  ours: '#d62728',
  composed: '#ff7f0e',
  'ort-subgroups': '#9467bd',
  ort: '#1f77b4',
  tfjs: '#2ca02c',
  naive: '#7f7f7f',
  'ort-wasm': '#8c564b',
};

const W = 1100;
const H = 420;
const PANEL = { w: 330, h: 300, top: 50 };

interface Point {
  x: number;
  y: number;
}

const esc = (s: string) => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

function ticks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo && t <= hi) out.push(t);
    }
  }
  return out;
}

function panel(
  left: number,
  title: string,
  xLabel: string,
  series: { id: string; label: string; points: Point[] }[],
): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  const xs = [...new Set(all.map((p) => p.x))].sort((a, b) => a - b);
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...all.map((p) => p.y))));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...all.map((p) => p.y))));
  const xLo = Math.log2(xs[0]);
  const xHi = Math.log2(xs[xs.length - 1]);
  const px = (x: number) =>
    left + (xHi === xLo ? PANEL.w / 2 : ((Math.log2(x) - xLo) / (xHi - xLo)) * PANEL.w);
  const py = (y: number) =>
    PANEL.top + PANEL.h - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * PANEL.h;
  const parts: string[] = [
    `<text x="${left + PANEL.w / 2}" y="${PANEL.top - 14}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${left}" y="${PANEL.top}" width="${PANEL.w}" height="${PANEL.h}" fill="none" stroke="#999"/>`,
  ];
  for (const t of ticks(yLo, yHi)) {
    const y = py(t).toFixed(1);
    parts.push(
      `<line x1="${left}" x2="${left + PANEL.w}" y1="${y}" y2="${y}" stroke="#eee"/>`,
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${t}</text>`,
    );
  }
  for (const x of xs) {
    const xx = px(x).toFixed(1);
    parts.push(
      `<line x1="${xx}" x2="${xx}" y1="${PANEL.top}" y2="${PANEL.top + PANEL.h}" stroke="#eee"/>`,
      `<text x="${xx}" y="${PANEL.top + PANEL.h + 16}" text-anchor="middle">${x}</text>`,
    );
  }
  parts.push(
    `<text x="${left + PANEL.w / 2}" y="${PANEL.top + PANEL.h + 36}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(${left - 48} ${PANEL.top + PANEL.h / 2}) rotate(-90)" text-anchor="middle">GFLOP/s</text>`,
  );
  for (const s of series) {
    if (s.points.length === 0) continue;
    const color = COLORS[s.id] ?? '#000';
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    const dash = s.id === 'ort-wasm' ? ' stroke-dasharray="6 4"' : ''; // the CPU row
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const p of s.points) {
      parts.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
    }
  }
  return parts.join('\n');
}

/** The chart of a (possibly partial) report. */
export function chartSvg(report: Pick<BenchReport, 'rows' | 'shapes' | 'adapter'>): string {
  const byName = new Map(report.shapes.map((s) => [s.name, s]));
  const impls = [...new Map(report.rows.map((r) => [r.impl, r.label])).entries()];
  const seriesOf = (group: string, x: (r: Row) => number) =>
    impls.map(([id, label]) => ({
      id,
      label,
      points: report.rows
        .filter((r) => r.impl === id && r.status === 'ok' && byName.get(r.shape)?.group === group)
        .map((r) => ({ x: x(r), y: r.gflops! }))
        .sort((a, b) => a.x - b.x),
    }));
  const prefill = seriesOf('prefill', (r) => byName.get(r.shape)!.Lq);
  const decode = seriesOf('decode', (r) => byName.get(r.shape)!.Lk);
  const a = report.adapter;
  const legend = impls.map(([id, label], i) => {
    const y = 60 + i * 20;
    return (
      `<line x1="${W - 270}" x2="${W - 246}" y1="${y}" y2="${y}" stroke="${COLORS[id] ?? '#000'}" stroke-width="3"${id === 'ort-wasm' ? ' stroke-dasharray="6 4"' : ''}/>` +
      `<text x="${W - 240}" y="${y}" dominant-baseline="middle">${esc(label)}</text>`
    );
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="12" y="18" font-size="13">Attention, f32, GFLOP/s (wall time to GPU completion) on ${esc([a.vendor, a.architecture].filter(Boolean).join(' ') || 'unknown adapter')}</text>`,
    panel(70, 'prefill: B=1, H=8, D=64', 'sequence length L', prefill),
    panel(480, 'decode: Lq=1, H=32, D=128', 'keys Lk', decode),
    ...legend,
    '</svg>',
  ].join('\n');
}
