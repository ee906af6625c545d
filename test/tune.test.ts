// The attention autotuner: choices per shape class, kept per context, persisted as JSON and
// restored only on the same adapter; untuned classes keep the rule.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type AttentionKernel,
  attention,
  type Context,
  clearTuning,
  createContext,
  exportTuning,
  importTuning,
  planAttention,
  shapeClass,
  type Tensor,
  type TuningShape,
  tuneAttention,
  tunedKernel,
} from '../src';
import { attentionCpu } from '../src/reference';
import { caseInputs } from './attention_cases';
import { expectClose, F32_TOL, testContext } from './helpers';

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
    expect(shapeClass(prefill, 'f32', true)).toBe(`${shapeClass(prefill)} causal`);
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

// First-use tuning (createContext({ autotune })): contexts on the test context's device, so that
// they reuse the pipelines compiled above; two candidates to keep the spec short.
describe('autotune', () => {
  const candidates: AttentionKernel[] = ['workgroup', 'registers'];
  /** A context tuning at first use, and the progress messages it printed. */
  async function autotuned(budgetMs = 60_000) {
    const said: string[] = [];
    const tuned = await createContext({
      device: ctx.device,
      autotune: { candidates, budgetMs, repeats: 2, progress: (m) => said.push(m) },
    });
    return { tuned, said };
  }
  /** attention on seeded inputs of `shape`, `calls` times at once, each checked against the reference. */
  async function run(c: Context, shape: TuningShape, calls = 1): Promise<void> {
    const host = caseInputs({ ...shape, seed: 5 });
    const [q, k, v] = [host.q, host.k, host.v].map((h) => c.tensor(h.data as Float32Array, h.shape));
    const outs: Tensor[] = [];
    try {
      const results = await Promise.all(Array.from({ length: calls }, () => attention(q, k, v)));
      outs.push(...results.map((r) => r.output));
      const expected = attentionCpu(host.q, host.k, host.v).output.data;
      for (const out of outs) expectClose(await out.read(), expected, F32_TOL, shapeClass(shape));
    } finally {
      for (const t of [q, k, v, ...outs]) t.destroy();
    }
  }
  const timings = (said: string[]) => said.filter((m) => m.includes(': timing '));

  it('times the first call of a class once (concurrent calls share it), then uses the choice', async () => {
    const { tuned, said } = await autotuned();
    try {
      await run(tuned, prefill, 2);
      // the rule's form first
      const rule = tuned.attentionKernel;
      const order = [rule, ...candidates.filter((f) => f !== rule)];
      expect(timings(said)).toEqual([`tune ${shapeClass(prefill)}: timing ${order.join(', ')}`]);
      const choice = exportTuning(tuned).choices[shapeClass(prefill)];
      expect(Object.keys(choice.ms).sort()).toEqual(['registers', 'workgroup']);
      expect(tunedKernel(tuned, prefill)).toBe(choice.kernel);
      const q = tuned.zeros([prefill.B, prefill.Hq, prefill.Lq, prefill.D]);
      const plan = planAttention(q, q, q);
      q.destroy();
      expect(plan.path === 'flash' && plan.kernel).toBe(choice.kernel);
      await run(tuned, { ...prefill, Lq: 33, Lk: 33 }); // the same class: no timing
      expect(timings(said)).toHaveLength(1);

      // persisted and restored in another context: nothing timed there
      const saved = JSON.parse(JSON.stringify(exportTuning(tuned)));
      const restored = await autotuned();
      try {
        expect(importTuning(restored.tuned, saved)).toBe(1);
        await run(restored.tuned, prefill);
        expect(restored.said).toEqual([]);
        expect(tunedKernel(restored.tuned, prefill)).toBe(choice.kernel);
      } finally {
        restored.tuned.destroy();
      }
    } finally {
      tuned.destroy();
    }
  });

  it('keeps the rule where timing is unavailable, once per class; ctx.tune() times it later', async () => {
    const { tuned, said } = await autotuned();
    try {
      const frozen = vi.spyOn(performance, 'now').mockReturnValue(1000); // a clock that resolves nothing
      try {
        await run(tuned, decode);
        await run(tuned, decode);
      } finally {
        frozen.mockRestore();
      }
      expect(said).toEqual([
        `tune ${shapeClass(decode)}: the rule stays (timing unavailable: performance.now() does not advance)`,
      ]);
      expect(tunedKernel(tuned, decode)).toBeUndefined();
      expect(exportTuning(tuned).choices).toEqual({});

      const result = await tuned.tune(undefined, { candidates, repeats: 2, budgetMs: 60_000 });
      expect(result.tuned).toEqual([shapeClass(decode)]);
      expect(tunedKernel(tuned, decode)).toBe(result.choices[shapeClass(decode)].kernel);
    } finally {
      tuned.destroy();
    }
  });

  it('is off by default: calls time nothing and record nothing', async () => {
    const plain = await createContext({ device: ctx.device });
    try {
      expect(plain.autotune).toBeUndefined();
      await run(plain, prefill);
      expect(exportTuning(plain).choices).toEqual({});
      expect((await plain.tune()).tuned).toEqual([]); // no class met
    } finally {
      plain.destroy();
    }
  });

  it('names the argument in errors', async () => {
    const device = ctx.device;
    await expect(createContext({ device, autotune: 'on' as never })).rejects.toThrow(
      /options\.autotune must be a boolean or \{ budgetMs\?/,
    );
    await expect(createContext({ device, autotune: { budgetMs: -1 } })).rejects.toThrow(
      'createContext: options.autotune.budgetMs must be a number >= 0, received -1',
    );
    await expect(createContext({ device, autotune: { dtype: 'f16' } as never })).rejects.toThrow(
      /unknown option 'dtype'/,
    );
    await expect(tuneAttention(ctx, [{ ...prefill, Hq: 3 }])).rejects.toThrow(
      'tuneAttention: shapes[0].Hq must be a multiple of shapes[0].Hkv (2), received 3',
    );
    await expect(ctx.tune([prefill], { candidates: ['fast' as never] })).rejects.toThrow(
      /tuneAttention: options.candidates must be a non-empty array of 'workgroup'/,
    );
  });
});
