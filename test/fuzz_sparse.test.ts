// Property test of the sparse and programmable options (issue 11): random combinations of window,
// softcap, ALiBi, sinks, packed documents, scoreMod / maskMod snippets, block masks, bool and
// additive masks, dropout, causal, GQA, f16, odd head dims, layouts and KV-cache views, through
// every kernel path (the flash kernel in each form, the matrix form's emulation included, split-K
// decode, the splits over keys, the split to fit small bindings, the backward) against the float64
// reference. Each option is drawn independently, so every pair of options meets in many cases.
// Seeded: a failure prints fast-check's seed and path and the case as JSON. The node and browser
// projects each run about half of the cases (ownFuzzCase); WEBGPU_ATTENTION_FUZZ_RUNS=n (Node)
// runs n cases per path instead of RUNS.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionOptions,
  attention,
  attentionBackward,
  type Context,
  createBlockMask,
  type IntTensor,
  intTensor,
  KVCache,
  planAttention,
  type Tensor,
} from '../src';
import { decodeAttention } from '../src/ops/attention';
import {
  type AttentionCpuOptions,
  attentionBackwardCpu,
  attentionCpu,
  createBlockMaskCpu,
  type HostTensor,
} from '../src/reference';
import { caseInputs, inLayout, swapAxes12 } from './attention_cases';
import {
  checked,
  expectClose,
  F16_TOL,
  F32_TOL,
  formContexts,
  modDataOnGpu,
  ownFuzzCase,
  planAsGpu,
  randomArray,
  rng,
  testContext,
} from './helpers';

const SEED = 20261204;
const env = typeof process === 'undefined' ? undefined : process.env.WEBGPU_ATTENTION_FUZZ_RUNS;
const RUNS = env ? Number(env) : 8;
const LOG = typeof process !== 'undefined' && Boolean(process.env.WEBGPU_ATTENTION_FUZZ_LOG);

/** modData of the snippets: f32 (exact in f32) and i32 tables. */
const BUMP = [0, 0.125, -0.25, 0.375, 0.0625];
const PHASE = Int32Array.of(0, 2, 1);

/**
 * WGSL snippets with their JS twins (and d/ds for the backward), some reading modData: few, so
 * pipelines stay few.
 */
const SCORE_MODS = [
  {
    gpu: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {\n  return s + 0.05 * f32(h + 1u) * (f32(j) - f32(i));\n}',
    grad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }',
    cpu: (s: number, _b: number, h: number, i: number, j: number) => s + 0.05 * (h + 1) * (j - i),
    cpuGrad: () => 1,
  },
  {
    // reads modData (a table of 5)
    gpu: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {\n  return s * 0.75 + bump((i + 2u * j + b) % 5u);\n}',
    grad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 0.75; }',
    cpu: (s: number, b: number, _h: number, i: number, j: number) => s * 0.75 + BUMP[(i + 2 * j + b) % 5]!,
    cpuGrad: () => 0.75,
    data: { bump: BUMP },
    // the backward trains the table (dModData.bump)
    dataGrad:
      'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { bump_grad((i + 2u * j + b) % 5u, ds); }',
    cpuDataGrad:
      (grads: Float64Array) => (_s: number, b: number, _h: number, i: number, j: number, ds: number) => {
        grads[(i + 2 * j + b) % 5]! += ds;
      },
  },
];
const MASK_MODS = [
  {
    // scattered keys: mostly partial tiles
    gpu: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return j < 3u || (i + j + h) % 4u != 0u;\n}',
    cpu: (_b: number, h: number, i: number, j: number) => j < 3 || (i + j + h) % 4 !== 0,
  },
  {
    // blocks of 8 x 8: empty and full tiles; a phase per head from modData (heads past 2 read its last)
    gpu: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return (i / 8u + j / 8u + u32(phase(h))) % 3u != 1u;\n}',
    cpu: (_b: number, h: number, i: number, j: number) =>
      (Math.floor(i / 8) + Math.floor(j / 8) + PHASE[Math.min(h, 2)]!) % 3 !== 1,
    data: { phase: PHASE },
  },
];
const BLOCK_SIZES: (number | [number, number])[] = [8, 16, [4, 8], [3, 5], [8, 32]];

