import linearSource from '../../shaders/linear.wgsl?raw';
import { checkOptions } from '../checks';
import { chunkPrelude, elementPrelude, elementStorage, inputPrelude } from '../f16';
import { RUN_OPTION_KEYS, type RunOptions } from '../options';
import { Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { expectTensor } from '../tensor';
import { resultTensor } from './output';

export interface LinearOptions extends RunOptions {
  /** Added to every row: [N]. */
  bias?: Tensor;
  /** Write the output split into heads, [B, heads, L, N / heads], instead of [B, L, N]. */
  heads?: number;
  /** Applied after the bias: 'relu', or 'gelu' (tanh approximation, PyTorch's approximate='tanh'). */
  activation?: 'relu' | 'gelu';
  /** Added last, [B, L, N] (not with `heads`): a transformer's skip connection. */
  residual?: Tensor;
  /** Write y into this tensor (x's dtype, y's shape) instead of a new one. */
  out?: Tensor;
}

const OPTION_KEYS = ['bias', 'heads', 'activation', 'residual', 'out', ...RUN_OPTION_KEYS] as const;
const ACTIVATIONS = { relu: 1, gelu: 2 } as const;
const WG = 64;

/**
 * PyTorch's Linear on the GPU, y = x Wᵀ + bias (then an optional activation and residual), with
 * the head split and merge folded into its reads and writes: x [B, L, K] or heads [B, H, L, K / H] (merged on read), weight [N, K]
 * -> y [B, L, N], or [B, heads, L, N / heads] with `heads`. x, weight and bias share one dtype
 * ('f32' or 'f16'; sums in f32), which y has too.
 *
 * @example
 * // q [B, H, L, E / H] from x [B, L, E] and nn.Linear weights
 * const q = await linear(x, wq, { bias: bq, heads: H });
 */
export async function linear(x: Tensor, weight: Tensor, options: LinearOptions = {}): Promise<Tensor> {
  const { B, Hin, L, K, N, heads } = checkLinearInputs(x, weight, options);
  const { ctx } = x;
  const storage = elementStorage(ctx, x.dtype);
  // whole vec4 reads when every head's features start and end on a multiple of 4
  const vec4 = (K / Hin) % 4 === 0;
  const constants = {
    WG,
    BIAS: options.bias !== undefined,
    ACT: options.activation ? ACTIVATIONS[options.activation] : 0,
    RESIDUAL: options.residual !== undefined,
  };
  const shape = options.heads === undefined ? [B, L, N] : [B, heads, L, N / heads];
  const rec = new Recording(ctx, 'linear');
  rec.watch(x, weight, options.bias, options.residual, options.out);
  const y = resultTensor(ctx, rec, 'linear: out', options.out, shape, x.dtype);
  rec.dispatch({
    name: 'linear',
    sources: [
      elementPrelude(storage, true),
      vec4 ? chunkPrelude(storage) : '',
      inputPrelude(vec4),
      linearSource,
    ],
    constants,
    uniforms: { rows: B * L, L, K, N, Hin, Hout: heads },
    bindings: [x.binding, weight.binding, options.bias?.binding, options.residual?.binding, y.binding],
    // one invocation per four outputs of a row
    workgroups: Math.ceil((B * L * Math.ceil(N / 4)) / WG),
  });
  await rec.submit(options.encoder);
  return y;
}

/** Validates the inputs of `linear`; returns the sizes. */
export function checkLinearInputs(
  x: Tensor,
  weight: Tensor,
  options: LinearOptions,
): { B: number; Hin: number; L: number; K: number; N: number; heads: number } {
  checkOptions('linear', options, OPTION_KEYS);
  expectTensor('linear: x', x);
  x.assertUsable('linear: x');
  expectTensor('linear: weight', weight);
  weight.assertUsable('linear: weight', x.ctx);
  if (x.rank !== 3 && x.rank !== 4) {
    throw new Error(
      `linear: x: expected rank 3 [B, L, K] or 4 [B, H, L, K / H], received shape ${fmt(x.shape)}`,
    );
  }
  const [B, Hin, L, d] = x.rank === 3 ? [x.shape[0], 1, x.shape[1], x.shape[2]] : x.shape;
  const K = Hin * d;
  if (x.dtype !== 'f32' && x.dtype !== 'f16') {
    throw new Error(`linear: x must have dtype 'f32' or 'f16', received '${x.dtype}'`);
  }
  if (weight.rank !== 2 || weight.shape[1] !== K) {
    throw new Error(`linear: weight must have shape [N, ${K}], received ${fmt(weight.shape)}`);
  }
  const N = weight.shape[0];
  const bias = options.bias;
  if (bias !== undefined) {
    expectTensor('linear: bias', bias);
    bias.assertUsable('linear: bias', x.ctx);
    if (bias.rank !== 1 || bias.shape[0] !== N) {
      throw new Error(`linear: bias must have shape [${N}], received ${fmt(bias.shape)}`);
    }
  }
  const residual = options.residual;
  if (residual !== undefined) {
    expectTensor('linear: residual', residual);
    residual.assertUsable('linear: residual', x.ctx);
    if (options.heads !== undefined || fmt(residual.shape) !== fmt([B, L, N])) {
      throw new Error(
        `linear: residual must have shape [${B}, ${L}, ${N}] (and no heads), received ${fmt(residual.shape)}`,
      );
    }
  }
  if (options.activation !== undefined && !(options.activation in ACTIVATIONS)) {
    throw new Error(`linear: activation must be 'relu' or 'gelu', received ${String(options.activation)}`);
  }
  for (const [name, t] of [
    ['weight', weight],
    ['bias', bias],
    ['residual', residual],
  ] as const) {
    if (t && t.dtype !== x.dtype) {
      throw new Error(`linear: ${name} must have x's dtype '${x.dtype}', received '${t.dtype}'`);
    }
  }
  const heads = options.heads ?? 1;
  if (!Number.isInteger(heads) || heads < 1 || N % heads !== 0) {
    throw new Error(`linear: heads must be a positive integer dividing N=${N}, received ${String(heads)}`);
  }
  return { B, Hin, L, K, N, heads };
}
