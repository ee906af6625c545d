import activationBackwardSource from '../../shaders/activation_backward.wgsl?raw';
import { Recording } from '../program';
import type { Tensor } from '../tensor';
import { checkLinearInputs, type LinearOptions, linear } from './linear';
import { matmul } from './matmul';
import { checkF32, recordColumnSum, WG } from './train_common';

/** The forward's options (without `heads`): `bias` and `activation` are needed to recompute z. */
export type LinearBackwardOptions = Omit<LinearOptions, 'heads'>;

export interface LinearGradients {
  /** [B, L, K] */
  dx: Tensor;
  /** [N, K] */
  dweight: Tensor;
  /** [N], when the forward had a bias */
  dbias?: Tensor;
  /** [B, L, N], when the forward had a residual: a copy of dy */
  dresidual?: Tensor;
}

const ACTIVATIONS = { relu: 1, gelu: 2 } as const;

/**
 * Gradients of {@link linear} (y = act(x Wᵀ + bias) + residual) for dy [B, L, N], in f32:
 * dz = dy · act'(z) with z recomputed by `linear`, dx = dz W, dweight = dzᵀ x (summed over B and
 * L), dbias = Σ_rows dz (a column-sum pass, no atomics), dresidual = dy. Pass the forward's
 * options. f32 tensors of rank 3 only (no `heads`).
 *
 * @example
 * const y = await linear(x, w, { bias: b, activation: 'gelu' });
 * const { dx, dweight, dbias } = await linearBackward(x, w, dy, { bias: b, activation: 'gelu' });
 */
export async function linearBackward(
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  options: LinearBackwardOptions = {},
): Promise<LinearGradients> {
  if (options !== null && typeof options === 'object' && 'heads' in options) {
    throw new Error('linearBackward: heads is not supported (pass x [B, L, K] and dy [B, L, N])');
  }
  const { B, L, K, N } = checkLinearInputs(x, weight, options);
  checkF32('linearBackward', 'x', x, x.ctx, [B, L, K]);
  checkF32('linearBackward', 'weight', weight, x.ctx);
  checkF32('linearBackward', 'dy', dy, x.ctx, [B, L, N]);
  const { ctx } = x;
  const rows = B * L;
  let dz = dy;
  if (options.activation) {
    const z = await linear(x, weight, { bias: options.bias });
    dz = ctx.zeros([B, L, N], 'f32', 'linearBackward:dz');
    const rec = new Recording(ctx, 'linearBackward');
    rec.dispatch({
      name: 'activation_backward',
      sources: [activationBackwardSource],
      constants: { WG, ACT: ACTIVATIONS[options.activation] },
      uniforms: { total: rows * N },
      bindings: [dy.buffer, z.buffer, dz.buffer],
      workgroups: Math.ceil((rows * N) / WG),
    });
    await rec.submit();
    z.destroy();
  }
  const dx = await matmul(dz, weight); // [B, L, N] · [N, K]
  const dz2 = ctx.wrap(dz.buffer, [rows, N]);
  const x2 = ctx.wrap(x.buffer, [rows, K]);
  const dweight = await matmul(dz2, x2, { transposeA: true }); // [N, rows] · [rows, K]
  dz2.destroy();
  x2.destroy();
  const dbias = options.bias ? ctx.zeros([N], 'f32', 'linearBackward:dbias') : undefined;
  const dresidual = options.residual ? ctx.zeros([B, L, N], 'f32', 'linearBackward:dresidual') : undefined;
  if (dbias || dresidual) {
    const rec = new Recording(ctx, 'linearBackward');
    if (dbias) recordColumnSum(rec, dz.buffer, rows, N, dbias.buffer);
    if (dresidual) rec.copy(dy.buffer, 0, dresidual.buffer, 0, rows * N * 4);
    await rec.submit();
  }
  if (dz !== dy) dz.destroy();
  return { dx, dweight, ...(dbias ? { dbias } : {}), ...(dresidual ? { dresidual } : {}) };
}