type Path =
  | 'flash-workgroup'
  | 'flash-registers'
  | 'flash-tiled'
  | 'flash-matrix'
  | 'decode-workgroup'
  | 'decode-registers'
  | 'split-workgroup'
  | 'split-tiled'
  | 'small-bindings'
  | 'backward-workgroup'
  | 'backward-registers';

/** Query and key lengths each path is drawn from. */
const LENGTHS: Record<Path, { Lq: [number, number]; Lk: [number, number] }> = {
  'flash-workgroup': { Lq: [1, 80], Lk: [1, 100] },
  'flash-registers': { Lq: [1, 80], Lk: [1, 100] },
  'flash-tiled': { Lq: [1, 80], Lk: [1, 100] },
  'flash-matrix': { Lq: [1, 80], Lk: [1, 100] },
  'decode-workgroup': { Lq: [1, 4], Lk: [1, 400] },
  'decode-registers': { Lq: [1, 4], Lk: [1, 400] },
  // few row blocks against many keys: split over keys (the tiled form's splits are >= 256 keys)
  // (more than 8 rows: fewer against 256 keys or more run the decode kernel)
  'split-workgroup': { Lq: [9, 70], Lk: [130, 400] },
  'split-tiled': { Lq: [9, 70], Lk: [520, 800] },
  'small-bindings': { Lq: [1, 40], Lk: [1, 160] },
  'backward-workgroup': { Lq: [1, 40], Lk: [1, 40] },
  'backward-registers': { Lq: [1, 40], Lk: [1, 40] },
};

const side = fc.oneof(fc.integer({ min: 0, max: 24 }), fc.constantFrom(-1, Number.POSITIVE_INFINITY));
const config = (path: Path) =>
  fc.record({
    B: fc.integer({ min: 1, max: 2 }),
    Hkv: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 3 }),
    Lq: fc.integer({ min: LENGTHS[path].Lq[0], max: LENGTHS[path].Lq[1] }),
    Lk: fc.integer({ min: LENGTHS[path].Lk[0], max: LENGTHS[path].Lk[1] }),
    // head dims [D, Dv]: mostly 8 (few pipelines to compile); odd ones send the registers form's
    // calls to the workgroup form
    dims: fc.constantFrom<[number, number]>([8, 8], [8, 8], [8, 8], [5, 3], [12, 4]),
    // the backward is checked in f32, layouts on the forward paths
    dtype: path.startsWith('backward')
      ? fc.constant('f32' as const)
      : fc.constantFrom('f32' as const, 'f16' as const),
    layout: path.startsWith('backward')
      ? fc.constant('bhld' as const)
      : fc.constantFrom('bhld' as const, 'blhd' as const),
    // the matrix form rounds operands to f16: its tolerance holds for unit-scale scores
    magnitude: path === 'flash-matrix' ? fc.constant(1) : fc.constantFrom(1, 2.5),
    scale:
      path === 'flash-matrix'
        ? fc.constant(undefined)
        : fc.option(fc.double({ min: -1.5, max: 1.5, noNaN: true }), { nil: undefined }),
    causal: fc.boolean(),
    window: fc.option(fc.tuple(side, side), { nil: undefined }),
    softcap: fc.option(fc.constantFrom(0, 0.7, 2, 5), { nil: undefined }),
    alibi: fc.constantFrom('none', 'heads', 'heads-tensor', 'batch', 'batch-tensor'),
    sinks: fc.constantFrom('none', 'array', 'tensor'),
    // documents (B becomes 1): their count and where they start, as fractions of the lengths
    documents: fc.option(
      fc.record({
        cuts: fc.array(
          fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })),
          {
            minLength: 0,
            maxLength: 3,
          },
        ),
        onGpu: fc.boolean(),
      }),
      { nil: undefined },
    ),
    // keys in use per batch item (or document), as fractions of its keys, and without documents
    // the left padding per batch item (cacheLeftpad), as fractions of Lk; as IntTensors or not
    sequsedK: fc.option(
      fc.record({
        used: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 4, maxLength: 4 }),
        leftpad: fc.option(
          fc.array(fc.double({ min: 0, max: 0.8, noNaN: true }), { minLength: 4, maxLength: 4 }),
          {
            nil: undefined,
          },
        ),
        onGpu: fc.boolean(),
      }),
      { nil: undefined, freq: 3 },
    ),
    scoreMod: fc.integer({ min: -1, max: SCORE_MODS.length - 1 }),
    maskMod: fc.integer({ min: -1, max: MASK_MODS.length - 1 }),
    blockSize: fc.option(fc.constantFrom(...BLOCK_SIZES), { nil: undefined }),
    // dropout (the reference drops the same probabilities) on half of the cases
    dropout: fc.option(
      fc.record({ p: fc.constantFrom(0, 0.2, 0.6), seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
      { nil: undefined, freq: 2 },
    ),
    mask: fc.constantFrom('none', 'bool', 'additive'),
    maskDims: fc.integer({ min: 1, max: 4 }),
    broadcast: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    // k and v as the views of a KV cache (strided: its capacity is larger than Lk)
    kvCache: fc.boolean(),
    // the snippets' modData as tensors (an 'f32' tensor, an IntTensor)
    modOnGpu: fc.boolean(),
    seed: fc.integer({ min: 1, max: 1e6 }),
  });
