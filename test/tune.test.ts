// The attention autotuner: choices per shape class, kept per context, persisted as JSON and
// restored only on the same adapter; untuned classes keep the rule.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Context,
  clearTuning,
  exportTuning,
  importTuning,
  planAttention,
  shapeClass,
  tuneAttention,
  tunedKernel,
} from '../src';
import { testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

const decode = { B: 1, Hq: 4, Hkv: 2, Lq: 1, Lk: 300, D: 8, Dv: 8 };
const prefill = { B: 1, Hq: 2, Hkv: 2, Lq: 40, Lk: 40, D: 8, Dv: 8 };

describe('shapeClass', () => {
  it('keeps dtype, head dims and group; rounds rows and lengths up to powers of two', () => {
    expect(shapeClass({ B: 1, Hq: 32, Hkv: 8, Lq: 1, Lk: 3000, D: 128, Dv: 128 }, 'f16')).toBe(
      'f16 D128/128 g4 BH32 Lq1 Lk4096',
    );
    expect(shapeClass({ ...prefill, Lq: 33, Lk: 33 })).toBe(shapeClass({ ...prefill, Lq: 64, Lk: 64 }));
    expect(shapeClass({ ...decode, Lq: 3 })).not.toBe(shapeClass({ ...decode, Lq: 4 }));
  });
});

describe('tuneAttention', () => {
  it('times both forms per class, records the faster, and exports and restores it', async () => {
    clearTuning(ctx);
    expect(tunedKernel(ctx, decode)).toBeUndefined();
    // two of the candidates (the default is every form), to keep the spec short
    const result = await tuneAttention(ctx, [decode, prefill, { ...prefill, D: 6, Dv: 6 }], {
      repeats: 2,
      budgetMs: 60_000,
      candidates: ['workgroup', 'registers'],
    });
    expect(result.tuned).toEqual([shapeClass(decode), shapeClass(prefill)]);
    expect(result.skipped.map((s) => s.reason)).toEqual(['one candidate only (workgroup)']);
    for (const shape of [decode, prefill]) {
      const choice = result.choices[shapeClass(shape)];
      expect(Object.keys(choice.ms).sort()).toEqual(['registers', 'workgroup']);
      const fastest = choice.ms.registers! < choice.ms.workgroup! ? 'registers' : 'workgroup';
      expect(choice.kernel).toBe(fastest);
      expect(tunedKernel(ctx, shape)).toBe(fastest);
      expect(tunedKernel(ctx, shape, 'f16')).toBeUndefined();
    }
    expect(['timestamp-query', 'wall clock']).toContain(result.choices[shapeClass(decode)].timing);

    const saved = JSON.parse(JSON.stringify(exportTuning(ctx)));
    clearTuning(ctx);
    expect(tunedKernel(ctx, decode)).toBeUndefined();
    expect(importTuning(ctx, saved)).toBe(2);
    expect(tunedKernel(ctx, decode)).toBe(result.choices[shapeClass(decode)].kernel);

    // attention plans follow the recorded choice, whatever the context's rule says
    for (const kernel of ['workgroup', 'registers', 'tiled'] as const) {
      importTuning(ctx, {
        ...saved,
        choices: { [shapeClass(prefill)]: { ...saved.choices[shapeClass(prefill)], kernel } },
      });
      const q = ctx.zeros([prefill.B, prefill.Hq, prefill.Lq, prefill.D]);
      const plan = planAttention(q, q, q);
      expect(plan.path === 'flash' && plan.kernel).toBe(kernel);
      q.destroy();
    }
    importTuning(ctx, saved);

    clearTuning(ctx);
    const elsewhere = { ...saved, adapter: { ...saved.adapter, architecture: 'another-gpu' } };
    expect(importTuning(ctx, elsewhere)).toBe(0);
    expect(tunedKernel(ctx, decode)).toBeUndefined();
  });

  it('skips shapes once the time budget is spent', async () => {
    clearTuning(ctx);
    const result = await tuneAttention(ctx, [prefill, decode], { budgetMs: 0 });
    expect(result.tuned).toEqual([]);
    expect(result.skipped).toHaveLength(2);
    expect(result.skipped[0].reason).toMatch(/budget/);
  });
});
