// attentionBackward with the sparse and programmable options against the float64 reference
// backward, in both kernel forms: the backward scores through the forward's rules (key_rules.wgsl)
// and differentiates softcap and scoreMod (scoreModGrad); with sinks it also returns dsinks.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  type AttentionOptions,
  attention,
  attentionBackward,
  type Context,
  type IntTensor,
  intTensor,
  type Tensor,
} from '../src';
import { type AttentionCpuOptions, attentionBackwardCpu } from '../src/reference';
import { caseInputs } from './attention_cases';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

interface SparseCase {
  shape: { B: number; Hq: number; Hkv: number; Lq: number; Lk: number; D: number; Dv: number };
  gpu: Omit<AttentionOptions, 'mask' | 'returnLse' | 'returnWeights'> & { scoreModGrad?: string };
  cpu: AttentionCpuOptions;
  magnitude?: number;
  /** gpu's cuSeqlensQ / cuSeqlensK uploaded as IntTensors */
  docsOnGpu?: boolean;
}

async function check(ctx: Context, c: SparseCase): Promise<void> {
  const inputs = caseInputs({ ...c.shape, magnitude: c.magnitude, seed: 5 });
  const { B, Hq, Lq, Dv } = c.shape;
  const dOData = randomArray(rng(77), B * Hq * Lq * Dv);
  const ref = attentionBackwardCpu(
    inputs.q,
    inputs.k,
    inputs.v,
    { data: dOData, shape: [B, Hq, Lq, Dv] },
    c.cpu,
  );
  const made: Tensor[] = [];
  const up = (data: ArrayLike<number>, shape: readonly number[]) => {
    const t = ctx.tensor(data as Float32Array, shape);
    made.push(t);
    return t;
  };
  const ints: IntTensor[] = [];
  await checked(ctx, async () => {
    const [q, k, v] = [inputs.q, inputs.k, inputs.v].map((h) => up(h.data as Float32Array, h.shape));
    const { scoreModGrad, ...forward } = c.gpu;
    for (const name of ['cuSeqlensQ', 'cuSeqlensK'] as const) {
      const x = forward[name] as ArrayLike<number> | undefined;
      if (c.docsOnGpu && x) {
        const t = intTensor(ctx, Array.from(x), [x.length]);
        ints.push(t);
        forward[name] = t;
      }
    }
    const f = await attention(q, k, v, { ...forward, returnLse: true });
    made.push(f.output, f.lse);
    const dO = up(dOData, [B, Hq, Lq, Dv]);
    const g = await attentionBackward(q, k, v, f.output, dO, { ...forward, scoreModGrad, lse: f.lse });
    made.push(g.dq, g.dk, g.dv, ...(g.dsinks ? [g.dsinks] : []));
    const label = JSON.stringify(c.gpu);
    expectClose(await g.dq.read(), ref.dq.data, F32_TOL, `${label} dq`);
    expectClose(await g.dk.read(), ref.dk.data, F32_TOL, `${label} dk`);
    expectClose(await g.dv.read(), ref.dv.data, F32_TOL, `${label} dv`);
    expect(g.dsinks === undefined).toBe(ref.dsinks === undefined);
    if (g.dsinks && ref.dsinks)
      expectClose(await g.dsinks.read(), ref.dsinks.data, F32_TOL, `${label} dsinks`);
  });
  for (const t of [...made, ...ints]) t.destroy();
}

