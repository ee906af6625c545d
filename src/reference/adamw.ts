import { type AdamWOptions, adamwSettings } from '../options';

export { type AdamWOptions, adamwSettings };
/** One parameter's state for {@link adamwStepCpu}. */
export interface AdamWCpuState {
  param: Float64Array;
  /** First moment, zeros at the start. */
  m: Float64Array;
  /** Second moment, zeros at the start. */
  v: Float64Array;
}

/**
 * One torch.optim.AdamW step (amsgrad off, maximize off) in float64, in place: `step` counts from 1.
 * p ← p − lr·wd·p; m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
 * p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps).
 */
export function adamwStepCpu(
  state: AdamWCpuState,
  grad: ArrayLike<number>,
  step: number,
  options: AdamWOptions = {},
): void {
  const { lr, beta1, beta2, eps, weightDecay } = adamwSettings('adamwStepCpu', options);
  const { param, m, v } = state;
  if (grad.length !== param.length) {
    throw new Error(`adamwStepCpu: grad must have ${param.length} elements, received ${grad.length}`);
  }
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  for (let i = 0; i < param.length; i++) {
    const g = Number(grad[i]);
    param[i] *= 1 - lr * weightDecay;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    param[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
}
