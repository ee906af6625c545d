// Timing a benchmark call: warm-up calls, then repeated timed calls, shared by every section; and
// the check of an implementation's output against the float64 reference before it is timed.
import { randomUniform, seededRandom } from '../src';
import { attentionCpu } from '../src/reference';
import type { BenchInputs } from './impl/types';
import type { BenchShape } from './shapes';

/** What a timed call reports: when the GPU finished it, and its GPU time where measured. */
export interface TimedCall {
  doneAt?: number;
  gpuMs?: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times `run`: `warmup` calls, then `repeats` calls (fewer for slow calls: as many as fit in
 * `rowBudgetS` at the warm-up's speed, at least 2); wall time ends when the GPU has finished.
 */
export async function timeCalls<T extends TimedCall>(
  run: () => Promise<T | undefined>,
  o: { warmup: number; repeats: number; rowBudgetS: number },
): Promise<{ samples: number[]; gpu: number[]; runs: number; last: T | undefined }> {
  let warmMs = 0;
  for (let i = 0; i < o.warmup; i++) {
    const t0 = performance.now();
    const call = await run();
    warmMs = (call?.doneAt ?? performance.now()) - t0;
  }
  const affordable = o.rowBudgetS > 0 && warmMs > 0 ? Math.floor((o.rowBudgetS * 1000) / warmMs) : o.repeats;
  const runs = Math.min(o.repeats, Math.max(2, affordable));
  const samples: number[] = [];
  const gpu: number[] = [];
  let last: T | undefined;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    last = await run();
    samples.push((last?.doneAt ?? performance.now()) - t0);
    if (last?.gpuMs !== undefined) gpu.push(last.gpuMs);
  }
  return { samples, gpu, runs, last };
}

/**
 * A check passes when |out - ref| <= TOL + TOL·|ref| everywhere: looser than the library's own
 * tests (1e-4) so that peers with a different summation order pass, far tighter than a wrong result.
 */
export const CHECK_TOL = 1e-3;

/** q, k, v of `shape`, seeded uniform [-1, 1) (seeds seed, seed + 1, seed + 2): the same every run. */
export function benchInputs(shape: BenchShape, seed: number): BenchInputs {
  const { B, Hq, Hkv, Lq, Lk, D } = shape;
  const data = (s: number, n: number) => randomUniform(seededRandom(s), n);
  return {
    shape,
    q: data(seed, B * Hq * Lq * D),
    k: data(seed + 1, B * Hkv * Lk * D),
    v: data(seed + 2, B * Hkv * Lk * D),
  };
}

/** The float64 reference's output [B, Hq, Lq, D] for `inputs` (no mask; the shape's causal). */
export function referenceOutput(inputs: BenchInputs): Float64Array {
  const { B, Hq, Hkv, Lq, Lk, D, causal } = inputs.shape;
  return attentionCpu(
    { data: inputs.q, shape: [B, Hq, Lq, D] },
    { data: inputs.k, shape: [B, Hkv, Lk, D] },
    { data: inputs.v, shape: [B, Hkv, Lk, D] },
    { causal },
  ).output.data as Float64Array;
}

/** Largest |a - e| / (1 + |e|), or Infinity on a length mismatch or a non-finite output. */
export function checkError(actual: Float32Array, expected: Float64Array): number {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / (1 + Math.abs(expected[i]));
    if (!(err <= worst)) worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
  }
  return worst;
}
