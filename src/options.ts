// Option types and checks that the GPU ops and their float64 references share: the math an op
// computes, not how it runs (the ops add options of their own, such as `out` and `encoder`).
import { fmt } from './shape';

export interface MatmulSettings {
  /** Use A's last two dims transposed: A is [..., K, M]. */
  transposeA?: boolean;
  /** Use B's last two dims transposed: B is [..., N, K]. */
  transposeB?: boolean;
  /** Multiplies the product. Default 1. */
  alpha?: number;
}

/** The batch dims two operands broadcast to (each batch dim equal or 1). */
export function batchShape(what: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length) - 2;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - 3 - (n - 1 - i)] ?? 1;
    const y = b[b.length - 3 - (n - 1 - i)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new Error(`${what}: batch dims of a ${fmt(a)} and b ${fmt(b)} cannot broadcast`);
    }
    out.push(Math.max(x, y));
  }
  return out;
}

export interface SoftmaxSettings {
  /** Multiplies x before the softmax. -Infinity entries stay masked whatever the scale. Default 1. */
  scale?: number;
  /**
   * Treat x as scores [..., Lq, Lk] and mask key j for query i when j > i + (Lk - Lq)
   * (bottom-right aligned, as in attention).
   */
  causal?: boolean;
}

/** Options of every GPU op about where its work goes. */
export interface RunOptions {
  /**
   * Record the op into this command encoder (the app's) instead of submitting it: the work runs
   * when the app submits the encoder, in order with the app's own passes. The op's promise
   * resolves once recorded; submit the encoder after that, before reading the results.
   */
  encoder?: GPUCommandEncoder;
}
export const RUN_OPTION_KEYS = ['encoder'] as const;