type Config = ReturnType<typeof config> extends fc.Arbitrary<infer T> ? T : never;

/** Cumulative starts [0, ..., L] from fractions (sorted; equal cuts give empty documents). */
function starts(fractions: number[], L: number): number[] {
  return [0, ...fractions.map((f) => Math.floor(f * L)).sort((a, b) => a - b), L];
}

/** Runs one configuration through `path` on `on` (and the backward's forward) against the reference. */
async function fuzzCase(on: Context, path: Path, r: Config): Promise<void> {
  if (!ownFuzzCase(r.seed)) return;
  const B = r.documents ? 1 : r.B;
  const Hq = r.Hkv * r.group;
  const { Lq, Lk } = r;
  const [D, Dv] = r.dims;
  const shape = { B, Hq, Hkv: r.Hkv, Lq, Lk, D, Dv };
  const full = [B, Hq, Lq, Lk];
  const maskShape = full.slice(4 - r.maskDims).map((d, i) => (r.broadcast[i] ? 1 : d));
  const inputs = caseInputs({
    ...shape,
    dtype: r.dtype,
    magnitude: r.magnitude,
    seed: r.seed,
    mask: r.mask === 'none' ? undefined : { kind: r.mask, shape: maskShape },
  });
  // half the forbidden entries of an additive mask as float32's lowest (Hugging Face's masks)
  if (inputs.mask && r.mask === 'additive') {
    const data = inputs.mask.data as Float32Array;
    for (let e = 1; e < data.length; e += 2)
      if (data[e] === Number.NEGATIVE_INFINITY) data[e] = -3.4028234663852886e38;
  }
  const random = rng(r.seed + 1);
  const perHead = (n: number) => Array.from(randomArray(random, n, 0.5), (x) => Math.abs(x));
  const alibi = r.alibi === 'none' ? undefined : perHead(r.alibi.startsWith('batch') ? B * Hq : Hq);
  const sinks = r.sinks === 'none' ? undefined : Array.from(randomArray(random, Hq, 2));
  const docs = r.documents && {
    q: starts(
      r.documents.cuts.map((c) => c[0]),
      Lq,
    ),
    k: starts(
      r.documents.cuts.map((c) => c[1]),
      Lk,
    ),
  };
  // per batch item, or per document (of its keys)
  const lengths = docs ? docs.k.slice(1).map((end, d) => end - docs.k[d]!) : Array<number>(B).fill(Lk);
  const used = r.sequsedK && lengths.map((n, e) => Math.round(r.sequsedK!.used[e % 4]! * n));
  const pads = r.sequsedK?.leftpad;
  const leftpad =
    !docs && pads ? Array.from({ length: B }, (_, b) => Math.round(pads[b % 4]! * Lk)) : undefined;
  const scoreMod = SCORE_MODS[r.scoreMod];
  const maskMod = MASK_MODS[r.maskMod];
  // a block mask of the maskMod (with causal and window where no documents move their diagonal)
  const rules = !docs && (r.causal || r.window);
  const blockSize = r.blockSize !== undefined && (maskMod || rules) ? r.blockSize : undefined;
  const blockRules = {
    H: maskMod ? Hq : 1,
    Lq,
    Lk,
    blockSize: blockSize ?? 1,
    causal: rules ? r.causal : undefined,
    window: rules ? r.window : undefined,
  };

  const cpu: AttentionCpuOptions = {
    scale: r.scale,
    causal: r.causal,
    mask: inputs.mask,
    window: r.window,
    softcap: r.softcap,
    alibiSlopes: alibi,
    sinks,
    cuSeqlensQ: docs?.q,
    cuSeqlensK: docs?.k,
    sequsedK: used,
    cacheLeftpad: leftpad,
    scoreMod: scoreMod?.cpu,
    scoreModGrad: scoreMod?.cpuGrad,
    maskMod: maskMod?.cpu,
    blockMask:
      blockSize === undefined ? undefined : createBlockMaskCpu({ ...blockRules, maskMod: maskMod?.cpu }),
    dropout: r.dropout,
  };
  const label = `${path} ${JSON.stringify(r)}`;
  // a case that crashes the worker leaves no counterexample: WEBGPU_ATTENTION_FUZZ_LOG=1 names each first
  if (LOG) console.error(`case ${label}`);
  const tol = r.dtype === 'f16' || path === 'flash-matrix' ? F16_TOL : F32_TOL;
  const made: Tensor[] = [];
  const ints: IntTensor[] = [];
  const up = (h: HostTensor, dtype = h.dtype ?? r.dtype) => {
    const t = on.tensor(h.data as Float32Array, h.shape, { dtype });
    made.push(t);
    return t;
  };
  const vector = (x: number[] | undefined, tensor: boolean, shape: number[]) =>
    x && tensor ? up({ data: new Float32Array(x), shape }, 'f32') : x;
  const uploaded = (x: number[] | undefined, onGpu: boolean | undefined) => {
    if (!x || !onGpu) return x;
    const t = intTensor(on, x, [x.length]);
    ints.push(t);
    return t;
  };
  const modData = (data: Record<string, number[] | Int32Array> | undefined) =>
    data && r.modOnGpu ? modDataOnGpu(on, data, made, ints) : data;
  const live = on.liveBytes;
  let cache: KVCache | undefined;
  await checked(on, async () => {
    const q = up(inLayout(inputs.q, r.layout));
    let [k, v] = [inputs.k, inputs.v].map((t) => up(inLayout(t, r.layout)));
    // (a cache must fit one binding: not on the small-bindings path)
    if (r.kvCache && path !== 'small-bindings') {
      const options = {
        batch: B,
        kvHeads: r.Hkv,
        headDim: D,
        valueDim: Dv,
        dtype: r.dtype,
        layout: r.layout,
      };
      cache = new KVCache(on, { ...options, capacity: Lk + 3 });
      ({ k, v } = await cache.append(k, v));
    }
    const blockMask =
      blockSize === undefined
        ? undefined
        : await createBlockMask(on, {
            ...blockRules,
            maskMod: maskMod?.gpu,
            modData: modData(maskMod?.data),
          });
    if (blockMask) made.push(blockMask.states);
    const options: AttentionOptions = {
      layout: r.layout,
      scale: r.scale,
      causal: r.causal,
      mask: inputs.mask && up(inputs.mask),
      window: r.window,
      softcap: r.softcap,
      alibiSlopes: vector(alibi, r.alibi.endsWith('tensor'), r.alibi.startsWith('batch') ? [B, Hq] : [Hq]),
      sinks: vector(sinks, r.sinks === 'tensor', [Hq]),
      cuSeqlensQ: uploaded(docs?.q, r.documents?.onGpu),
      cuSeqlensK: uploaded(docs?.k, r.documents?.onGpu),
      sequsedK: uploaded(used, r.sequsedK?.onGpu),
      cacheLeftpad: uploaded(leftpad, r.sequsedK?.onGpu),
      scoreMod: scoreMod?.gpu,
      maskMod: maskMod?.gpu,
      modData: scoreMod?.data || maskMod?.data ? modData({ ...scoreMod?.data, ...maskMod?.data }) : undefined,
      blockMask,
      dropout: r.dropout,
      returnLse: true,
    };
    if (path.startsWith('split')) {
      const plan = planAttention(q, k, v, options);
      expect(plan.path === 'flash' && plan.keySplits > 1, `${label}: not split over keys`).toBe(true);
    }
    const result = await (path.startsWith('decode') ? decodeAttention : attention)(q, k, v, options);
    made.push(result.output, result.lse!);
    if (!path.startsWith('backward')) {
      const ref = attentionCpu(inputs.q, inputs.k, inputs.v, cpu);
      const output = await result.output.read();
      const bhld = r.layout === 'blhd' ? swapAxes12(output, result.output.shape) : output;
      expectClose(bhld, ref.output.data, tol, `${label} output`);
      expectClose(await result.lse!.read(), ref.lse.data, tol, `${label} lse`);
      return;
    }
    const dOutput = { data: randomArray(random, B * Hq * Lq * Dv), shape: [B, Hq, Lq, Dv] };
    const dBump = new Float64Array(BUMP.length);
    const dataGrad = scoreMod?.dataGrad ? scoreMod : undefined;
    const ref = attentionBackwardCpu(inputs.q, inputs.k, inputs.v, dOutput, {
      ...cpu,
      modDataGrad: dataGrad?.cpuDataGrad?.(dBump),
    });
    const { returnLse: _, ...forward } = options;
    const g = await attentionBackward(q, k, v, result.output, up(dOutput), {
      ...forward,
      lse: result.lse!,
      scoreModGrad: scoreMod?.grad,
      modDataGrad: dataGrad?.dataGrad,
    });
    made.push(g.dq, g.dk, g.dv, ...(g.dsinks ? [g.dsinks] : []), ...Object.values(g.dModData ?? {}));
    expect(g.dModData === undefined, `${label} dModData`).toBe(dataGrad === undefined);
    if (g.dModData) expectClose(await g.dModData.bump!.read(), dBump, tol, `${label} dModData.bump`);
    expectClose(await g.dq.read(), ref.dq.data, tol, `${label} dq`);
    expectClose(await g.dk.read(), ref.dk.data, tol, `${label} dk`);
    expectClose(await g.dv.read(), ref.dv.data, tol, `${label} dv`);
    expect(g.dsinks === undefined, `${label} dsinks`).toBe(ref.dsinks === undefined);
    if (g.dsinks && ref.dsinks) expectClose(await g.dsinks.read(), ref.dsinks.data, tol, `${label} dsinks`);
  });
  for (const t of [...made, ...ints]) t.destroy();
  cache?.destroy();
  expect(on.liveBytes, `${label}: GPU bytes left`).toBe(live);
}

