import accumulateSource from '../../shaders/accumulate.wgsl?raw';
import adamwSource from '../../shaders/adamw.wgsl?raw';
import { checkOptions } from '../checks';
import type { Context } from '../context';
import { type AdamWOptions, adamwSettings, RUN_OPTION_KEYS, type RunOptions } from '../options';
import { f32, Recording } from '../program';
import type { Tensor } from '../tensor';
import { checkF32, WG } from './train_common';

export type { AdamWOptions };

const OPTION_KEYS = ['lr', 'betas', 'eps', 'weightDecay'] as const;

/**
 * torch.optim.AdamW on the GPU: updates f32 parameters in place (decoupled weight decay, bias
 * correction, amsgrad off). The optimizer owns one gradient tensor per parameter (`grads`, zeros
 * at the start): {@link accumulate} adds gradients into them, {@link step} applies them, and
 * {@link zeroGrad} sets them back to zero. Gradients keep accumulating across `accumulate` calls
 * (and across steps) until `zeroGrad()`, as PyTorch's `.grad` with `zero_grad(set_to_none=False)`.
 * `step(grads)` applies gradients given directly instead (the held ones are then left alone).
 *
 * @example
 * const opt = new AdamW([w, b], { lr: 1e-3, weightDecay: 0.01 });
 * await opt.zeroGrad();
 * await opt.accumulate([dw, db]);
 * await opt.step();
 */
export class AdamW {
  readonly ctx: Context;
  /** Learning rate, read at every step (change it for a schedule). */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** One per parameter, its shape: what {@link accumulate} adds into and {@link step} applies. */
  readonly grads: readonly Tensor[];
  private readonly m: Tensor[];
  private readonly v: Tensor[];
  private steps = 0;

  constructor(
    readonly params: readonly Tensor[],
    options: AdamWOptions = {},
  ) {
    checkOptions('AdamW', options, OPTION_KEYS);
    if (!Array.isArray(params) || params.length === 0) {
      throw new Error(`AdamW: params must be a non-empty array of tensors, received ${String(params)}`);
    }
    this.ctx = params[0].ctx;
    params.forEach((p, i) => {
      checkF32('AdamW', `params[${i}]`, p, this.ctx);
    });
    const s = adamwSettings('AdamW', options);
    this.lr = s.lr;
    this.beta1 = s.beta1;
    this.beta2 = s.beta2;
    this.eps = s.eps;
    this.weightDecay = s.weightDecay;
    const zeros = (what: string) => params.map((p, i) => this.ctx.zeros(p.shape, 'f32', `AdamW:${what}${i}`));
    this.grads = zeros('grad');
    this.m = zeros('m');
    this.v = zeros('v');
  }

  /** Steps taken so far (PyTorch's `state['step']`). */
  get stepCount(): number {
    return this.steps;
  }

  /**
   * Adds `grads[i]` (parameter i's shape) into `this.grads[i]`; `undefined` entries are skipped.
   * With `encoder`, recorded into the app's encoder (the app submits it).
   */
  async accumulate(grads: readonly (Tensor | undefined)[], options: RunOptions = {}): Promise<void> {
    checkOptions('AdamW.accumulate', options, RUN_OPTION_KEYS);
    this.checkGrads('AdamW.accumulate', grads);
    const rec = new Recording(this.ctx, 'AdamW.accumulate');
    rec.watch(...grads);
    grads.forEach((g, i) => {
      if (!g) return;
      rec.dispatch({
        name: 'accumulate',
        sources: [accumulateSource],
        constants: { WG },
        uniforms: { total: g.size },
        bindings: [this.grads[i].buffer, g.buffer],
        workgroups: Math.ceil(g.size / WG),
      });
    });
    await rec.submit(options.encoder);
  }

  /**
   * One AdamW step for every parameter, with `grads` (default: the accumulated `this.grads`). A
   * parameter whose gradient is `undefined` is left alone, moments included (PyTorch skips
   * parameters whose `.grad` is None); the step counter is shared. With `encoder`, recorded into
   * the app's encoder (the step counter advances at once; the app submits it).
   */
  async step(grads: readonly (Tensor | undefined)[] = this.grads, options: RunOptions = {}): Promise<void> {
    checkOptions('AdamW.step', options, RUN_OPTION_KEYS);
    this.checkGrads('AdamW.step', grads);
    if (typeof this.lr !== 'number' || !Number.isFinite(this.lr) || this.lr < 0) {
      throw new Error(`AdamW.step: lr must be a finite number >= 0, received ${String(this.lr)}`);
    }
    this.steps++;
    const t = this.steps;
    const uniforms = {
      decay: f32(1 - this.lr * this.weightDecay),
      beta1: f32(this.beta1),
      beta2: f32(this.beta2),
      eps: f32(this.eps),
      stepSize: f32(this.lr / (1 - this.beta1 ** t)),
      bc2Sqrt: f32(Math.sqrt(1 - this.beta2 ** t)),
    };
    const rec = new Recording(this.ctx, 'AdamW.step');
    rec.watch(...this.params, ...grads);
    grads.forEach((g, i) => {
      if (!g) return;
      const p = this.params[i];
      rec.dispatch({
        name: 'adamw',
        sources: [adamwSource],
        constants: { WG },
        uniforms: { total: p.size, ...uniforms },
        bindings: [p.binding, g.binding, this.m[i].buffer, this.v[i].buffer],
        workgroups: Math.ceil(p.size / WG),
      });
    });
    await rec.submit(options.encoder);
  }

  /** Sets every held gradient (`this.grads`) to zero; with `encoder`, recorded into the app's. */
  async zeroGrad(options: RunOptions = {}): Promise<void> {
    checkOptions('AdamW.zeroGrad', options, RUN_OPTION_KEYS);
    this.ctx.assertAlive('AdamW.zeroGrad');
    const rec = new Recording(this.ctx, 'AdamW.zeroGrad');
    for (const g of this.grads) rec.clear(g.binding);
    await rec.submit(options.encoder);
  }

  /** Frees the moments and held gradients (the parameters stay with their owner). */
  destroy(): void {
    for (const t of [...this.grads, ...this.m, ...this.v]) t.destroy();
  }

  private checkGrads(what: string, grads: readonly (Tensor | undefined)[]): void {
    if (!Array.isArray(grads) || grads.length !== this.params.length) {
      throw new Error(
        `${what}: grads must be an array of ${this.params.length} tensors (one per parameter), received ${Array.isArray(grads) ? `${grads.length}` : String(grads)}`,
      );
    }
    grads.forEach((g, i) => {
      if (g) checkF32(what, `grads[${i}]`, g, this.ctx, this.params[i].shape);
    });
    this.params.forEach((p, i) => {
      p.assertUsable(`${what}: params[${i}]`, this.ctx);
    });
  }
}
