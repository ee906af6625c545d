import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, type Context, fromF16Bits, toF16Bits } from '../src';
import { type Case, checkCase } from './attention_cases';
import { testContext } from './helpers';

describe('f16 conversion (IEEE 754 binary16 bit patterns)', () => {
  // Values and their binary16 encodings, from the standard's format definition.
  const exact: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [1 - 2 ** -11, 0x3bff], // largest below 1
    [1 + 2 ** -10, 0x3c01], // smallest above 1
    [Number.POSITIVE_INFINITY, 0x7c00],
    [Number.NEGATIVE_INFINITY, 0xfc00],
  ];
  it('exact values encode and decode to their bit patterns', () => {
    for (const [x, bits] of exact) {
      expect(toF16Bits(x), `toF16Bits(${x})`).toBe(bits);
      expect(Object.is(fromF16Bits(bits), x), `fromF16Bits(0x${bits.toString(16)})`).toBe(true);
    }
  });

  it('rounds to nearest, ties to even', () => {
    const cases: [number, number][] = [
      [1 / 3, 0x3555],
      [Math.PI, 0x4248],
      [1 + 2 ** -11, 0x3c00], // halfway between 0x3c00 and 0x3c01: to even
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: to even
      [1 + 2 ** -11 + 2 ** -30, 0x3c01], // just above halfway (a double rounded through f32 would tie)
      [-(1 + 2 ** -11 + 2 ** -30), 0xbc01],
      [2 ** -14 - 2 ** -25, 0x0400], // halfway between the largest subnormal and the smallest normal
      [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // halfway between 0x0001 and 0x0002: to even
      [2 ** -26, 0x0000],
      [-(2 ** -26), 0x8000],
      [1e-40, 0x0000], // an f32 subnormal
      [65519, 0x7bff], // below halfway to 2^16: stays finite
    ];
    for (const [x, bits] of cases) expect(toF16Bits(x), `toF16Bits(${x})`).toBe(bits);
  });

  it('overflows to Infinity and keeps NaN a NaN', () => {
    expect(toF16Bits(65520)).toBe(0x7c00); // halfway to 2^16 rounds to even, which is Infinity
    expect(toF16Bits(1e6)).toBe(0x7c00);
    expect(toF16Bits(-1e6)).toBe(0xfc00);
    expect(toF16Bits(1e300)).toBe(0x7c00);
    const nan = toF16Bits(Number.NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
    expect(fromF16Bits(0x7e00)).toBeNaN();
    expect(fromF16Bits(0x7c01)).toBeNaN();
    expect(fromF16Bits(0xfe00)).toBeNaN();
  });

  it('every non-NaN bit pattern survives a round trip', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && h & 0x03ff) continue;
      if (toF16Bits(fromF16Bits(h)) !== h) expect.fail(`0x${h.toString(16)} -> ${fromF16Bits(h)}`);
    }
  });
});

// Small head dims keep the number of distinct kernels (compiles) low; Dv 3 makes rows share words.
const f16Cases: [string, Case][] = [
  ['odd Dv and odd rows: rows share packed words', { B: 2, Hq: 3, Hkv: 3, Lq: 5, Lk: 13, D: 8, Dv: 3 }],
  ['size 1', { B: 1, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, D: 8, Dv: 1 }],
  ['more keys than a tile, Dv 8', { B: 1, Hq: 2, Hkv: 2, Lq: 7, Lk: 70, D: 8, Dv: 8 }],
  [
    'large logits (about 1e4 after scaling)',
    { B: 1, Hq: 2, Hkv: 2, Lq: 9, Lk: 20, D: 8, Dv: 3, magnitude: 40, scale: 1 },
  ],
  ['causal, Lq < Lk', { B: 1, Hq: 2, Hkv: 2, Lq: 5, Lk: 21, D: 8, Dv: 3, causal: true }],
  [
    'causal, Lq > Lk: empty rows give zeros and lse -Infinity',
    { B: 1, Hq: 1, Hkv: 1, Lq: 9, Lk: 4, D: 8, Dv: 3, causal: true },
  ],
  ['GQA: 6 query heads on 2 kv heads', { B: 1, Hq: 6, Hkv: 2, Lq: 3, Lk: 11, D: 8, Dv: 3 }],
  [
    'bool mask [B, 1, 1, Lk] broadcast',
    {
      B: 2,
      Hq: 2,
      Hkv: 2,
      Lq: 4,
      Lk: 10,
      D: 8,
      Dv: 3,
      mask: { kind: 'bool', shape: [2, 1, 1, 10], pTrue: 0.5 },
    },
  ],
  [
    'additive mask with -Infinity entries, causal',
    {
      B: 1,
      Hq: 2,
      Hkv: 2,
      Lq: 6,
      Lk: 15,
      D: 8,
      Dv: 3,
      causal: true,
      mask: { kind: 'additive', shape: [6, 15] },
    },
  ],
];

describe('f16 storage, packed two halves per u32 (no shader-f16 needed)', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext({ disableFeatures: ['shader-f16'] });
  });
  afterAll(() => ctx?.destroy());

  for (const [name, c] of f16Cases) {
    it(name, () => checkCase(ctx, attention, { ...c, dtype: 'f16' }));
  }
  it('weights stay f32', () =>
    checkCase(
      ctx,
      attention,
      { B: 1, Hq: 2, Hkv: 2, Lq: 5, Lk: 13, D: 8, Dv: 3, dtype: 'f16' },
      { lse: true, weights: true },
    ));

  it('mixed dtypes throw', async () => {
    const q = ctx.tensor(new Float32Array(8), [1, 1, 2, 4], { dtype: 'f16' });
    const k = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    await expect(attention(q, k, q)).rejects.toThrow(
      "attention: q, k and v must have the same dtype, received q 'f16', k 'f32', v 'f16'",
    );
    const b = ctx.tensor(new Uint8Array(8), [1, 1, 2, 4], { dtype: 'bool' });
    await expect(attention(b, b, b)).rejects.toThrow(
      "attention: q must have dtype 'f32' or 'f16', received 'bool'",
    );
    for (const t of [q, k, b]) t.destroy();
  });
});

describe('f16 storage, native shader-f16', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  for (const [name, c] of f16Cases.slice(0, 5)) {
    it(name, async (t) => {
      if (!ctx.hasF16) {
        console.info(
          `skipped: the adapter (${ctx.adapterInfo.architecture || ctx.adapterInfo.vendor}) has no shader-f16`,
        );
        t.skip();
      }
      await checkCase(ctx, attention, { ...c, dtype: 'f16' });
    });
  }
});