const contexts = formContexts(['workgroup', 'registers', 'tiled']);
let small: Context;
let matrix: Context;
let gpuWorkgroup: Context;
beforeAll(async () => {
  small = await testContext({ limits: { maxStorageBufferBindingSize: 4096 } });
  // the matrix form's emulation (SwiftShader has no subgroup matrices), 32 value dims a workgroup
  matrix = await testContext({
    attentionKernel: 'matrix',
    limits: { maxComputeWorkgroupStorageSize: 24576 },
  });
  gpuWorkgroup = planAsGpu(contexts.workgroup, 'workgroup');
});
afterAll(() => {
  gpuWorkgroup?.destroy();
  matrix?.destroy();
  small?.destroy();
});

/** The context each path runs on. */
function contextOf(path: Path): Context {
  if (path === 'small-bindings') return small;
  if (path === 'flash-matrix') return matrix;
  if (path === 'split-workgroup') return gpuWorkgroup;
  return contexts[path.slice(path.indexOf('-') + 1) as 'workgroup' | 'registers' | 'tiled'];
}

describe(`fuzz, sparse options: ${RUNS} random configurations per path (seed ${SEED}), split between the projects`, () => {
  (Object.keys(LENGTHS) as Path[]).forEach((path, n) => {
    it(`${path} matches the reference`, { timeout: 900_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(config(path), (r) => fuzzCase(contextOf(path), path, r)),
        // the registers form's backward kernels take SwiftShader 10-20 s each to compile
        { numRuns: path === 'backward-registers' ? Math.ceil(RUNS / 2) : RUNS, seed: SEED + n },
      );
    });
  });
});
