// Property test: random shapes, dtypes and options against the float64 reference. Seeded: a failure
// prints fast-check's seed and path; rerun with that seed to reproduce. The node and browser
// projects each run about half of the generated cases (ownFuzzCase).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { attention, type Context } from '../src';
import { checkCase } from './attention_cases';
import { ownFuzzCase, testContext } from './helpers';

const SEED = 20261124;
const RUNS = 500;

let ctx: Context;
let registers: Context;
let tiled: Context;
beforeAll(async () => {
  ctx = await testContext();
  registers = await testContext({ attentionKernel: 'registers' });
  tiled = await testContext({ attentionKernel: 'tiled' });
});
afterAll(() => {
  ctx?.destroy();
  registers?.destroy();
  tiled?.destroy();
});

const config = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Hkv: fc.integer({ min: 1, max: 2 }),
  group: fc.integer({ min: 1, max: 3 }),
  // mostly prefill sizes; a fifth of the cases are few queries against many keys (decode)
  decode: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
  Lq: fc.integer({ min: 1, max: 70 }),
  Lk: fc.integer({ min: 1, max: 70 }),
  // head dims from two small ranges keep the number of distinct kernels (compile time) bounded
  D: fc.constantFrom<number>(1, 3, 4, 7, 8),
  Dv: fc.constantFrom<number>(2, 4, 5, 8),
  dtype: fc.constantFrom('f32', 'f16'),
  causal: fc.boolean(),
  maskKind: fc.constantFrom('none', 'bool', 'additive'),
  maskDims: fc.integer({ min: 1, max: 4 }),
  broadcast: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
  scale: fc.option(fc.double({ min: -2, max: 2, noNaN: true }), { nil: undefined }),
  weights: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1e6 }),
});

type FuzzConfig = typeof config extends fc.Arbitrary<infer T> ? T : never;

/**
 * One fuzz configuration through `attention` on `on`, against the reference; with `extras`, layout
 * and dropout on a slice of the cases (only where they add few pipelines to compile: each
 * registers pipeline costs SwiftShader seconds; the named cases cover every form).
 */
async function fuzzCase(on: Context, r: FuzzConfig, extras = false) {
  if (!ownFuzzCase(r.seed)) return;
  const Hq = r.Hkv * r.group;
  const Lq = r.decode ? 1 + (r.Lq % 8) : r.Lq;
  const Lk = r.decode ? 256 + r.Lk * 5 : r.Lk;
  const full = [r.B, Hq, Lq, Lk];
  const shape = full.slice(4 - r.maskDims).map((d, i) => (r.broadcast[i] ? 1 : d));
  await checkCase(
    on,
    attention,
    {
      B: r.B,
      Hq,
      Hkv: r.Hkv,
      Lq,
      Lk,
      D: r.D,
      Dv: r.Dv,
      dtype: r.dtype as 'f32' | 'f16',
      causal: r.causal,
      scale: r.scale,
      seed: r.seed,
      mask: r.maskKind === 'none' ? undefined : { kind: r.maskKind as 'bool' | 'additive', shape },
      // blhd: a tenth of the cases, without changing the others
      layout: extras && r.seed % 10 === 0 ? 'blhd' : 'bhld',
      // dropout (p from 0 to 0.8) on half the f32 cases of one head-dim pair
      dropout:
        extras && r.D === 8 && r.Dv === 8 && r.dtype === 'f32' && r.seed % 2 === 0
          ? { p: (r.seed % 9) / 10, seed: r.seed }
          : undefined,
    },
    { lse: true, weights: r.weights && !r.decode },
  );
}

describe(`fuzz: ${RUNS} random configurations (seed ${SEED}), split between the projects`, () => {
  it('attention matches the reference for every shape, dtype and option', { timeout: 900_000 }, async () => {
    let done = 0;
    await fc.assert(
      fc.asyncProperty(config, async (r) => {
        if (++done % 100 === 0) console.log(`fuzz: ${done} of ${RUNS} cases`);
        await fuzzCase(ctx, r);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });
});

// The registers form on any adapter: head dims multiples of 4 and no weights, so that it (and its
// decode pass) runs every case rather than handing it to the workgroup form.
const REGISTERS_RUNS = 150;
describe(`fuzz, registers form: ${REGISTERS_RUNS} random configurations (seed ${SEED})`, () => {
  it('attention matches the reference', { timeout: 900_000 }, async () => {
    const fitted = config.map((r) => ({
      ...r,
      D: 4 * Math.ceil(r.D / 4),
      Dv: 4 * Math.ceil(r.Dv / 4),
      weights: false,
    }));
    await fc.assert(
      fc.asyncProperty(fitted, (r) => fuzzCase(registers, r)),
      { numRuns: REGISTERS_RUNS, seed: SEED + 1 },
    );
  });
});

// The tiled form (GPUs) on any adapter, without weights (which it leaves to the workgroup form),
// with layout and dropout on a slice of the cases (its strides are uniforms: no more pipelines).
const TILED_RUNS = 50;
describe(`fuzz, tiled form: ${TILED_RUNS} random configurations (seed ${SEED})`, () => {
  it('attention matches the reference', { timeout: 900_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(
        config.map((r) => ({ ...r, weights: false })),
        (r) => fuzzCase(tiled, r, true),
      ),
      { numRuns: TILED_RUNS, seed: SEED + 2 },
    );
  });
});
