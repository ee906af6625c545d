import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, type AdamWOptions, type Context } from '../src';
import { type AdamWCpuState, adamwStepCpu } from '../src/reference';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

/** Runs `steps` steps on the GPU and in float64 with the same gradients; compares the parameters. */
async function check(shapes: number[][], steps: number, options: AdamWOptions, seed = 23) {
  const random = rng(seed);
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const init = sizes.map((n) => randomArray(random, n));
  const gradients = Array.from({ length: steps }, () => sizes.map((n) => randomArray(random, n, 2)));
  const states: AdamWCpuState[] = init.map((p) => ({
    param: Float64Array.from(p),
    m: new Float64Array(p.length),
    v: new Float64Array(p.length),
  }));
  for (let t = 1; t <= steps; t++) {
    states.forEach((s, i) => {
      adamwStepCpu(s, gradients[t - 1][i], t, options);
    });
  }
  await checked(ctx, async () => {
    const params = init.map((p, i) => ctx.tensor(p, shapes[i]));
    const opt = new AdamW(params, options);
    for (let t = 0; t < steps; t++) {
      const grads = gradients[t].map((g, i) => ctx.tensor(g, shapes[i]));
      await opt.step(grads);
      for (const g of grads) g.destroy();
    }
    expect(opt.stepCount).toBe(steps);
    for (let i = 0; i < params.length; i++) {
      expectClose(await params[i].read(), states[i].param, F32_TOL, `param ${i}`);
    }
    opt.destroy();
    for (const p of params) p.destroy();
  });
}

describe('AdamW steps match torch.optim.AdamW in float64', () => {
  it('one element, one step (defaults)', () => check([[1]], 1, {}));
  it('odd shapes, 10 steps, large lr and weight decay', () =>
    check([[3, 5], [7], [130]], 10, { lr: 0.05, weightDecay: 0.1, betas: [0.8, 0.99], eps: 1e-6 }));
  it('no weight decay, 20 steps', () => check([[2, 33]], 20, { lr: 1e-3, weightDecay: 0 }));
});

describe('held gradients', () => {
  it('accumulate twice then step equals a step with the sum; zeroGrad clears', async () => {
    const random = rng(2);
    const p0 = randomArray(random, 9);
    const g = randomArray(random, 9);
    const state = { param: Float64Array.from(p0), m: new Float64Array(9), v: new Float64Array(9) };
    adamwStepCpu(
      state,
      g.map((x) => 2 * x),
      1,
      { lr: 0.01 },
    );
    await checked(ctx, async () => {
      const p = ctx.tensor(p0, [9]);
      const gt = ctx.tensor(g, [9]);
      const opt = new AdamW([p], { lr: 0.01 });
      await opt.accumulate([gt]);
      await opt.accumulate([gt]);
      await opt.step();
      expectClose(await p.read(), state.param, F32_TOL, 'param');
      await opt.zeroGrad();
      expect(Array.from(await opt.grads[0].read())).toEqual(new Array(9).fill(0));
      opt.destroy();
      p.destroy();
      gt.destroy();
    });
  });
  it('an undefined gradient leaves its parameter alone', async () => {
    const a = ctx.tensor([1, 2], [2]);
    const b = ctx.tensor([3, 4], [2]);
    const g = ctx.tensor([1, 1], [2]);
    const opt = new AdamW([a, b], { lr: 0.1 });
    await opt.step([g, undefined]);
    expect(Array.from(await b.read())).toEqual([3, 4]);
    expect(Array.from(await a.read()).every((x, i) => x < [1, 2][i])).toBe(true);
    opt.destroy();
    for (const t of [a, b, g]) t.destroy();
  });
});

describe('bad input throws an error naming the argument', () => {
  it('options, gradient shapes and counts', async () => {
    const p = ctx.tensor([1, 2], [2]);
    expect(() => new AdamW([p], { lr: -1 })).toThrow('AdamW: lr must be a number in [0, ');
    expect(() => new AdamW([p], { betas: [0.9, 1] })).toThrow('AdamW: betas[1] must be a number in [0, ');
    expect(() => new AdamW([p], { momentum: 0.9 } as never)).toThrow(
      "AdamW: unknown option 'momentum', expected one of lr, betas, eps, weightDecay",
    );
    expect(() => new AdamW([])).toThrow('AdamW: params must be a non-empty array of tensors');
    const opt = new AdamW([p]);
    const g3 = ctx.tensor([1, 2, 3], [3]);
    await expect(opt.step([g3])).rejects.toThrow('AdamW.step: grads[0] must have shape [2], received [3]');
    await expect(opt.step([])).rejects.toThrow(
      'AdamW.step: grads must be an array of 1 tensors (one per parameter), received 0',
    );
    opt.destroy();
    for (const t of [p, g3]) t.destroy();
  });
});
