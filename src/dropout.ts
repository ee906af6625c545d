// Dropout on the attention probabilities: the option, its check, and the keep decision of each
// (b, h, i, j), which shaders/dropout.wgsl computes bit for bit the same way on the GPU. Shared by
// the ops and the float64 reference.

/**
 * Dropout on the attention probabilities (PyTorch's SDPA `dropout_p`): after the softmax, each
 * probability is kept with probability 1 - p and then scaled by 1 / (1 - p), or set to 0. The
 * log-sum-exp is that of the softmax before dropout. The decision for (batch b, query head h,
 * query row i, key j) is a hash of (seed, b, h, i, j) ({@link dropoutKeeps}), so the backward
 * regenerates the same mask and the same seed gives the same result.
 */
export interface DropoutOptions {
  /** Probability of dropping each probability, in [0, 1). 0 is exactly no dropout. */
  p: number;
  /** The mask's seed: an integer in [0, 2^32 - 1]. */
  seed: number;
}

/**
 * Checks `dropout` (the option `name` of op `what`); returns it, or undefined when absent or p = 0
 * (no dropout).
 */
export function checkDropout(what: string, dropout: unknown, name = 'dropout'): DropoutOptions | undefined {
  if (dropout === undefined) return undefined;
  if (dropout === null || typeof dropout !== 'object') {
    throw new Error(`${what}: ${name} must be an object { p, seed }, received ${String(dropout)}`);
  }
  for (const key of Object.keys(dropout)) {
    if (key !== 'p' && key !== 'seed') {
      throw new Error(`${what}: unknown option '${name}.${key}', expected one of p, seed`);
    }
  }
  const { p, seed } = dropout as Partial<DropoutOptions>;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) {
    throw new Error(`${what}: ${name}.p must be a number in [0, 1), received ${String(p)}`);
  }
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(
      `${what}: ${name}.seed must be an integer in [0, 4294967295] (a u32), received ${String(seed)}`,
    );
  }
  return p === 0 ? undefined : { p, seed };
}

/**
 * The hash's threshold for drop probability p: a probability is dropped iff its 32 hash bits,
 * read as an unsigned integer, are below floor(p · 2^32) (so it is dropped with probability p to
 * within 2^-32).
 */
export function dropoutThreshold(p: number): number {
  return Math.floor(p * 2 ** 32);
}

/** lowbias32 (Chris Wellons' hash prospector): a bijective u32 mixer with full avalanche. */
function mix(x: number): number {
  let y = x >>> 0;
  y ^= y >>> 16;
  y = Math.imul(y, 0x7feb352d);
  y ^= y >>> 15;
  y = Math.imul(y, 0x846ca68b);
  y ^= y >>> 16;
  return y >>> 0;
}

/** The row key of row i of head h, batch b: mix(mix(mix(mix(seed ^ 0x9e3779b9) ^ b) ^ h) ^ i). */
export function dropoutRowKey(seed: number, b: number, h: number, i: number): number {
  return mix(mix(mix(mix(seed ^ 0x9e3779b9) ^ b) ^ h) ^ i);
}

/** The column key of key j: mix(j ^ 0x85ebca6b). */
export function dropoutColumnKey(j: number): number {
  return mix(j ^ 0x85ebca6b);
}

/**
 * Whether the probability of (b, h, i, j) is kept: its bits mix(rowKey(seed, b, h, i) ^
 * columnKey(j)) are at least `threshold` ({@link dropoutThreshold}). b, h, i, j are positions in
 * the whole call (with packed documents b = 0 and i, j are positions in the packed sequences).
 */
export function dropoutKeeps(
  seed: number,
  threshold: number,
  b: number,
  h: number,
  i: number,
  j: number,
): boolean {
  return mix(dropoutRowKey(seed, b, h, i) ^ dropoutColumnKey(j)) >= threshold;
}
