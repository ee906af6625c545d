import layerNormSource from '../../shaders/layer_norm.wgsl?raw';
import layerNormBackwardSource from '../../shaders/layer_norm_backward.wgsl?raw';
import { checkOptions } from '../checks';
import { type NormSettings as NormCpuOptions, RUN_OPTION_KEYS, type RunOptions } from '../options';
import { f32, Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { checkResults, OUTPUT_OPTION_KEYS, type OutputOptions, resultTensor, submitOrFree } from './output';
import { checkF32, recordColumnSum, rowLayout } from './train_common';

export type NormOptions = NormCpuOptions;

/** Where the work and the gradients of a norm's backward go. */
export interface NormBackwardCallOptions extends RunOptions {
  /** Write the gradients into these 'f32' tensors (x's shape, [F], [F]) instead of new ones. */
  out?: { dx?: Tensor; dweight?: Tensor; dbias?: Tensor };
}

export interface NormGradients {
  /** [..., F] */
  dx: Tensor;
  /** [F] */
  dweight: Tensor;
  /** [F], LayerNorm with a bias only */
  dbias?: Tensor;
}

const FORWARD_KEYS = ['eps', ...OUTPUT_OPTION_KEYS] as const;
const BACKWARD_KEYS = ['eps', 'out', ...RUN_OPTION_KEYS] as const;

/** Invocations per row on a GPU: small rows would leave a large workgroup idle. */
const rowWorkgroup = (F: number) => (F <= 256 ? 32 : 128);

function checkNorm(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  options: NormOptions,
  keys: readonly string[],
) {
  checkOptions(op, options, keys);
  const eps = options.eps ?? 1e-5;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) {
    throw new Error(`${op}: options.eps must be a finite number >= 0, received ${String(options.eps)}`);
  }
  checkF32(op, 'x', x, x?.ctx);
  if (x.rank < 1) throw new Error(`${op}: x: expected rank >= 1 [..., F], received shape ${fmt(x.shape)}`);
  const F = x.shape[x.rank - 1];
  checkF32(op, 'weight', weight, x.ctx, [F]);
  if (bias !== undefined) checkF32(op, 'bias', bias, x.ctx, [F]);
  return { F, rows: x.size / F, eps };
}

async function normForward(
  op: string,
  x: Tensor,
  weight: Tensor,
  bias: Tensor | undefined,
  options: NormOptions & OutputOptions,
  centred: boolean,
): Promise<Tensor> {
  const { F, rows, eps } = checkNorm(op, x, weight, bias, options, FORWARD_KEYS);
  const { ctx } = x;
  const rec = new Recording(ctx, op);
  rec.watch(x, weight, bias, options.out);
  const out = resultTensor(ctx, rec, `${op}: out`, options.out, x.shape, 'f32');
  const layout = rowLayout(ctx, rowWorkgroup(F));
  rec.dispatch({
    name: 'layer_norm',
    sources: [layerNormSource, layout.source],
    constants: { WG: layout.WG, CENTRED: centred, BIAS: bias !== undefined },
    uniforms: { F, eps: f32(eps), rows },
    bindings: [x.binding, weight.binding, bias?.binding, out.binding],
    workgroups: layout.workgroups(rows),
  });
  await submitOrFree(rec, options.encoder, [out !== options.out ? out : undefined]);
  return out;
}

async function normBackward(
  op: string,
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  options: NormOptions & NormBackwardCallOptions,
  centred: boolean,
  withBias: boolean,
): Promise<NormGradients> {
  const { F, rows, eps } = checkNorm(op, x, weight, undefined, options, BACKWARD_KEYS);
  checkF32(op, 'dy', dy, x.ctx, x.shape);
  const { ctx } = x;
  const { out } = options;
  checkResults(op, out, ['dx', 'dweight', 'dbias']);
  if (out?.dbias !== undefined && !withBias) {
    throw new Error(`${op}: options.out.dbias is given but the call computes no dbias (no bias)`);
  }
  const rec = new Recording(ctx, op);
  rec.watch(x, weight, dy, out?.dx, out?.dweight, out?.dbias);
  const made: Tensor[] = [];
  const result = (name: 'dx' | 'dweight' | 'dbias', shape: readonly number[]) => {
    const t = resultTensor(ctx, rec, `${op}: out.${name}`, out?.[name], shape, 'f32');
    if (t !== out?.[name]) made.push(t);
    return t;
  };
  let dx: Tensor;
  let dweight: Tensor;
  let dbias: Tensor | undefined;
  try {
    dx = result('dx', x.shape);
    dweight = result('dweight', [F]);
    dbias = withBias ? result('dbias', [F]) : undefined;
  } catch (e) {
    for (const t of made) t.destroy();
    throw e;
  }
  const prod = rec.buffer(x.size * 4, `${op}:dy*xhat`);
  const layout = rowLayout(ctx, rowWorkgroup(F));
  rec.dispatch({
    name: 'layer_norm_backward',
    sources: [layerNormBackwardSource, layout.source],
    constants: { WG: layout.WG, CENTRED: centred },
    uniforms: { F, eps: f32(eps), rows },
    bindings: [x.binding, weight.binding, dy.binding, dx.binding, prod],
    workgroups: layout.workgroups(rows),
  });
  recordColumnSum(rec, prod, rows, F, dweight.binding);
  if (dbias) recordColumnSum(rec, dy.binding, rows, F, dbias.binding);
  await submitOrFree(rec, options.encoder, made);
  return { dx, dweight, ...(dbias ? { dbias } : {}) };
}

/**
 * PyTorch's LayerNorm over the last axis on the GPU, in f32: x [..., F], weight [F], bias [F]
 * (optional) -> (x - mean) / sqrt(var + eps) · weight + bias, var the biased variance of the row.
 *
 * @example
 * const h = await layerNorm(x, gamma, beta, { eps: 1e-5 });
 */
export async function layerNorm(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor,
  options: NormOptions & OutputOptions = {},
): Promise<Tensor> {
  return normForward('layerNorm', x, weight, bias, options, true);
}

/**
 * Gradients of {@link layerNorm} for dy [..., F]: dx, dweight and (with `bias: true`, the default)
 * dbias. The row statistics are recomputed from x; dweight and dbias are column sums over the rows
 * in a second pass (deterministic, no atomics).
 */
export async function layerNormBackward(
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  options: NormOptions & NormBackwardCallOptions & { bias?: boolean } = {},
): Promise<NormGradients> {
  const { bias, ...rest } = options;
  if (bias !== undefined && typeof bias !== 'boolean') {
    throw new Error(`layerNormBackward: options.bias must be a boolean, received ${typeof bias}`);
  }
  return normBackward('layerNormBackward', x, weight, dy, rest, true, bias ?? true);
}

/** PyTorch's RMSNorm over the last axis on the GPU, in f32: x / sqrt(mean(x²) + eps) · weight. */
export async function rmsNorm(
  x: Tensor,
  weight: Tensor,
  options: NormOptions & OutputOptions = {},
): Promise<Tensor> {
  return normForward('rmsNorm', x, weight, undefined, options, false);
}

/** Gradients (dx, dweight) of {@link rmsNorm} for dy [..., F], as {@link layerNormBackward}. */
export async function rmsNormBackward(
  x: Tensor,
  weight: Tensor,
  dy: Tensor,
  options: NormOptions & NormBackwardCallOptions = {},
): Promise<NormGradients> {
  return normBackward('rmsNormBackward', x, weight, dy, options, false, false);
}
