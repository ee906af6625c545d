// Shared by the interop examples: the shape, the result a test checks, and a CPU transpose.

export interface InteropShape {
  B: number;
  H: number;
  L: number;
  D: number;
  causal: boolean;
}

/** What an interop example returns: our output as read through the other library, and its inputs. */
export interface InteropResult {
  /** attention(q, k, v) [B, H, L, D], read back by the other library */
  output: Float32Array;
  /** the inputs [B, H, L, D] as the other library held them, for the float64 reference */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  shape: InteropShape;
  /** the adapter the shared device is on */
  adapter: string;
}

/** [B, L, H*D] -> [B, H, L, D] on the CPU: the inputs as the reference takes them. */
export function toBhld(x: Float32Array, { B, H, L, D }: InteropShape): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let l = 0; l < L; l++)
      for (let h = 0; h < H; h++)
        for (let d = 0; d < D; d++) out[((b * H + h) * L + l) * D + d] = x[((b * L + l) * H + h) * D + d];
  return out;
}
