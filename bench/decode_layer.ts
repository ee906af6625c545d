// Decode throughput of a small transformer (attention with a KV cache + MLP per layer) for the
// benchmark: the model and its loop live in examples/decode/transformer.mjs.
import {
  type DecodeOptions,
  type DecodeResult,
  runDecode as runDecodeWith,
} from '../examples/decode/transformer.mjs';
import * as lib from '../src';

export type { DecodeOptions, DecodeResult };

/**
 * Generates `options.steps` tokens with random weights; returns tokens/s and ms per layer.
 *
 * @example
 * const { tokensPerSecond, msPerLayer } = await runDecode(ctx, { steps: 64, dtype: 'f16' });
 */
export function runDecode(ctx: lib.Context, options: DecodeOptions = {}): Promise<DecodeResult> {
  return runDecodeWith(lib, ctx, options);
}
