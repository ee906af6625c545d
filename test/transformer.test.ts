import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  type Context,
  composedAttention,
  fusedAttention,
  initTransformerWeights,
  intTensor,
  reverseDigitsBatch,
  type TransformerConfig,
  trainReverseDigits,
  transformerParamShapes,
  transformerStep,
  uploadTransformer,
} from '../src';
import { adamwStepCpu, transformerCpu } from '../src/reference';
import { expectGradient } from './gradcheck';
import { checked, expectClose, F32_TOL, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

const config: TransformerConfig = { vocab: 11, dModel: 8, heads: 2, layers: 2, ffn: 12, maxLen: 8 };

describe('the demo transformer on the GPU matches its float64 reference', () => {
  it.each([
    ['fused', fusedAttention],
    ['composed', composedAttention],
  ])('loss, logits and every parameter gradient (%s attention)', async (_, attention) => {
    const weights = initTransformerWeights(config, 1);
    const batch = reverseDigitsBatch(rng(2), 3, 3); // [3, 6]
    const ref = transformerCpu(config, weights, batch.ids, batch.targets, [3, batch.length]);
    await checked(ctx, async () => {
      const params = uploadTransformer(ctx, config, weights);
      const ids = intTensor(ctx, batch.ids, [3, batch.length]);
      const targets = intTensor(ctx, batch.targets, [3, batch.length]);
      const r = await transformerStep(params, config, ids, targets, { returnWeights: true, attention });
      expectClose(await r.loss.read(), [ref.loss], F32_TOL, 'loss');
      expectClose(await r.logits.read(), ref.logits.data, F32_TOL, 'logits');
      expect(r.weights?.length).toBe(2);
      expect(r.weights?.[0].shape).toEqual([3, 2, 6, 6]);
      for (const [name] of transformerParamShapes(config)) {
        expectClose(await r.grads![name].read(), ref.grads[name], F32_TOL, name);
      }
      for (const t of [
        ...Object.values(params),
        ...Object.values(r.grads!),
        ...r.weights!,
        r.loss,
        r.logits,
        ids,
        targets,
      ])
        t.destroy();
    });
  });

  it('5 AdamW steps: GPU losses follow the float64 losses', async () => {
    const weights = initTransformerWeights(config, 3);
    const random = rng(4);
    const batches = Array.from({ length: 5 }, () => reverseDigitsBatch(random, 4, 3));
    const options = { lr: 0.01, weightDecay: 0.01 };
    // float64
    const names = transformerParamShapes(config).map(([n]) => n);
    const states = Object.fromEntries(
      names.map((n) => [
        n,
        {
          param: Float64Array.from(weights[n]),
          m: new Float64Array(weights[n].length),
          v: new Float64Array(weights[n].length),
        },
      ]),
    );
    const cpuLosses: number[] = [];
    batches.forEach((b, t) => {
      const current = Object.fromEntries(names.map((n) => [n, states[n].param]));
      const r = transformerCpu(config, current, b.ids, b.targets, [4, b.length]);
      cpuLosses.push(r.loss);
      for (const n of names) adamwStepCpu(states[n], r.grads[n], t + 1, options);
    });
    // GPU
    const gpuLosses: number[] = [];
    await checked(ctx, async () => {
      const params = uploadTransformer(ctx, config, weights);
      const opt = new AdamW(
        names.map((n) => params[n]),
        options,
      );
      for (const b of batches) {
        const ids = intTensor(ctx, b.ids, [4, b.length]);
        const targets = intTensor(ctx, b.targets, [4, b.length]);
        const r = await transformerStep(params, config, ids, targets);
        gpuLosses.push((await r.loss.read())[0]);
        await opt.step(names.map((n) => r.grads![n]));
        for (const t of [...Object.values(r.grads!), r.loss, r.logits, ids, targets]) t.destroy();
      }
      // The key bias's true gradient is 0 (a per-row constant added to the scores, which softmax
      // ignores): f32 leaves rounding noise there that Adam scales up to lr-sized steps.
      for (const n of names.filter((name) => !name.endsWith('k_proj.bias'))) {
        expectClose(
          await params[n].read(),
          states[n].param,
          { atol: 1e-3, rtol: 1e-3 },
          `${n} after 5 steps`,
        );
      }
      opt.destroy();
      for (const t of Object.values(params)) t.destroy();
    });
    expectClose(gpuLosses, cpuLosses, F32_TOL, 'losses');
    expect(cpuLosses[4]).toBeLessThan(cpuLosses[0]);
  });

  it('bad input names the argument', async () => {
    const weights = initTransformerWeights(config, 1);
    const params = uploadTransformer(ctx, config, weights);
    const ids = intTensor(ctx, new Int32Array(9), [1, 9]);
    await expect(transformerStep(params, config, ids, ids)).rejects.toThrow(
      'transformerStep: ids: sequence length must be <= maxLen 8, received 9',
    );
    const short = intTensor(ctx, new Int32Array(4), [1, 4]);
    await expect(
      transformerStep({ ...params, 'head.weight': params['ln_f.bias'] }, config, short, short),
    ).rejects.toThrow("transformerStep: params['head.weight'] must have shape [11, 8], received [8]");
    expect(() => initTransformerWeights({ ...config, heads: 3 }, 1)).toThrow(
      'initTransformerWeights: config.heads must divide dModel=8, received 3',
    );
    for (const t of [...Object.values(params), ids, short]) t.destroy();
  });
});

describe('trainReverseDigits', () => {
  it('reports progress with attention maps, the same each run', async () => {
    const run = () =>
      trainReverseDigits(ctx, {
        digits: 2,
        batch: 4,
        steps: 4,
        evalEvery: 2,
        watchAttention: true,
        model: { dModel: 8, ffn: 8 },
      });
    const a = await run();
    expect(a.history.map((p) => p.step)).toEqual([2, 4]);
    const last = a.history[1];
    expect(last.accuracy).toBeGreaterThanOrEqual(0);
    expect(last.accuracy).toBeLessThanOrEqual(1);
    expect(last.attention?.length).toBe(2);
    expect(last.attention?.[0].length).toBe(2 * 4 * 4); // [heads, L, L]
    expect(Array.from(last.sequence!)[2]).toBe(10); // the separator
    const b = await run();
    expect(b.history.map((p) => p.loss)).toEqual(a.history.map((p) => p.loss));
    for (const t of [...Object.values(a.params), ...Object.values(b.params)]) t.destroy();
  });
});

describe('the float64 transformer gradient equals central differences of its loss', () => {
  it('sampled entries of every parameter', () => {
    const small: TransformerConfig = { vocab: 5, dModel: 4, heads: 2, layers: 2, ffn: 6, maxLen: 4 };
    const weights = Object.fromEntries(
      Object.entries(initTransformerWeights(small, 7)).map(([n, w]) => [n, Float64Array.from(w)]),
    );
    // LayerNorm weights of 1 and biases of 0 would hide mistakes that swap them: perturb them
    const random = rng(8);
    for (const [n, w] of Object.entries(weights)) {
      if (!/ln/.test(n)) continue;
      for (let i = 0; i < w.length; i++) w[i] += 0.3 * (random() - 0.5);
    }
    const ids = [1, 4, 0, 2, 3, 3, 1, 0];
    const targets = [2, -1, 1, 4, 0, 2, -1, 3];
    const loss = (ws: Record<string, Float64Array>) => transformerCpu(small, ws, ids, targets, [2, 4]).loss;
    const { grads } = transformerCpu(small, weights, ids, targets, [2, 4]);
    const h = 1e-6;
    for (const [name] of transformerParamShapes(small)) {
      const w = weights[name];
      const picks = [0, Math.floor(w.length / 2), w.length - 1];
      const numeric = picks.map((i) => {
        const keep = w[i];
        w[i] = keep + h;
        const up = loss(weights);
        w[i] = keep - h;
        const down = loss(weights);
        w[i] = keep;
        return (up - down) / (2 * h);
      });
      expectGradient(
        picks.map((i) => grads[name][i]),
        numeric,
        name,
      );
    }
  });
});
