import type { NormSettings } from '../options';
import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

/** The options of the float64 norms: those of the GPU ops' math. */
export type NormCpuOptions = NormSettings;

export interface NormBackwardCpuResult {
  /** [..., F] */
  dx: HostResult;
  /** [F] */
  dweight: HostResult;
  /** [F], LayerNorm with a bias only */
  dbias?: HostResult;
}

/** Rows of x [..., F] and the per-row statistics (mean 0 for RMSNorm) the norms share. */
function rowStats(what: string, x: HostTensor, weight: HostTensor, centred: boolean, eps: number) {
  const F = x.shape[x.shape.length - 1];
  if (x.shape.length < 1) throw new Error(`${what}: x: expected rank >= 1 [..., F], received shape []`);
  if (weight.shape.length !== 1 || weight.shape[0] !== F) {
    throw new Error(`${what}: weight must have shape [${F}], received ${fmt(weight.shape)}`);
  }
  const rows = x.data.length / F;
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    if (centred) {
      for (let f = 0; f < F; f++) m += Number(x.data[r * F + f]);
      m /= F;
    }
    let s = 0;
    for (let f = 0; f < F; f++) s += (Number(x.data[r * F + f]) - m) ** 2;
    mean[r] = m;
    rstd[r] = 1 / Math.sqrt(s / F + eps);
  }
  return { F, rows, mean, rstd };
}

function norm(
  what: string,
  x: HostTensor,
  weight: HostTensor,
  bias: HostTensor | undefined,
  centred: boolean,
  eps: number,
) {
  const { F, rows, mean, rstd } = rowStats(what, x, weight, centred, eps);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== F)) {
    throw new Error(`${what}: bias must have shape [${F}], received ${fmt(bias.shape)}`);
  }
  const out = new Float64Array(rows * F);
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < F; f++) {
      const xhat = (Number(x.data[r * F + f]) - mean[r]) * rstd[r];
      out[r * F + f] = xhat * Number(weight.data[f]) + (bias ? Number(bias.data[f]) : 0);
    }
  }
  return { data: out, shape: [...x.shape] };
}

function normBackward(
  what: string,
  x: HostTensor,
  weight: HostTensor,
  dy: HostTensor,
  centred: boolean,
  eps: number,
  withBias: boolean,
): NormBackwardCpuResult {
  const { F, rows, mean, rstd } = rowStats(what, x, weight, centred, eps);
  if (dy.data.length !== x.data.length) {
    throw new Error(`${what}: dy must have x's shape ${fmt(x.shape)}, received ${fmt(dy.shape)}`);
  }
  const dx = new Float64Array(rows * F);
  const dweight = new Float64Array(F);
  const dbias = new Float64Array(F);
  const xhat = new Float64Array(F);
  const g = new Float64Array(F); // dy * weight: the gradient of xhat
  for (let r = 0; r < rows; r++) {
    let meanG = 0;
    let meanGX = 0;
    for (let f = 0; f < F; f++) {
      const d = Number(dy.data[r * F + f]);
      xhat[f] = (Number(x.data[r * F + f]) - mean[r]) * rstd[r];
      g[f] = d * Number(weight.data[f]);
      meanG += g[f];
      meanGX += g[f] * xhat[f];
      dweight[f] += d * xhat[f];
      dbias[f] += d;
    }
    meanG = centred ? meanG / F : 0;
    meanGX /= F;
    for (let f = 0; f < F; f++) dx[r * F + f] = rstd[r] * (g[f] - meanG - xhat[f] * meanGX);
  }
  return {
    dx: { data: dx, shape: [...x.shape] },
    dweight: { data: dweight, shape: [F] },
    ...(withBias ? { dbias: { data: dbias, shape: [F] } } : {}),
  };
}

/**
 * PyTorch's LayerNorm over the last axis in float64: x [..., F], weight [F], bias [F] ->
 * (x - mean) / sqrt(var + eps) * weight + bias, var the biased variance of the row.
 */
export function layerNormCpu(
  x: HostTensor,
  weight: HostTensor,
  bias?: HostTensor,
  options: NormCpuOptions = {},
): HostResult {
  return norm('layerNormCpu', x, weight, bias, true, options.eps ?? 1e-5);
}

/** Gradients of {@link layerNormCpu} for the upstream gradient dy [..., F]. */
export function layerNormBackwardCpu(
  x: HostTensor,
  weight: HostTensor,
  dy: HostTensor,
  options: NormCpuOptions & { bias?: boolean } = {},
): NormBackwardCpuResult {
  return normBackward('layerNormBackwardCpu', x, weight, dy, true, options.eps ?? 1e-5, options.bias ?? true);
}

/** PyTorch's RMSNorm over the last axis in float64: x / sqrt(mean(x²) + eps) * weight. */
export function rmsNormCpu(x: HostTensor, weight: HostTensor, options: NormCpuOptions = {}): HostResult {
  return norm('rmsNormCpu', x, weight, undefined, false, options.eps ?? 1e-5);
}

/** Gradients of {@link rmsNormCpu} (dx, dweight) for the upstream gradient dy [..., F]. */
export function rmsNormBackwardCpu(
  x: HostTensor,
  weight: HostTensor,
  dy: HostTensor,
  options: NormCpuOptions = {},
): NormBackwardCpuResult {
  return normBackward('rmsNormBackwardCpu', x, weight, dy, false, options.eps ?? 1e-5, false);
}
