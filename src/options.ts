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

export interface RopeOptions {
  /**
   * How features pair up: 'half' rotates feature i with i + dims/2 (GPT-NeoX, Llama in Hugging Face);
   * 'interleaved' rotates 2i with 2i + 1 (GPT-J, the original RoFormer).
   */
  style: 'half' | 'interleaved';
  /** Frequency base: pair i turns by position · base^(-2i / dims). Default 10000. */
  base?: number;
  /** Leading features rotated (even, <= D); the rest pass through. Default D. */
  dims?: number;
  /** Position of row 0 (rows are positions offset, offset + 1, ...). Default 0. */
  offset?: number;
}

/**
 * Checks style, base, dims and offset against head dim D and fills in the defaults; shared by
 * `rope`, the layer and the reference.
 */
export function checkRopeSettings(
  what: string,
  D: number,
  options: Partial<RopeOptions>,
): { dims: number; base: number; offset: number } {
  if (options.style !== 'half' && options.style !== 'interleaved') {
    throw new Error(`${what}: style must be 'half' or 'interleaved', received ${String(options.style)}`);
  }
  const base = options.base ?? 10000;
  if (typeof base !== 'number' || !Number.isFinite(base) || base <= 0) {
    throw new Error(`${what}: base must be a positive number, received ${String(options.base)}`);
  }
  const dims = options.dims ?? D;
  if (!Number.isInteger(dims) || dims < 2 || dims % 2 !== 0 || dims > D) {
    throw new Error(
      `${what}: dims must be an even integer in [2, ${D}] (the head dim), received ${String(options.dims)}`,
    );
  }
  const offset = options.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0) {
    throw new Error(`${what}: offset must be a non-negative integer, received ${String(options.offset)}`);
  }
  return { dims, base, offset };
}

export interface AdamWOptions {
  /** Learning rate. Default 1e-3. */
  lr?: number;
  /** Decay rates of the first and second moment averages. Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to the denominator. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay: p -= lr · weightDecay · p before the Adam update. Default 1e-2. */
  weightDecay?: number;
}

/** The options of AdamW with PyTorch's defaults filled in, checked. */
export function adamwSettings(what: string, options: AdamWOptions) {
  const lr = options.lr ?? 1e-3;
  const [beta1, beta2] = options.betas ?? [0.9, 0.999];
  const eps = options.eps ?? 1e-8;
  const weightDecay = options.weightDecay ?? 1e-2;
  const finite = (name: string, v: unknown, lo: number, hi: number) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
      throw new Error(`${what}: ${name} must be a number in [${lo}, ${hi}], received ${String(v)}`);
    }
  };
  finite('lr', lr, 0, Number.MAX_VALUE);
  if (!Array.isArray(options.betas ?? []) || (options.betas && options.betas.length !== 2)) {
    throw new Error(`${what}: betas must be a pair [beta1, beta2], received ${String(options.betas)}`);
  }
  finite('betas[0]', beta1, 0, 1 - Number.EPSILON);
  finite('betas[1]', beta2, 0, 1 - Number.EPSILON);
  finite('eps', eps, 0, Number.MAX_VALUE);
  finite('weightDecay', weightDecay, 0, Number.MAX_VALUE);
  return { lr, beta1, beta2, eps, weightDecay };
}

export interface NormSettings {
  /** Added to the variance (LayerNorm) or the mean square (RMSNorm). Default 1e-5. */
  eps?: number;
}
