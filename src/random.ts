// The seeded generator of the tests, the benchmark and the examples.

/**
 * A seeded uniform generator on [0, 1) (mulberry32): the same seed gives the same sequence
 * everywhere, so inputs made from it are reproducible.
 *
 * @example
 * const random = seededRandom(1);
 * const q = ctx.tensor(randomUniform(random, 2 * 64), [1, 1, 2, 64]);
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` values uniform in [-scale, scale) from `random`. */
export function randomUniform(random: () => number, n: number, scale = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}
