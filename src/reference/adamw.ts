export interface AdamWOptions {
  /** Learning rate. Default 1e-3. */
  lr?: number;
  /** Decay rates of the first and second moment averages. Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to the denominator. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay: p -= lr · weightDecay · p before the Adam update. Default 1e-2. */
  weightDecay?: number;
}

/** The options of AdamW with PyTorch's defaults filled in, checked. */
export function adamwSettings(what: string, options: AdamWOptions) {
  const lr = options.lr ?? 1e-3;
  const [beta1, beta2] = options.betas ?? [0.9, 0.999];
  const eps = options.eps ?? 1e-8;
  const weightDecay = options.weightDecay ?? 1e-2;
  const finite = (name: string, v: unknown, lo: number, hi: number) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
      throw new Error(`${what}: ${name} must be a number in [${lo}, ${hi}], received ${String(v)}`);
    }
  };
  finite('lr', lr, 0, Number.MAX_VALUE);
  if (!Array.isArray(options.betas ?? []) || (options.betas && options.betas.length !== 2)) {
    throw new Error(`${what}: betas must be a pair [beta1, beta2], received ${String(options.betas)}`);
  }
  finite('betas[0]', beta1, 0, 1 - Number.EPSILON);
  finite('betas[1]', beta2, 0, 1 - Number.EPSILON);
  finite('eps', eps, 0, Number.MAX_VALUE);
  finite('weightDecay', weightDecay, 0, Number.MAX_VALUE);
  return { lr, beta1, beta2, eps, weightDecay };
}

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
