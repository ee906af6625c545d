import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttentionKernel, attention, type Context, planAttention } from '../src';
import { decodeAttention } from '../src/ops/attention';
import { type Case, checkCase, kernelOf } from './attention_cases';
import { planAsGpu, testContext } from './helpers';

// D 8 and Dv 5 (or 8) keep the number of distinct kernels small; Lk past 128 gives several chunks.
const base = { B: 1, Hq: 2, Hkv: 2, D: 8, Dv: 5 };

const up4 = (n: number) => Math.ceil(n / 4) * 4;

// Both forms of the split pass, on any adapter: 'registers' reads whole vec4s, so its cases have
// head dims rounded up to multiples of 4 (with other sizes the context runs 'workgroup'). The
// 'workgroup' pass also as a GPU plans it (not a fallback adapter): its key groups fold their
// states into one partial per chunk, where on a CPU each group writes its own.
describe.each<[AttentionKernel, boolean]>([
  ['workgroup', false],
  ['registers', false],
  ['workgroup', true],
])('%s split pass (as a GPU plans it: %s)', (kernel, gpu) => {
  let device: Context;
  let ctx: Context;
  beforeAll(async () => {
    device = await testContext({ disableFeatures: ['shader-f16'], attentionKernel: kernel });
    ctx = gpu ? planAsGpu(device, kernel) : device;
  });
  afterAll(() => device?.destroy());

  /** `c` through decodeAttention against the reference, on this describe's split pass. */
  const check = async (c: Case) => {
    const fitted = kernel === 'registers' ? { ...c, D: up4(c.D), Dv: up4(c.Dv) } : c;
    const plan = await checkCase(ctx, decodeAttention, fitted);
    expect(kernelOf(plan)).toBe(kernel);
    if (kernel === 'workgroup' && plan.path === 'decode') expect(plan.folded).toBe(gpu);
  };

  describe('split-K decode kernel matches the float64 reference', () => {
    const cases: [string, Case][] = [
      ['size 1', { ...base, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, Dv: 1 }],
      ['one query, several chunks', { ...base, Lq: 1, Lk: 300, Dv: 8 }],
      ['chunks and tiles not filled, odd Dv', { ...base, B: 2, Lq: 3, Lk: 517 }],
      [
        'GQA: 8 queries of 4 heads per kv head (several row blocks)',
        { ...base, Hq: 8, Hkv: 2, Lq: 8, Lk: 200 },
      ],
      ['MQA: rows that do not fill a block', { ...base, Hq: 3, Hkv: 1, Lq: 2, Lk: 150 }],
      ['more queries than a block (any Lq works)', { ...base, Hq: 1, Hkv: 1, Lq: 19, Lk: 70 }],
      ['scale option', { ...base, Lq: 2, Lk: 90, scale: 0.37 }],
      ['large logits (about 1e4 after scaling)', { ...base, Lq: 2, Lk: 260, magnitude: 40, scale: 1 }],
      ['head dim 64', { ...base, Hq: 1, Hkv: 1, Lq: 2, Lk: 140, D: 64, Dv: 64 }],
      ['Dv 256: one key group', { ...base, Hq: 1, Hkv: 1, Lq: 1, Lk: 130, D: 4, Dv: 256 }],
    ];
    for (const [name, c] of cases) it(name, () => check(c));
  });

  describe('causal and masks', () => {
    const cases: [string, Case][] = [
      ['causal, Lq < Lk', { ...base, Lq: 4, Lk: 300, causal: true }],
      ['causal with GQA', { ...base, Hq: 4, Hkv: 2, Lq: 3, Lk: 129, causal: true }],
      ['causal, Lq > Lk: empty rows give zeros and lse -Infinity', { ...base, Lq: 7, Lk: 3, causal: true }],
      [
        'bool key-padding mask [B, 1, 1, Lk]',
        { ...base, B: 2, Lq: 2, Lk: 200, mask: { kind: 'bool', shape: [2, 1, 1, 200] } },
      ],
      [
        'bool mask [Hq, Lq, Lk] that empties whole chunks',
        { ...base, Lq: 3, Lk: 260, mask: { kind: 'bool', shape: [2, 3, 260], pTrue: 0.01 } },
      ],
      [
        'bool mask that empties everything',
        { ...base, Lq: 2, Lk: 140, mask: { kind: 'bool', shape: [1], pTrue: 0 } },
      ],
      [
        'additive mask with -Infinity, causal, GQA',
        {
          ...base,
          Hq: 4,
          Hkv: 1,
          Lq: 2,
          Lk: 150,
          causal: true,
          mask: { kind: 'additive', shape: [1, 4, 2, 150] },
        },
      ],
    ];
    for (const [name, c] of cases) it(name, () => check(c));
  });

  describe('f16 storage (packed)', () => {
    const cases: [string, Case][] = [
      ['odd Dv, several chunks', { ...base, B: 2, Hq: 3, Hkv: 3, Lq: 3, Lk: 301, dtype: 'f16' }],
      [
        'GQA, causal, key-padding mask',
        {
          ...base,
          Hq: 4,
          Hkv: 2,
          Lq: 1,
          Lk: 199,
          causal: true,
          mask: { kind: 'bool', shape: [199] },
          dtype: 'f16',
        },
      ],
      ['large logits', { ...base, Lq: 2, Lk: 140, magnitude: 40, scale: 1, dtype: 'f16' }],
    ];
    for (const [name, c] of cases) it(name, () => check(c));
  });

  describe("layout 'blhd'", () => {
    const cases: [string, Case][] = [
      [
        'GQA, causal, several chunks and row blocks',
        { ...base, B: 2, Hq: 8, Hkv: 2, Lq: 3, Lk: 200, causal: true, layout: 'blhd' },
      ],
      ['f16, one query', { ...base, Hq: 3, Hkv: 1, Lq: 1, Lk: 301, dtype: 'f16', layout: 'blhd' }],
    ];
    for (const [name, c] of cases) it(name, () => check(c));
  });

  describe('kernel choice and resources', () => {
    it('attention uses the decode kernel for few queries against many keys', () => {
      const decodes = (Lq: number, Lk: number, options = {}) => {
        const q = ctx.zeros([1, 8, Lq, 64]);
        const kv = ctx.zeros([1, 2, Lk, 64]);
        const { path } = planAttention(q, kv, kv, options);
        for (const t of [q, kv]) t.destroy();
        return path === 'decode';
      };
      expect(decodes(1, 4096)).toBe(true);
      expect(decodes(4, 256, { causal: true })).toBe(true);
      expect(decodes(1, 4096, { returnWeights: true })).toBe(false);
      expect(decodes(9, 4096)).toBe(false);
      if (kernel === 'workgroup') {
        expect(decodes(8, 256)).toBe(true);
        expect(decodes(1, 64)).toBe(false);
      } else {
        // four query rows per invocation: the flash kernel takes over from three queries (short
        // keys) or five
        expect(decodes(2, 16)).toBe(true);
        expect(decodes(3, 64)).toBe(false);
        expect(decodes(8, 4096)).toBe(false);
      }
    });

    it('attention through the decode kernel matches the reference', () =>
      checkCase(ctx, attention, { ...base, Lq: 1, Lk: 300, Dv: 8, causal: true }));

    it('frees its partial buffers', async () => {
      const before = ctx.liveBytes;
      await checkCase(ctx, decodeAttention, { ...base, Lq: 1, Lk: 300, Dv: 8 });
      expect(ctx.liveBytes).toBe(before);
    });

    it('returnWeights throws', async () => {
      const t = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
      await expect(decodeAttention(t, t, t, { returnWeights: true })).rejects.toThrow(
        'decodeAttention: returnWeights is not supported by the split-K kernel, received true',
      );
      t.destroy();
    });
  });

  describe('random configurations (property test)', () => {
    it('30 configurations of shapes and options match the reference', async () => {
      const config = fc.record({
        B: fc.integer({ min: 1, max: 2 }),
        Hkv: fc.integer({ min: 1, max: 2 }),
        group: fc.integer({ min: 1, max: 4 }),
        Lq: fc.integer({ min: 1, max: 8 }),
        Lk: fc.integer({ min: 1, max: 400 }),
        // few head dims keep the number of distinct kernels (and so compile time) small
        D: fc.constantFrom(3, 8),
        Dv: fc.constant(5),
        causal: fc.boolean(),
        maskKind: fc.constantFrom('none', 'bool', 'additive'),
        maskDims: fc.integer({ min: 1, max: 4 }),
        broadcast: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        dtype: fc.constantFrom('f32', 'f16'),
        seed: fc.integer({ min: 1, max: 1e6 }),
      });
      await fc.assert(
        fc.asyncProperty(config, async (r) => {
          const Hq = r.Hkv * r.group;
          const full = [r.B, Hq, r.Lq, r.Lk];
          const shape = full.slice(4 - r.maskDims).map((d, i) => (r.broadcast[i] ? 1 : d));
          await check({
            B: r.B,
            Hq,
            Hkv: r.Hkv,
            Lq: r.Lq,
            Lk: r.Lk,
            D: r.D,
            Dv: r.Dv,
            causal: r.causal,
            seed: r.seed,
            dtype: r.dtype as 'f32' | 'f16',
            mask: r.maskKind === 'none' ? undefined : { kind: r.maskKind as 'bool' | 'additive', shape },
          });
        }),
        { numRuns: 30, seed: 20261125 },
      );
    });
  });
});

