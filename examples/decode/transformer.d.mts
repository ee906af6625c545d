// Types of transformer.mjs, for the TypeScript that imports it (the browser page, the benchmark).
import type * as Library from '../../src/index';

export interface DecodeOptions {
  /** Tokens generated after the prompt. Default 32. */
  steps?: number;
  /** Storage of weights, activations and caches. Default 'f32'. */
  dtype?: 'f32' | 'f16';
  /** Transformer blocks. Default 2. */
  layers?: number;
  /** E. Default 256. */
  embedDim?: number;
  /** Query heads. Default 8. */
  numHeads?: number;
  /** Key/value heads. Default 2 (grouped-query). */
  numKvHeads?: number;
  /** Positions prefilled in one call before decoding. Default 16. */
  prompt?: number;
  /** Seed of the random weights. Default 1. */
  seed?: number;
}

export interface DecodeResult {
  /** Tokens generated per second (after the prompt): 1000 / msPerToken. */
  tokensPerSecond: number;
  /** Milliseconds per generated token, all layers: the median over the steps (robust to one stall). */
  msPerToken: number;
  /** Milliseconds per generated token and layer (msPerToken / layers). */
  msPerLayer: number;
  /** Milliseconds of the prompt's forward pass (includes pipeline compiles). */
  prefillMs: number;
  steps: number;
  layers: number;
  dtype: 'f32' | 'f16';
  /** The first 4 features of the last output, for a sanity check. */
  last: number[];
}

/** Runs a small random-weight transformer generating tokens with a KV cache per layer. */
export function runDecode(
  lib: typeof Library,
  ctx: Library.Context,
  options?: DecodeOptions,
): Promise<DecodeResult>;
