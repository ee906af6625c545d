import maskedSource from '../../shaders/masked.wgsl?raw';
import softmaxSource from '../../shaders/softmax.wgsl?raw';
import { checkOptions } from '../checks';
import { RUN_OPTION_KEYS, type RunOptions, type SoftmaxSettings } from '../options';
import { f32, Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { expectTensor } from '../tensor';

import { resultTensor } from './output';

export interface SoftmaxOptions extends SoftmaxSettings, RunOptions {
  /** Write y into this f32 tensor of x's shape instead of a new one. */
  out?: Tensor;
}

const OPTION_KEYS = ['scale', 'causal', 'out', ...RUN_OPTION_KEYS] as const;

/**
 * Softmax over the last axis of x [..., n] -> [..., n], in f32, one workgroup per row.
 * `scale` multiplies x first; -Infinity entries get weight 0 and a row with nothing left gives
 * zeros (never NaN). `causal` treats x as scores [..., Lq, Lk] and masks key j for query i when
 * j > i + (Lk - Lq), as attention does.
 *
 * @example
 * // weights [B, H, Lq, Lk] from raw scores, causal like a decoder
 * const weights = await softmax(scores, { scale: 1 / Math.sqrt(D), causal: true });
 */
export async function softmax(x: Tensor, options: SoftmaxOptions = {}): Promise<Tensor> {
  checkSoftmaxInputs(x, options);
  const { ctx } = x;
  const n = x.shape[x.rank - 1];
  const rows = x.size / n;
  // Small workgroups: short rows would leave a large one idle, and on CPU implementations of
  // WebGPU (SwiftShader) each invocation group of a workgroup with barriers costs microseconds.
  const constants = { WG: n <= 1024 ? 16 : 64 };
  const rec = new Recording(ctx, 'softmax');
  rec.watch(x, options.out);
  const y = resultTensor(ctx, rec, 'softmax: out', options.out, x.shape, 'f32');
  rec.dispatch({
    name: 'softmax',
    sources: [softmaxSource, maskedSource],
    constants,
    uniforms: {
      n,
      Lq: options.causal ? x.shape[x.rank - 2] : 1,
      causal: options.causal ? 1 : 0,
      scale: f32(options.scale ?? 1),
    },
    bindings: [x.binding, y.binding],
    workgroups: rows,
  });
  await rec.submit(options.encoder);
  return y;
}

/** Validates x and the options of `softmax`. */
export function checkSoftmaxInputs(x: Tensor, options: SoftmaxOptions): void {
  checkOptions('softmax', options, OPTION_KEYS);
  if (options.scale !== undefined && (typeof options.scale !== 'number' || !Number.isFinite(options.scale))) {
    throw new Error(`softmax: options.scale must be a finite number, received ${String(options.scale)}`);
  }
  if (options.causal !== undefined && typeof options.causal !== 'boolean') {
    throw new Error(`softmax: options.causal must be a boolean, received ${typeof options.causal}`);
  }
  expectTensor('softmax: x', x);
  x.assertUsable('softmax: x');
  if (x.dtype !== 'f32') throw new Error(`softmax: x must have dtype 'f32', received '${x.dtype}'`);
  const minRank = options.causal ? 2 : 1;
  if (x.rank < minRank) {
    throw new Error(
      `softmax: x: expected rank >= ${minRank} [${options.causal ? '..., Lq, Lk' : '..., n'}], received shape ${fmt(x.shape)}`,
    );
  }
}