const base = { B: 1, Hq: 2, Hkv: 1, Lq: 9, Lk: 9, D: 8, Dv: 8 };
const cases: [string, SparseCase][] = [
  [
    'sliding window with causal',
    { shape: base, gpu: { causal: true, window: [3, 0] }, cpu: { causal: true, window: [3, 0] } },
  ],
  [
    'window on both sides, Lq < Lk',
    { shape: { ...base, Lq: 5, Lk: 12 }, gpu: { window: [2, 1] }, cpu: { window: [2, 1] } },
  ],
  [
    'softcap (large logits)',
    { shape: base, magnitude: 3, gpu: { softcap: 2, scale: 1 }, cpu: { softcap: 2, scale: 1 } },
  ],
  [
    'ALiBi, causal',
    {
      shape: base,
      gpu: { alibiSlopes: [0.5, 0.25], causal: true },
      cpu: { alibiSlopes: [0.5, 0.25], causal: true },
    },
  ],
  [
    'ALiBi per batch item ([B, Hq] batch-major), causal',
    {
      shape: { ...base, B: 2 },
      gpu: { alibiSlopes: [0.5, 0.25, 0.1, 0.8], causal: true },
      cpu: { alibiSlopes: [0.5, 0.25, 0.1, 0.8], causal: true },
    },
  ],
  ['sinks (and dsinks)', { shape: base, gpu: { sinks: [0.3, -0.5] }, cpu: { sinks: [0.3, -0.5] } }],
  [
    'sinks with causal rows that attend nothing else',
    {
      shape: { ...base, Lq: 6, Lk: 3 },
      gpu: { sinks: [1, 0], causal: true },
      cpu: { sinks: [1, 0], causal: true },
    },
  ],
  [
    'keys in use per batch item: sequsedK and cacheLeftpad (one item all padding), causal, ALiBi',
    {
      shape: { ...base, B: 3, Lq: 4, Lk: 11 },
      gpu: { sequsedK: [11, 9, 6], cacheLeftpad: [2, 9, 0], causal: true, alibiSlopes: [0.5, 0.25] },
      cpu: { sequsedK: [11, 9, 6], cacheLeftpad: [2, 9, 0], causal: true, alibiSlopes: [0.5, 0.25] },
    },
  ],
  [
    'packed documents, causal inside each',
    {
      shape: base,
      gpu: { cuSeqlensQ: [0, 4, 9], cuSeqlensK: [0, 4, 9], causal: true },
      cpu: { cuSeqlensQ: [0, 4, 9], cuSeqlensK: [0, 4, 9], causal: true },
    },
  ],
  [
    'packed documents as IntTensors (one empty), window, GQA',
    {
      shape: { ...base, Hq: 4, Hkv: 2, Lq: 10, Lk: 12 },
      docsOnGpu: true,
      gpu: { cuSeqlensQ: [0, 3, 3, 10], cuSeqlensK: [0, 5, 6, 12], window: [2, 1] },
      cpu: { cuSeqlensQ: [0, 3, 3, 10], cuSeqlensK: [0, 5, 6, 12], window: [2, 1] },
    },
  ],
  [
    'scoreMod with scoreModGrad',
    {
      shape: base,
      gpu: {
        scoreMod:
          'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s * 0.5 + f32(i) * 0.1 - f32(j) * 0.05; }',
        scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 0.5; }',
      },
      cpu: { scoreMod: (s, _b, _h, i, j) => s * 0.5 + i * 0.1 - j * 0.05, scoreModGrad: () => 0.5 },
    },
  ],
  [
    'maskMod',
    {
      shape: base,
      gpu: { maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return (i + j) % 3u != 0u; }' },
      cpu: { maskMod: (_b, _h, i, j) => (i + j) % 3 !== 0 },
    },
  ],
  [
    'scoreMod, scoreModGrad and maskMod reading modData',
    {
      shape: base,
      gpu: {
        scoreMod:
          'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s * gain(h) + bias(j % 4u); }',
        scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return gain(h); }',
        maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return keep(i + j) != 0; }',
        modData: { gain: [0.5, 1.25], bias: [0.25, -0.5, 0, 1], keep: Int32Array.of(1, 1, 0, 1, 1, 1, 0) },
      },
      cpu: {
        scoreMod: (s, _b, h, _i, j) => s * [0.5, 1.25][h]! + [0.25, -0.5, 0, 1][j % 4]!,
        scoreModGrad: (_s, _b, h) => [0.5, 1.25][h]!,
        // past the end of keep: its last element
        maskMod: (_b, _h, i, j) => [1, 1, 0, 1, 1, 1, 0][Math.min(i + j, 6)] !== 0,
      },
    },
  ],
  [
    'window, ALiBi, sinks and softcap together, GQA',
    {
      shape: { ...base, Hq: 4, Hkv: 2, Lq: 11, Lk: 11 },
      magnitude: 2,
      gpu: {
        window: [4, 0],
        causal: true,
        alibiSlopes: [0.5, 0.25, 0.125, 0.0625],
        sinks: [0, 0.5, -0.5, 1],
        softcap: 5,
      },
      cpu: {
        window: [4, 0],
        causal: true,
        alibiSlopes: [0.5, 0.25, 0.125, 0.0625],
        sinks: [0, 0.5, -0.5, 1],
        softcap: 5,
      },
    },
  ],
];

describe.each<AttentionKernel>(['workgroup', 'registers'])(
  'attentionBackward with sparse options, %s form',
  (kernel) => {
    let ctx: Context;
    beforeAll(async () => {
      ctx = await testContext({ attentionKernel: kernel });
    });
    afterAll(() => ctx?.destroy());

    for (const [name, c] of cases) it(name, () => check(ctx, c));

    it('scoreMod without scoreModGrad is refused with the signature to write', async () => {
      const t = ctx.tensor(new Float32Array(16), [1, 1, 2, 8]);
      const lse = ctx.tensor(new Float32Array(2), [1, 1, 2]);
      const scoreMod = 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s; }';
      await expect(attentionBackward(t, t, t, t, t, { scoreMod, lse })).rejects.toThrow(
        "attentionBackward: options.scoreMod needs options.scoreModGrad, WGSL 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32' (its derivative in s), received undefined",
      );
      for (const x of [t, lse]) x.destroy();
    });
    it("a scoreModGrad that does not compile shows its line and the compiler's message", async () => {
      const t = ctx.tensor(new Float32Array(16), [1, 1, 2, 8]);
      const lse = ctx.tensor(new Float32Array(2), [1, 1, 2]);
      const scoreMod = 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s; }';
      const scoreModGrad =
        'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {\n  return slope(h);\n}';
      const error = await attentionBackward(t, t, t, t, t, { scoreMod, scoreModGrad, lse }).catch(
        (e: Error) => e.message,
      );
      expect(error).toMatch(/^attentionBackward: options.scoreModGrad does not compile:\nline 2:\d+: /);
      expect(error).toContain('return slope(h);');
      for (const x of [t, lse]) x.destroy();
    });
  },
);