// The 'workgroup' pass sums each key row's lanes by subgroup shuffles where the device has
// subgroups (SwiftShader's hold 4 lanes, as many as it gives a row), else in workgroup memory; and
// as a GPU plans it (16 lanes per row at D 64), shuffles sum quarters of a row and workgroup memory
// the rest.
describe('workgroup split pass: lanes summed in workgroup memory', () => {
  const c: Case = {
    ...base,
    Hq: 4,
    Hkv: 2,
    Lq: 1,
    Lk: 300,
    D: 64,
    Dv: 64,
    causal: true,
    mask: { kind: 'bool', shape: [300] },
  };

  it('without subgroups (D 64, GQA, causal, bool mask)', async () => {
    const ctx = await testContext({
      disableFeatures: ['shader-f16', 'subgroups'],
      attentionKernel: 'workgroup',
    });
    const plan = await checkCase(ctx, decodeAttention, c);
    expect(plan).toMatchObject({ path: 'decode', kernel: 'workgroup', subgroups: false });
    ctx.destroy();
  });

  it('lanes wider than a subgroup (the same case)', async () => {
    const device = await testContext({ disableFeatures: ['shader-f16'] });
    const gpuLike = planAsGpu(device, 'workgroup', { subgroupMinSize: 32 });
    const plan = await checkCase(gpuLike, decodeAttention, c);
    expect(plan).toMatchObject({
      path: 'decode',
      kernel: 'workgroup',
      keyLanes: 16,
      folded: true,
      subgroups: device.hasSubgroups,
    });
    gpuLike.destroy();
    device.destroy();
  });
});
