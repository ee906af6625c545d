// How far each target of issue 3 is, from the measured rows (also used to re-render saved results).
import { BACKWARD_RATIO_GOAL, type BackwardRow } from './backward';
import type { BenchShape } from './shapes';
import type { MatmulRow, Row } from './suite';

export interface Target {
  name: string;
  shape: string;
  /** Measured ratio (or share), undefined when a side was not measured. */
  value?: number;
  goal: number;
  /** What the ratio compares. */
  against: string;
  /** The goal is an upper bound (value <= goal), not a lower one. */
  atMost?: boolean;
  met?: boolean;
}

/** How far each target of issue 3 is, from the rows measured. */
export function targets(
  shapes: BenchShape[],
  rows: Row[],
  matmulRows: MatmulRow[],
  backwardRows: BackwardRow[] = [],
): Target[] {
  const out: Target[] = [];
  const ok = (shape: string, pred: (r: Row) => boolean) =>
    rows.filter((r) => r.shape === shape && r.status === 'ok' && pred(r));
  const best = (rs: Row[]) =>
    rs.reduce<Row | undefined>((b, r) => (!b || r.gflops! > b.gflops! ? r : b), undefined);
  const add = (name: string, shape: string, ours: Row | undefined, other: Row | undefined, goal: number) => {
    const value = ours && other ? ours.gflops! / other.gflops! : undefined;
    out.push({
      name,
      shape,
      value,
      goal,
      against: other ? other.label : missing(shape),
      met: value === undefined ? undefined : value >= goal,
    });
  };
  const missing = (shape: string) =>
    rows.some((r) => r.shape === shape && r.status === 'skipped')
      ? 'peers skipped at this length (--max-slow-L)'
      : 'no correct peer measured';
  for (const s of shapes) {
    const ours = ok(s.name, (r) => r.impl === 'ours')[0];
    const library = best(ok(s.name, (r) => r.kind === 'library'));
    const floor = ok(s.name, (r) => r.kind === 'floor')[0];
    if (s.Lq > 1 && s.Lq >= 512) {
      add('prefill: ours / fastest library', s.name, ours, library, 2);
      add('prefill: ours / naive', s.name, ours, floor, 3);
    } else if (s.Lq === 1 && s.Lk >= 2048) {
      add('decode: ours / fastest library', s.name, ours, library, 5);
      add('decode: ours / naive', s.name, ours, floor, 2);
    }
  }
  const bestMatmul = matmulRows.reduce<MatmulRow | undefined>(
    (b, r) => (!b || r.gflops > b.gflops ? r : b),
    undefined,
  );
  const bestOurs = best(
    rows.filter((r) => r.impl === 'ours' && r.status === 'ok' && r.shape.startsWith('prefill')),
  );
  if (bestMatmul) {
    out.push({
      name: 'ours / our best matmul (GFLOP/s share)',
      shape: bestOurs?.shape ?? '-',
      value: bestOurs ? bestOurs.gflops! / bestMatmul.gflops : undefined,
      goal: 0.6,
      against: `matmul ${bestMatmul.shape}`,
      met: bestOurs ? bestOurs.gflops! / bestMatmul.gflops >= 0.6 : undefined,
    });
  }
  out.push(...backwardTargets(backwardRows));
  return out;
}

/**
 * Issue 10's backward targets, per shape of the backward section: our fused backward takes at most
 * 3x our forward's time; its peak allocation stays below one L x L buffer (nothing L x L is stored).
 */
export function backwardTargets(rows: BackwardRow[]): Target[] {
  const out: Target[] = [];
  for (const shape of [...new Set(rows.map((r) => r.shape))]) {
    const fused = rows.find((r) => r.shape === shape && r.impl === 'ours');
    if (!fused) continue; // our fused backward not selected (--impl)
    const ok = fused?.status === 'ok';
    const ratio = ok ? fused.ratio : undefined;
    out.push({
      name: 'backward: ours fused backward / ours forward (time)',
      shape,
      value: ratio,
      goal: BACKWARD_RATIO_GOAL,
      against: ok
        ? 'our fused forward (attention with returnLse)'
        : `ours fused ${fused?.status ?? 'not run'}`,
      atMost: true,
      met: ratio === undefined ? undefined : ratio <= BACKWARD_RATIO_GOAL,
    });
    const peak =
      ok && fused.peakBytes !== undefined && fused.llBytes ? fused.peakBytes / fused.llBytes : undefined;
    out.push({
      name: 'backward: fused peak bytes / one L×L buffer',
      shape,
      value: peak,
      goal: 1,
      against: fused?.llBytes ? `B·Hq·Lq·Lk·4 = ${(fused.llBytes / 2 ** 20).toFixed(0)} MiB` : '-',
      atMost: true,
      met: peak === undefined ? undefined : peak < 1,
    });
  }
  return out;
}
