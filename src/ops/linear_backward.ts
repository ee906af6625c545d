import activationBackwardSource from '../../shaders/activation_backward.wgsl?raw';
import { Recording } from '../program';
import type { Tensor } from '../tensor';
import { mergeHeads, splitHeads } from './heads';
import { checkLinearInputs, type LinearOptions, linear } from './linear';
import { matmul } from './matmul';
import { checkF32, recordColumnSum, WG } from './train_common';

/**
 * The forward's options: `bias` and `activation` are needed to recompute z. Not `out` or
 * `encoder`: the backward runs several ops, each submitted in turn.
 */
export type LinearBackwardOptions = Omit<LinearOptions, 'out' | 'encoder'>;

export interface LinearGradients {
  /** x's shape: [B, L, K], or [B, H, L, K / H] for x given in heads */
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
 * options. f32 only. Head layouts as in the forward: x [B, H, L, K / H] (merged on read) gives dx
 * in that layout; with `heads`, dy is [B, heads, L, N / heads] (the split output's layout).
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
  for (const key of ['out', 'encoder'] as const) {
    if (options !== null && typeof options === 'object' && key in options) {
      throw new Error(
        `linearBackward: options.${key} is not supported (the backward runs several ops, each submitted in turn), received ${key}`,
      );
    }
  }
  const { B, Hin, L, N, heads } = renamed(() => checkLinearInputs(x, weight, options));
  checkF32('linearBackward', 'x', x, x.ctx);
  checkF32('linearBackward', 'weight', weight, x.ctx);
  const dyShape = options.heads === undefined ? [B, L, N] : [B, heads, L, N / heads];
  checkF32('linearBackward', 'dy', dy, x.ctx, dyShape);
  if (x.rank === 3 && options.heads === undefined) return linearBackwardRows(x, weight, dy, options);
  // head layouts: merge to rows [B, L, ·], then split dx back into x's layout
  const xRows = x.rank === 4 ? await mergeHeads(x) : x;
  const dyRows = options.heads === undefined ? dy : await mergeHeads(dy);
  const g = await linearBackwardRows(xRows, weight, dyRows, { ...options, heads: undefined });
  if (xRows !== x) xRows.destroy();
  if (dyRows !== dy) dyRows.destroy();
  if (x.rank === 4) {
    const dx = await splitHeads(g.dx, Hin);
    g.dx.destroy();
    g.dx = dx;
  }
  return g;
}

/** Runs the forward's checks with its messages naming linearBackward. */
function renamed<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('linear: ')) {
      e.message = `linearBackward: ${e.message.slice('linear: '.length)}`;
    }
    throw e;
  }
}

/** linearBackward for x [B, L, K] and dy [B, L, N]. */
async function linearBackwardRows(
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  options: LinearBackwardOptions,
): Promise<LinearGradients> {
  const [B, L, K] = x.shape;
  const N = weight.shape[0];
  const { ctx } = x;
  const rows = B * L;
  let dz = dy;
  if (options.activation) {
    const z = await linear(x, weight, { bias: options.bias });
    dz = ctx.zeros([B, L, N], 'f32', 'linearBackward:dz');
    const rec = new Recording(ctx, 'linearBackward');
    rec.watch(dy);
    rec.dispatch({
      name: 'activation_backward',
      sources: [activationBackwardSource],
      constants: { WG, ACT: ACTIVATIONS[options.activation] },
      uniforms: { total: rows * N },
      bindings: [dy.binding, z.binding, dz.binding],
      workgroups: Math.ceil((rows * N) / WG),
    });
    await rec.submit();
    z.destroy();
  }
  const dx = await matmul(dz, weight); // [B, L, N] · [N, K]
  const dz2 = ctx.wrap(dz.buffer, [rows, N], { offset: dz.byteOffset });
  const x2 = ctx.wrap(x.buffer, [rows, K], { offset: x.byteOffset });
  const dweight = await matmul(dz2, x2, { transposeA: true }); // [N, rows] · [rows, K]
  dz2.destroy();
  x2.destroy();
  const dbias = options.bias ? ctx.zeros([N], 'f32', 'linearBackward:dbias') : undefined;
  const dresidual = options.residual ? ctx.zeros([B, L, N], 'f32', 'linearBackward:dresidual') : undefined;
  if (dbias || dresidual) {
    const rec = new Recording(ctx, 'linearBackward');
    rec.watch(dy);
    if (dbias) recordColumnSum(rec, dz.binding, rows, N, dbias.binding);
    if (dresidual) rec.copy(dy.buffer, dy.byteOffset, dresidual.buffer, dresidual.byteOffset, rows * N * 4);
    await rec.submit();
  }
  if (dz !== dy) dz.destroy();
  return { dx, dweight, ...(dbias ? { dbias } : {}), ...(dresidual ? { dresidual } : {}) };
}
