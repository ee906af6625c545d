import softmaxBackwardSource from '../../shaders/softmax_backward.wgsl?raw';
import { checkOptions } from '../checks';
import { f32, Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { OUTPUT_OPTION_KEYS, type OutputOptions, resultTensor, submitOrFree } from './output';
import { checkF32, rowLayout } from './train_common';

export interface SoftmaxBackwardOptions extends OutputOptions {
  /** The forward's `scale` (x was multiplied by it before the softmax). Default 1. */
  scale?: number;
}

/**
 * Gradient of {@link softmax} over the last axis, from its output y [..., n] and the upstream
 * gradient dy [..., n]: dx = scale · y · (dy − Σ_j dy_j y_j), one workgroup per row. Masked
 * entries (y = 0, causal or -Infinity) get gradient 0.
 *
 * @example
 * const p = await softmax(scores, { causal: true });
 * const dScores = await softmaxBackward(p, dp);
 */
export async function softmaxBackward(
  y: Tensor,
  dy: Tensor,
  options: SoftmaxBackwardOptions = {},
): Promise<Tensor> {
  checkOptions('softmaxBackward', options, ['scale', ...OUTPUT_OPTION_KEYS]);
  const scale = options.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new Error(
      `softmaxBackward: options.scale must be a finite number, received ${String(options.scale)}`,
    );
  }
  checkF32('softmaxBackward', 'y', y, y?.ctx);
  if (y.rank < 1)
    throw new Error(`softmaxBackward: y: expected rank >= 1 [..., n], received shape ${fmt(y.shape)}`);
  checkF32('softmaxBackward', 'dy', dy, y.ctx, y.shape);
  const n = y.shape[y.rank - 1];
  const rec = new Recording(y.ctx, 'softmaxBackward');
  rec.watch(y, dy, options.out);
  const dx = resultTensor(y.ctx, rec, 'softmaxBackward: out', options.out, y.shape, 'f32');
  const layout = rowLayout(y.ctx, n <= 1024 ? 16 : 64);
  rec.dispatch({
    name: 'softmax_backward',
    sources: [softmaxBackwardSource, layout.source],
    constants: { WG: layout.WG },
    uniforms: { n, scale: f32(scale), rows: y.size / n },
    bindings: [y.binding, dy.binding, dx.binding],
    workgroups: layout.workgroups(y.size / n),
  });
  await submitOrFree(rec, options.encoder, [dx !== options.out ? dx : undefined]);
  return dx;
}
