// Shared by the specs: one context per file, validation scopes, seeded data, tolerance checks.
import { afterAll, beforeAll, expect } from 'vitest';
import { type AttentionKernel, Context, createContext, type IntTensor, intTensor, type Tensor } from '../src';

/** f32 tolerance of DESIGN.md: |gpu - ref| <= ATOL + RTOL * |ref|. */
export const F32_TOL = { atol: 1e-4, rtol: 1e-4 };
export const F16_TOL = { atol: 2e-3, rtol: 2e-3 };

/**
 * Whether this project (node or browser) runs the fuzz case with this `seed`: the two projects
 * split every fuzz's generated cases by a hash of the case's seed, so that between them they run
 * each case once and CI pays each fuzz's time once (the named specs still run in both).
 */
export function ownFuzzCase(seed: number): boolean {
  const half = Math.imul(seed, 0x9e3779b1) >>> 31;
  return half === (typeof window === 'undefined' ? 0 : 1);
}

/** A context on navigator.gpu. Fails (never skips) when there is no adapter: CI must have one. */
export async function testContext(options: Parameters<typeof createContext>[0] = {}): Promise<Context> {
  const ctx = await createContext(options);
  ctx.device.addEventListener('uncapturederror', (e) => {
    throw new Error(`uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`);
  });
  return ctx;
}

/**
 * One context per kernel form for a whole spec file, made before its specs and destroyed after
 * them (call at the top level): each kernel variant, a pipeline SwiftShader takes seconds to
 * compile, then compiles once per file.
 */
export function formContexts<F extends AttentionKernel>(
  forms: readonly F[],
  options: Parameters<typeof createContext>[0] = {},
): Record<F, Context> {
  const contexts = {} as Record<F, Context>;
  beforeAll(async () => {
    for (const form of forms) contexts[form] = await testContext({ ...options, attentionKernel: form });
  });
  afterAll(() => {
    for (const form of forms) contexts[form]?.destroy();
  });
  return contexts;
}

/**
 * A context on `ctx`'s device that plans as on a GPU (its adapter taken for no fallback adapter):
 * runs the plans that only GPUs get, such as the workgroup form's splits over keys, on SwiftShader.
 * `adapter` overrides more of the adapter's description (subgroupMinSize...). Shares `ctx`'s device
 * and pipelines; destroying it leaves the device alive.
 */
export function planAsGpu(
  ctx: Context,
  attentionKernel: AttentionKernel,
  adapter: Partial<Context['adapterInfo']> = {},
): Context {
  return new Context(ctx.device, { ...ctx.adapterInfo, isFallbackAdapter: false, ...adapter }, false, {
    attentionKernel,
  });
}

/**
 * The layouts to run a row kernel's specs in (call at the top level): `adapter` (the file's
 * context), and a context on its device that plans as on a GPU, made before the specs and destroyed
 * after. On CPU adapters (SwiftShader) the row kernels give each invocation a row of its own, on
 * GPUs a workgroup per row: both run here. Each entry: [words for the spec titles, its context].
 */
export function rowLayouts(adapter: () => Context): readonly (readonly [string, () => Context])[] {
  let gpu: Context | undefined;
  beforeAll(() => {
    gpu = planAsGpu(adapter(), 'workgroup');
  });
  afterAll(() => gpu?.destroy());
  return [
    ['the adapter', adapter],
    ['as planned on a GPU', () => gpu!],
  ];
}

/** Runs `fn` inside validation and internal error scopes and fails on any error they catch. */
export async function checked<T>(ctx: Context, fn: () => Promise<T>): Promise<T> {
  const scopes: GPUErrorFilter[] = ['validation', 'internal', 'out-of-memory'];
  for (const scope of scopes) ctx.device.pushErrorScope(scope);
  const outcome = await fn().then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  const errors = await Promise.all(scopes.map(() => ctx.device.popErrorScope()));
  const gpuError = errors.find((e) => e !== null);
  if (gpuError) throw new Error(`WebGPU error: ${gpuError.message}`);
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/** The library's seeded generator (mulberry32), under the specs' names. */
export { randomUniform as randomArray, seededRandom as rng } from '../src';

/** `n` booleans, each true with probability `pTrue`. */
export function randomMask(random: () => number, n: number, pTrue: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = random() < pTrue ? 1 : 0;
  return out;
}

/**
 * Asserts |actual - expected| <= atol + rtol * |expected| elementwise (and equal non-finite values),
 * listing the first mismatches with their index.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { atol: number; rtol: number },
  label = '',
): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok = Number.isFinite(e)
      ? Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e)
      : Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e));
    if (!ok) {
      count++;
      if (bad.length < 8) bad.push(`[${i}] got ${a}, expected ${e}`);
    }
  }
  expect(count, `${label}: ${count} of ${expected.length} elements out of tolerance: ${bad.join('; ')}`).toBe(
    0,
  );
}

/**
 * modData with its entries uploaded: Int32Arrays as IntTensors, the others as 'f32' tensors
 * (pushed to `made` and `ints` for the caller to destroy).
 */
export function modDataOnGpu(
  ctx: Context,
  data: Readonly<Record<string, ArrayLike<number>>>,
  made: Tensor[],
  ints: IntTensor[],
): Record<string, Tensor | IntTensor> {
  const entries = Object.entries(data).map(([name, x]) => {
    if (x instanceof Int32Array) {
      const t = intTensor(ctx, x, [x.length]);
      ints.push(t);
      return [name, t];
    }
    const t = ctx.tensor(Float32Array.from(x), [x.length]);
    made.push(t);
    return [name, t];
  });
  return Object.fromEntries(entries);
}
