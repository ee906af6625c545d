// Sparse and programmable attention (issue 11) on the GPU: windows, softcap, ALiBi, sinks, WGSL
// scoreMod / maskMod snippets and packed documents, through the flash kernel and the split-K
// decode kernel in both forms, and through the paths that split calls too big for a binding,
// against the float64 reference.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  type AttentionOptions,
  attention,
  type Context,
  createBlockMask,
  type IntTensor,
  intTensor,
  MultiHeadAttention,
  planAttention,
  rope,
  type Tensor,
} from '../src';
import { decodeAttention } from '../src/ops/attention';
import {
  type AttentionCpuOptions,
  attentionCpu,
  createBlockMaskCpu,
  type HostTensor,
  ropeCpu,
  ropeTablesCpu,
} from '../src/reference';
import { type AttentionFn, type Case, caseInputs, kernelOf, roundToF16 } from './attention_cases';
import {
  checked,
  expectClose,
  F16_TOL,
  F32_TOL,
  formContexts,
  modDataOnGpu,
  planAsGpu,
  randomArray,
  rng,
  testContext,
} from './helpers';

/** GPU options besides the case's causal, mask and scale; the per-head ones may be tensors. */
type GpuOptions = Omit<AttentionOptions, 'alibiSlopes' | 'sinks' | 'mask' | 'causal' | 'scale'> & {
  alibiSlopes?: number[] | 'tensor';
  sinks?: number[] | 'tensor';
};

interface SparseCase extends Case {
  gpu?: GpuOptions;
  /** The reference's options where they differ from `gpu` (JS functions for the snippets). */
  cpu?: AttentionCpuOptions;
  /** per-head values uploaded as tensors when `gpu` says 'tensor' */
  alibi?: number[];
  sinkValues?: number[];
  /** gpu's cuSeqlensQ / cuSeqlensK uploaded as IntTensors (document starts already on the GPU) */
  docsOnGpu?: boolean;
  /** gpu's modData uploaded: Int32Arrays as IntTensors, the others as 'f32' tensors */
  modOnGpu?: boolean;
  /** gpu's sequsedK and cacheLeftpad uploaded as IntTensors */
  usedOnGpu?: boolean;
}

/** Runs `c` through `fn` and the reference; compares output and lse. Returns the kernel form. */
async function checkSparse(ctx: Context, fn: AttentionFn, c: SparseCase): Promise<string | undefined> {
  const inputs = caseInputs(c);
  const gpu = c.gpu ?? {};
  const perHead = (x: number[] | 'tensor' | undefined, values: number[] | undefined) =>
    x === 'tensor' ? values : x;
  const { scoreMod: _s, maskMod: _m, modData: _d, sequsedK, ...plain } = gpu;
  const ref = attentionCpu(inputs.q, inputs.k, inputs.v, {
    ...(plain as AttentionCpuOptions),
    causal: c.causal,
    scale: c.scale,
    mask: inputs.mask,
    alibiSlopes: perHead(gpu.alibiSlopes, c.alibi),
    sinks: perHead(gpu.sinks, c.sinkValues),
    sequsedK: sequsedK as ArrayLike<number> | undefined,
    ...c.cpu,
  });
  const dtype = c.dtype ?? 'f32';
  const made: Tensor[] = [];
  const up = (h: HostTensor, dt = h.dtype ?? dtype) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: dt });
    made.push(t);
    return t;
  };
  const tensorOr = (x: number[] | 'tensor' | undefined, values: number[] | undefined) =>
    x === 'tensor'
      ? up({ data: new Float32Array(values!), shape: values!.length > c.Hq ? [c.B, c.Hq] : [c.Hq] }, 'f32')
      : x;
  const ints: IntTensor[] = [];
  /** `x` as an IntTensor when `onGpu` (document starts, key counts already on the GPU) */
  const asInts = (x: ArrayLike<number> | IntTensor | undefined, onGpu: boolean | undefined) => {
    if (!onGpu || x === undefined) return x;
    const t = intTensor(ctx, Array.from(x as ArrayLike<number>), [(x as ArrayLike<number>).length]);
    ints.push(t);
    return t;
  };
  const modData = (x: AttentionOptions['modData']) =>
    c.modOnGpu && x ? modDataOnGpu(ctx, x as Record<string, ArrayLike<number>>, made, ints) : x;
  const kernel = await checked(ctx, async () => {
    const [q, k, v] = [up(inputs.q), up(inputs.k), up(inputs.v)];
    const options: AttentionOptions = {
      ...gpu,
      causal: c.causal,
      scale: c.scale,
      mask: inputs.mask ? up(inputs.mask) : undefined,
      alibiSlopes: tensorOr(gpu.alibiSlopes, c.alibi),
      sinks: tensorOr(gpu.sinks, c.sinkValues),
      cuSeqlensQ: asInts(gpu.cuSeqlensQ, c.docsOnGpu),
      cuSeqlensK: asInts(gpu.cuSeqlensK, c.docsOnGpu),
      modData: modData(gpu.modData),
      sequsedK: asInts(sequsedK, c.usedOnGpu),
      cacheLeftpad: asInts(gpu.cacheLeftpad, c.usedOnGpu),
      returnLse: true,
    };
    const plan = planAttention(q, k, v, options);
    const result = await fn(q, k, v, options);
    made.push(result.output, result.lse!);
    const label = JSON.stringify({ ...c, cpu: undefined });
    const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
    expectClose(await result.output.read(), ref.output.data, tol, `${label} output`);
    expectClose(await result.lse!.read(), ref.lse.data, tol, `${label} lse`);
    return kernelOf(plan);
  });
  for (const t of [...made, ...ints]) t.destroy();
  return kernel;
}

const base = { B: 1, Hq: 2, Hkv: 1, D: 8, Dv: 8 };

/** Cases every kernel must match; Lq is set per kernel (many rows for flash, few for decode). */
function cases(Lq: number, Lk: number): [string, SparseCase][] {
  const s = { ...base, Lq, Lk };
  const docsQ = [0, Math.floor(Lq / 3), Math.floor(Lq / 3), Lq];
  const docsK = [0, Math.floor(Lk / 2), Math.floor(Lk / 2) + 5, Lk];
  return [
    ['causal window [16, 0]', { ...s, causal: true, gpu: { window: [16, 0] } }],
    ['window [3, 5] without causal', { ...s, gpu: { window: [3, 5] } }],
    ['window [Infinity, 2]', { ...s, gpu: { window: [Number.POSITIVE_INFINITY, 2] } }],
    [
      "FlashAttention's and onnxruntime's 'none': window [-1, 3] (no left bound), softcap 0",
      { ...s, gpu: { window: [-1, 3], softcap: 0 } },
    ],
    ['softcap 1.5 on large logits', { ...s, magnitude: 6, gpu: { softcap: 1.5 } }],
    ['ALiBi slopes (array)', { ...s, causal: true, gpu: { alibiSlopes: [0.5, 0.0625] } }],
    ['ALiBi slopes (tensor), no causal', { ...s, gpu: { alibiSlopes: 'tensor' }, alibi: [0.25, 0.125] }],
    [
      "ALiBi slopes per batch item (FlashAttention's [B, Hq], an array), causal",
      { ...s, B: 2, causal: true, gpu: { alibiSlopes: [0.5, 0.0625, 0.125, 0.25] } },
    ],
    [
      'ALiBi slopes per batch item (tensor [B, Hq]), GQA',
      {
        ...s,
        B: 2,
        Hq: 4,
        Hkv: 2,
        gpu: { alibiSlopes: 'tensor' },
        alibi: [0.3, 0.2, 0.1, 0, 0.05, 0.15, 0.25, 0.35],
      },
    ],
    ['sinks (array)', { ...s, gpu: { sinks: [0.5, -1] } }],
    ['sinks (tensor) with causal', { ...s, causal: true, gpu: { sinks: 'tensor' }, sinkValues: [2, 0] }],
    [
      'window that leaves rows empty, with and without sinks',
      { ...s, Lk: 4, gpu: { window: [0, 0], cuSeqlensQ: [0, Lq], cuSeqlensK: [0, 4] } },
    ],
    [
      'empty rows with sinks give zeros and lse = sink',
      { ...s, Lk: 3, causal: true, gpu: { sinks: [1, -2] } },
    ],
    [
      'everything together, GQA, bool mask',
      {
        ...s,
        Hq: 4,
        Hkv: 2,
        causal: true,
        magnitude: 3,
        mask: { kind: 'bool', shape: [1, 1, Lq, Lk], pTrue: 0.8 },
        gpu: { window: [20, 0], softcap: 2, alibiSlopes: [0.5, 0.25, 0.125, 0.0625], sinks: [0, 1, -1, 0.5] },
      },
    ],
    [
      'additive mask with ALiBi and softcap',
      { ...s, mask: { kind: 'additive', shape: [Lq, Lk] }, gpu: { softcap: 3, alibiSlopes: [0.1, 0.2] } },
    ],
    [
      'packed documents (one empty), causal',
      { ...s, causal: true, gpu: { cuSeqlensQ: docsQ, cuSeqlensK: docsK } },
    ],
    [
      'packed documents (Int32Array starts, as FlashAttention users hold them) with a window, ALiBi and sinks',
      {
        ...s,
        gpu: {
          cuSeqlensQ: Int32Array.from(docsQ),
          cuSeqlensK: Int32Array.from(docsK),
          window: [4, 1],
          alibiSlopes: [0.3, 0.1],
          sinks: [0, 0],
        },
      },
    ],
    [
      'packed documents as IntTensors (starts on the GPU, one empty), causal, GQA',
      { ...s, Hq: 4, Hkv: 2, causal: true, docsOnGpu: true, gpu: { cuSeqlensQ: docsQ, cuSeqlensK: docsK } },
    ],
    [
      'scoreMod: a relative-position bias',
      {
        ...s,
        gpu: {
          scoreMod:
            'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {\n  return s + 0.01 * f32(h + 1u) * (f32(j) - f32(i));\n}',
        },
        cpu: { scoreMod: (x, _b, h, i, j) => x + 0.01 * (h + 1) * (j - i) },
      },
    ],
    [
      'maskMod: local + global tokens, with softcap',
      {
        ...s,
        gpu: {
          softcap: 2,
          maskMod:
            'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return j < 4u || (i + 8u >= j && j + 8u >= i);\n}',
        },
        cpu: { maskMod: (_b, _h, i, j) => j < 4 || (i + 8 >= j && j + 8 >= i) },
      },
    ],
    [
      'maskMod and scoreMod see global positions in packed documents',
      {
        ...s,
        causal: true,
        gpu: {
          cuSeqlensQ: docsQ,
          cuSeqlensK: docsK,
          maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return (i + j + h) % 3u != 0u; }',
          scoreMod:
            'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s * 0.5 + f32(i % 4u) * 0.1; }',
        },
        cpu: {
          maskMod: (_b, h, i, j) => (i + j + h) % 3 !== 0,
          scoreMod: (x, _b, _h, i) => x * 0.5 + (i % 4) * 0.1,
        },
      },
    ],
    [
      'sequsedK: batch items using different numbers of keys (one none, one fewer than the rows), causal, window, ALiBi',
      {
        ...s,
        B: 3,
        causal: true,
        gpu: {
          sequsedK: [Lk, 0, Math.max(1, Lq - 2)],
          window: [24, 0],
          alibiSlopes: [0.25, 0.125, 0.5, 0.0625, 0.3, 0.2],
        },
      },
    ],
    [
      'sequsedK (an IntTensor) with sinks, an additive mask, GQA, no causal',
      {
        ...s,
        B: 2,
        Hq: 4,
        Hkv: 2,
        usedOnGpu: true,
        mask: { kind: 'additive', shape: [2, 1, Lq, Lk] },
        gpu: { sequsedK: [Math.ceil(Lk / 3), Lk - 1], sinks: [0.5, -1, 0, 1] },
      },
    ],
    [
      'cacheLeftpad: left-padded batch items (one all padding) with sequsedK, causal, window, ALiBi',
      {
        ...s,
        B: 3,
        causal: true,
        gpu: {
          cacheLeftpad: [3, Lk, Math.floor(Lk / 2)],
          sequsedK: [Lk, Lk, Lk - 1],
          window: [Math.max(4, Lk - 12), 0],
          alibiSlopes: [0.25, 0.125],
        },
      },
    ],
    [
      'cacheLeftpad (an IntTensor) with sinks, a bool mask, GQA, no causal',
      {
        ...s,
        B: 2,
        Hq: 4,
        Hkv: 2,
        usedOnGpu: true,
        mask: { kind: 'bool', shape: [2, 1, 1, Lk] },
        gpu: { cacheLeftpad: [Lk - 2, 1], sinks: [0.5, -1, 0, 1] },
      },
    ],
    [
      'sequsedK per packed document (one uses none), causal, window',
      {
        ...s,
        causal: true,
        gpu: {
          cuSeqlensQ: docsQ,
          cuSeqlensK: docsK,
          sequsedK: [docsK[1]! - 3, 0, Lk - docsK[2]!],
          window: [10, 0],
        },
      },
    ],
    ['modData: a bias table per head (scoreMod) and document ids (maskMod, Int32Arrays)', modCase(s, false)],
    ['modData as tensors: an f32 tensor and IntTensors, GQA, f16 storage', modCase(s, true)],
    [
      'f16 storage with window, softcap and sinks',
      { ...s, dtype: 'f16', causal: true, gpu: { window: [8, 0], softcap: 2, sinks: [0.5, 0.5] } },
    ],
  ];
}

/**
 * A case of scoreMod and maskMod reading modData, as FlexAttention's captured tensors: a learned
 * bias per head and distance (T5-like), document ids of rows and keys (uneven documents, causal
 * inside each, by the global diagonal), and a per-head scale of the score (a one-element table
 * read past its end).
 */
function modCase(s: Case, onGpu: boolean): SparseCase {
  const { Lq, Lk } = s;
  const random = rng(Lq * 31 + Lk);
  const width = Lq + Lk - 1;
  const Hq = onGpu ? 4 : s.Hq;
  const bias = Array.from(randomArray(random, Hq * width, 1));
  const qdoc = Int32Array.from({ length: Lq }, (_, i) => Math.floor((i * i * 3) / (Lq * Lq)));
  const kdoc = Int32Array.from({ length: Lk }, (_, j) => Math.floor((j * 3) / Lk));
  const gain = [0.8];
  const scoreMod = `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {
  return s * gain(h) + bias(h * ${width}u + i + ${Lk - 1}u - j);
}`;
  const maskMod = `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {
  return qdoc(i) == kdoc(j) && j <= i + ${Lk - Lq}u;
}`;
  return {
    ...s,
    Hq,
    Hkv: onGpu ? 2 : s.Hkv,
    dtype: onGpu ? 'f16' : undefined,
    modOnGpu: onGpu,
    gpu: { scoreMod, maskMod, modData: { bias, qdoc, kdoc, gain } },
    cpu: {
      scoreMod: (x, _b, h, i, j) => x * Math.fround(0.8) + Math.fround(bias[h * width + i + Lk - 1 - j]!),
      maskMod: (_b, _h, i, j) => qdoc[i] === kdoc[j] && j <= i + Lk - Lq,
    },
  };
}

/** How many parts the plan of case `c` splits the keys into (1 but for the tiled and workgroup forms). */
function keySplits(ctx: Context, c: Case): number {
  const q = ctx.zeros([c.B, c.Hq, c.Lq, c.D]);
  const kv = ctx.zeros([c.B, c.Hkv, c.Lk, c.D]);
  const plan = planAttention(q, kv, kv, { causal: c.causal });
  q.destroy();
  kv.destroy();
  return plan.path === 'flash' ? plan.keySplits : 1;
}

// 'tiled' is a flash kernel only (its calls decode with the workgroup form's pass)
const FORMS: AttentionKernel[] = ['workgroup', 'registers', 'tiled'];

// One context per form for both sets of kernel specs: each kernel variant (a pipeline SwiftShader
// takes seconds to compile) compiles once.
const contexts = formContexts(FORMS, { disableFeatures: ['shader-f16'] });

describe.each<AttentionKernel>(FORMS)('%s kernels', (kernel) => {
  let ctx: Context;
  beforeAll(() => {
    ctx = contexts[kernel];
  });

  describe('flash kernel matches the reference', () => {
    for (const [name, c] of cases(70, 90)) {
      it(name, async () => expect(await checkSparse(ctx, attention, c)).toBe(kernel));
    }
  });

  // Few row blocks against many keys: the tiled and workgroup forms split the keys and merge the
  // parts by log-sum-exp (the sinks join in the merge).
  describe.runIf(kernel !== 'registers')('calls split over keys match the reference', () => {
    // the workgroup form splits on GPUs only: its calls planned as on one (made at first use)
    let gpu: Context | undefined;
    const on = () => {
      gpu ??= kernel === 'workgroup' ? planAsGpu(ctx, kernel) : ctx;
      return gpu;
    };
    afterAll(() => {
      if (gpu !== ctx) gpu?.destroy();
    });
    const split: [string, SparseCase][] = [
      [
        'causal, Lq < Lk, window and sinks',
        { ...base, Lq: 20, Lk: 600, causal: true, gpu: { window: [400, 0], sinks: [0.5, -1] } },
      ],
      [
        'bool mask, Lq > 64, f16 storage',
        { ...base, Lq: 70, Lk: 530, dtype: 'f16', mask: { kind: 'bool', shape: [70, 530], pTrue: 0.3 } },
      ],
    ];
    for (const [name, c] of split) {
      it(name, async () => {
        expect(keySplits(on(), c)).toBeGreaterThan(1);
        expect(await checkSparse(on(), attention, c)).toBe(kernel);
      });
    }
  });

  describe.skipIf(kernel === 'tiled')('split-K decode kernel matches the reference', () => {
    for (const [name, c] of cases(3, 300)) {
      it(name, async () => expect(await checkSparse(ctx, decodeAttention, c)).toBe(kernel));
    }
  });

  describe('snippets that reproduce built-in options give their result', () => {
    const same = async (
      fn: AttentionFn,
      snippet: AttentionOptions,
      builtin: AttentionOptions,
      Lq: number,
    ) => {
      const c = { ...base, Lq, Lk: 77, magnitude: 4 };
      const { q, k, v } = caseInputs(c);
      await checked(ctx, async () => {
        const [qt, kt, vt] = [q, k, v].map((x) => ctx.tensor(x.data as Float32Array, x.shape));
        const a = await fn(qt, kt, vt, { ...snippet, returnLse: true });
        const b = await fn(qt, kt, vt, { ...builtin, returnLse: true });
        expectClose(await a.output.read(), await b.output.read(), F32_TOL, 'output');
        expectClose(await a.lse!.read(), await b.lse!.read(), F32_TOL, 'lse');
        for (const t of [qt, kt, vt, a.output, a.lse, b.output, b.lse]) t?.destroy();
      });
    };
    const causalMod = {
      maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return j <= i + 77u - LQ;\n}',
    };
    const softcapMod = {
      scoreMod: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.5 * tanh(s / 1.5); }',
    };
    for (const [fn, Lq] of [
      [attention, 40],
      ...(kernel === 'tiled' ? [] : ([[decodeAttention, 2]] as const)),
    ] as const) {
      const path = fn === attention ? 'flash' : 'decode';
      it(`${path}: a maskMod equal to causal`, () =>
        same(fn, { maskMod: causalMod.maskMod.replace('LQ', `${Lq}u`) }, { causal: true }, Lq));
      it(`${path}: a scoreMod equal to softcap`, () => same(fn, softcapMod, { softcap: 1.5 }, Lq));
    }
  });
});

describe.each<AttentionKernel>(FORMS)('block masks, %s kernels', (kernel) => {
  let ctx: Context;
  beforeAll(() => {
    ctx = contexts[kernel];
  });
  // local (16 back) + global (the first 8 keys) tokens
  const local =
    'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return j < 8u || (j <= i && i - j < 16u + h);\n}';
  const localCpu = (_b: number, h: number, i: number, j: number) => j < 8 || (j <= i && i - j < 16 + h);

  // createBlockMask does not depend on the attention form: checked once
  it.skipIf(kernel !== 'workgroup')(
    'createBlockMask equals createBlockMaskCpu (maskMod, causal, window, bool mask, heads)',
    async () => {
      const maskData = new Uint8Array(70 * 90).map((_, e) => ((e * 7919) % 11 < 2 ? 1 : 0));
      const hostMask = { data: maskData, shape: [70, 90], dtype: 'bool' as const };
      for (const o of [
        { maskMod: localCpu, gpu: local, Lq: 70, Lk: 90, blockSize: 16, H: 2 },
        { causal: true, window: [20, 0] as const, Lq: 70, Lk: 90, blockSize: [8, 32] as const },
        { window: [-1, 3] as const, Lq: 70, Lk: 90, blockSize: 16 },
        { mask: true, Lq: 70, Lk: 90, blockSize: 8 },
        // tiles taller than the kernel's workgroup (rows past the first 64 judged too): only row
        // 100 forbids keys, so the first block of rows is partial, the second full
        {
          maskMod: (_b: number, _h: number, i: number, j: number) => i !== 100 || j % 2 === 0,
          gpu: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return i != 100u || j % 2u == 0u; }',
          Lq: 300,
          Lk: 90,
          blockSize: [160, 16] as const,
        },
      ]) {
        const { gpu, mask, ...rest } = o as typeof o & {
          gpu?: string;
          mask?: boolean;
          maskMod?: typeof localCpu;
        };
        const ref = createBlockMaskCpu({ ...rest, mask: mask ? hostMask : undefined });
        const maskT = mask ? ctx.tensor(maskData, [70, 90], { dtype: 'bool' }) : undefined;
        const bm = await checked(ctx, () => createBlockMask(ctx, { ...rest, maskMod: gpu, mask: maskT }));
        expect(bm.states.shape).toEqual(ref.shape);
        expect(Array.from(await bm.states.read())).toEqual(Array.from(ref.data));
        bm.states.destroy();
        maskT?.destroy();
      }
    },
  );

  for (const [path, fn, Lq] of [
    ['flash', attention, 70],
    ...(kernel === 'tiled' ? [] : ([['decode', decodeAttention, 3]] as const)),
  ] as const) {
    it(`${path}: attention with a block mask from a maskMod matches the reference`, async () => {
      const bm = await createBlockMask(ctx, { maskMod: local, H: 2, Lq, Lk: 90, blockSize: 16 });
      const cpuBm = createBlockMaskCpu({ maskMod: localCpu, H: 2, Lq, Lk: 90, blockSize: 16 });
      await checkSparse(ctx, fn, {
        ...base,
        Lq,
        Lk: 90,
        gpu: { maskMod: local, blockMask: bm, softcap: 3 },
        cpu: { maskMod: localCpu, blockMask: cpuBm },
      });
      bm.states.destroy();
    });
    it.runIf(kernel !== 'registers' && path === 'flash')(
      `${path}: a block mask with empty tiles, split over keys`,
      async () => {
        // keys [0, 8) and two of every three blocks of 64: empty 32-key tiles in both splits
        const sparse =
          'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {\n  return j < 8u || (j / 64u) % 3u != 1u;\n}';
        const sparseCpu = (_b: number, _h: number, _i: number, j: number) =>
          j < 8 || Math.floor(j / 64) % 3 !== 1;
        const c = { ...base, Lq: 20, Lk: 600 };
        // the workgroup form splits on GPUs only: planned as on one
        const on = kernel === 'workgroup' ? planAsGpu(ctx, kernel) : ctx;
        expect(keySplits(on, c)).toBeGreaterThan(1);
        const bm = await createBlockMask(on, { maskMod: sparse, Lq: 20, Lk: 600, blockSize: 16 });
        const cpuBm = createBlockMaskCpu({ maskMod: sparseCpu, Lq: 20, Lk: 600, blockSize: 16 });
        await checkSparse(on, fn, {
          ...c,
          gpu: { maskMod: sparse, blockMask: bm, sinks: [1, 0] },
          cpu: { maskMod: sparseCpu, blockMask: cpuBm },
        });
        bm.states.destroy();
        if (on !== ctx) on.destroy();
      },
    );
    it(`${path}: a block mask of tiles shorter than four rows`, async () => {
      const bm = await createBlockMask(ctx, { maskMod: local, Lq, Lk: 90, blockSize: [3, 8] });
      const cpuBm = createBlockMaskCpu({ maskMod: localCpu, Lq, Lk: 90, blockSize: [3, 8] });
      await checkSparse(ctx, fn, {
        ...base,
        Lq,
        Lk: 90,
        gpu: { maskMod: local, blockMask: bm },
        cpu: { maskMod: localCpu, blockMask: cpuBm },
      });
      bm.states.destroy();
    });
    it(`${path}: a block mask built from a bool mask gives the dense mask's result`, async () => {
      const c = { ...base, Lq, Lk: 90, magnitude: 2 };
      const { q, k, v } = caseInputs(c);
      const dense = new Uint8Array(Lq * 90).map((_, e) =>
        Math.floor(e / 90 / 8) % 3 === Math.floor((e % 90) / 16) % 3 ? 1 : 0,
      );
      await checked(ctx, async () => {
        const [qt, kt, vt] = [q, k, v].map((x) => ctx.tensor(x.data as Float32Array, x.shape));
        const mask = ctx.tensor(dense, [Lq, 90], { dtype: 'bool' });
        const blockMask = await createBlockMask(ctx, { mask, Lq, Lk: 90, blockSize: [8, 16] });
        const a = await fn(qt, kt, vt, { mask, blockMask, returnLse: true });
        const b = await fn(qt, kt, vt, { mask, returnLse: true });
        expectClose(await a.output.read(), await b.output.read(), F32_TOL, 'output');
        expectClose(await a.lse!.read(), await b.lse!.read(), F32_TOL, 'lse');
        for (const t of [qt, kt, vt, mask, blockMask.states, a.output, a.lse, b.output, b.lse]) t?.destroy();
      });
    });
  }

  // Tiles of bq x 12 that are empty, full or partial by a hash of (query block, key block, head),
  // a query block with no key, keys 120..239 empty for every row and 240.. for head 0: tiles that straddle the
  // kernels' groups of rows (4 per invocation, 64 or 256 per workgroup) and of keys (8, 16, 64).
  const tiles = (bq: number) => ({
    gpu: `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {
  let qb = i / ${bq}u;
  let c = (qb * 7u + (j / 12u) * 3u + qb * (j / 12u) + h) % 5u;
  if (qb == 2u || c < 2u || (j >= 120u && j < 240u) || (h == 0u && j >= 240u)) {
    return false;
  }
  return c == 2u || (i + 2u * j) % 3u != 0u;
}`,
    cpu: (h: number, i: number, j: number) => {
      const [qb, kb] = [Math.floor(i / bq), Math.floor(j / 12)];
      const c = (qb * 7 + kb * 3 + qb * kb + h) % 5;
      if (qb === 2 || c < 2 || (j >= 120 && j < 240) || (h === 0 && j >= 240)) return false;
      return c === 2 || (i + 2 * j) % 3 !== 0;
    },
  });
  for (const [path, fn, Lq, bq] of [
    ['flash', attention, 75, 10],
    ['decode', decodeAttention, 3, 2],
  ] as const) {
    it(`${path}: empty, full and partial tiles across groups of rows give the dense mask's result`, async () => {
      const Lk = 300;
      const { gpu, cpu } = tiles(bq);
      const dense = new Uint8Array(2 * Lq * Lk).map((_, e) =>
        cpu(Math.floor(e / (Lq * Lk)), Math.floor(e / Lk) % Lq, e % Lk) ? 1 : 0,
      );
      const bm = await createBlockMask(ctx, { maskMod: gpu, H: 2, Lq, Lk, blockSize: [bq, 12] });
      // the arrangement has every kind of tile
      expect(new Set(await bm.states.read())).toEqual(new Set([0, 1, 2]));
      await checkSparse(ctx, fn, {
        ...base,
        Lq,
        Lk,
        gpu: { maskMod: gpu, blockMask: bm },
        cpu: { mask: { data: dense, shape: [2, Lq, Lk], dtype: 'bool' }, blockMask: undefined },
      });
      bm.states.destroy();
    });
  }
});

describe('calls split to fit maxStorageBufferBindingSize = 4 KiB', () => {
  let small: Context;
  beforeAll(async () => {
    small = await testContext({ limits: { maxStorageBufferBindingSize: 4096 } });
  });
  afterAll(() => small?.destroy());
  const all = (Hq: number, Lq: number, Lk: number): GpuOptions => ({
    window: [12, 3],
    softcap: 2.5,
    alibiSlopes: Array.from({ length: Hq }, (_, h) => 0.05 * (h + 1)),
    sinks: Array.from({ length: Hq }, (_, h) => h - 1),
    maskMod: 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return (i * 7u + j + h) % 5u != 0u; }',
    cuSeqlensQ: [0, 5, Lq],
    cuSeqlensK: [0, 20, Lk],
  });
  /** `all` plus a block mask of the mask_mod (and the reference's). */
  const withBlocks = async (Hq: number, Lq: number, Lk: number) => {
    const gpu = all(Hq, Lq, Lk);
    const blockMask = await createBlockMask(small, {
      maskMod: gpu.maskMod,
      H: Hq,
      Lq,
      Lk,
      blockSize: [4, 8],
    });
    const cpuBm = createBlockMaskCpu({ maskMod: cpuMaskMod, H: Hq, Lq, Lk, blockSize: [4, 8] });
    return { gpu: { ...gpu, blockMask }, cpu: { maskMod: cpuMaskMod, blockMask: cpuBm } };
  };
  const cpuMaskMod = (_b: number, h: number, i: number, j: number) => (i * 7 + j + h) % 5 !== 0;
  it('by heads', async () => {
    const c = { B: 1, Hq: 6, Hkv: 3, Lq: 40, Lk: 40, D: 8, Dv: 8, causal: true };
    const plan = planAttention(
      small.zeros([1, 6, 40, 8]),
      small.zeros([1, 3, 40, 8]),
      small.zeros([1, 3, 40, 8]),
    );
    expect(plan.path).toBe('heads');
    await checkSparse(small, attention, { ...c, ...(await withBlocks(6, 40, 40)) });
  });
  it('by blocks of rows x chunks of keys', async () => {
    const c = { B: 1, Hq: 2, Hkv: 1, Lq: 40, Lk: 160, D: 8, Dv: 8 };
    const plan = planAttention(
      small.zeros([1, 2, 40, 8]),
      small.zeros([1, 1, 160, 8]),
      small.zeros([1, 1, 160, 8]),
    );
    expect(plan.path).toBe('blocks');
    await checkSparse(small, attention, { ...c, ...(await withBlocks(2, 40, 160)) });
    // the document starts as IntTensors: copied on the GPU into each block's rule data
    await checkSparse(small, attention, { ...c, docsOnGpu: true, ...(await withBlocks(2, 40, 160)) });
  });
});

describe('errors', () => {
  let ctx: Context;
  let q: Tensor;
  beforeAll(async () => {
    ctx = await testContext();
    q = ctx.tensor(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
  });
  afterAll(() => ctx?.destroy());
  const fails = (options: AttentionOptions) => attention(q, q, q, options);

  it('a syntax error in a snippet shows the line and the compiler message', async () => {
    const error = await fails({
      scoreMod: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {\n  return s +* 2.0;\n}',
    }).catch((e: Error) => e.message);
    expect(error).toMatch(/^attention: options.scoreMod does not compile:\nline 2:\d+: /);
    expect(error).toContain('return s +* 2.0;');
  });
  it('a snippet with the wrong signature', async () => {
    await expect(
      fails({ maskMod: 'fn mask_mod(i: u32, j: u32) -> bool { return i >= j; }' }),
    ).rejects.toThrow(
      'attention: options.maskMod must define `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool`, received `fn mask_mod(i: u32, j: u32) -> bool`',
    );
    await expect(fails({ scoreMod: 'fn other(s: f32) -> f32 { return s; }' })).rejects.toThrow(
      'attention: options.scoreMod must define `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32`, received no score_mod function in',
    );
  });
  it('a JS function instead of WGSL text', async () => {
    await expect(fails({ maskMod: (() => true) as unknown as string })).rejects.toThrow(
      'attention: options.maskMod must be WGSL text defining fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool, received a function',
    );
  });
  it('bad values name the option, expected and received', async () => {
    await expect(fails({ softcap: -1 })).rejects.toThrow(
      'attention: options.softcap must be a finite number >= 0 (0: none), received -1',
    );
    await expect(fails({ window: [1, 2.5] })).rejects.toThrow(
      'attention: options.window must be [left, right], each an integer (negative: no bound) or Infinity, received [1, 2.5]',
    );
    await expect(fails({ alibiSlopes: [1] })).rejects.toThrow(
      'attention: options.alibiSlopes must have length 2 (Hq), received length 1',
    );
    const q2 = ctx.tensor(new Float32Array(2 * 2 * 3 * 4), [2, 2, 3, 4]);
    await expect(attention(q2, q2, q2, { alibiSlopes: [1, 2, 3] })).rejects.toThrow(
      'attention: options.alibiSlopes must have length 2 (Hq) or 4 (B·Hq, batch-major), received length 3',
    );
    const slopes3 = ctx.tensor(new Float32Array(6), [3, 2]);
    await expect(attention(q2, q2, q2, { alibiSlopes: slopes3 })).rejects.toThrow(
      "attention: options.alibiSlopes must be an 'f32' tensor of shape [2] (Hq) or [2, 2] (B, Hq) or [1, 2], received 'f32' [3, 2]",
    );
    q2.destroy();
    slopes3.destroy();
    await expect(fails({ sinks: [0, Number.NaN] })).rejects.toThrow(
      'attention: options.sinks[1] must be a finite number, received NaN',
    );
    await expect(fails({ cuSeqlensQ: [0, 3] })).rejects.toThrow(
      'attention: options.cuSeqlensQ needs cuSeqlensK (packed documents need both), received cuSeqlensK undefined',
    );
    await expect(fails({ sequsedK: [1, 2] })).rejects.toThrow(
      'attention: options.sequsedK must have length 1 (B), received length 2',
    );
    await expect(fails({ sequsedK: [4] })).rejects.toThrow(
      'attention: options.sequsedK[0] must be an integer in [0, 3] (the keys, Lk), received 4',
    );
    await expect(fails({ cuSeqlensQ: [0, 1, 3], cuSeqlensK: [0, 2, 3], sequsedK: [2, 1.5] })).rejects.toThrow(
      "attention: options.sequsedK[1] must be an integer in [0, 1] (the document's keys), received 1.5",
    );
    const lengths = intTensor(ctx, [1, 2], [2]);
    await expect(fails({ sequsedK: lengths })).rejects.toThrow(
      'attention: options.sequsedK must be an IntTensor of shape [1], received [2]',
    );
    await expect(fails({ cacheLeftpad: lengths })).rejects.toThrow(
      'attention: options.cacheLeftpad must be an IntTensor of shape [1], received [2]',
    );
    lengths.destroy();
    await expect(fails({ cacheLeftpad: [-1] })).rejects.toThrow(
      'attention: options.cacheLeftpad[0] must be an integer in [0, 3] (the keys, Lk), received -1',
    );
    await expect(fails({ cacheLeftpad: 2 as unknown as number[] })).rejects.toThrow(
      'attention: options.cacheLeftpad must be an array of 1 (B) key counts or an IntTensor, received 2',
    );
    await expect(fails({ cuSeqlensQ: [0, 3], cuSeqlensK: [0, 3], cacheLeftpad: [1] })).rejects.toThrow(
      'attention: options.cacheLeftpad is per batch item, not with packed documents (cuSeqlensQ / cuSeqlensK say where their keys begin), received both',
    );
    await expect(fails({ cuSeqlensQ: [0, 2], cuSeqlensK: [0, 3] })).rejects.toThrow(
      'attention: options.cuSeqlensQ must start with 0 and end with 3 (Lq), with at least 2 entries, received [0, 2]',
    );
  });
  it("alibiSlopes as a tensor [1, Hq] (FlashAttention's (batch, nheads) at batch 1) equals the array [Hq]", async () => {
    for (const B of [1, 2]) {
      const { q, k, v } = caseInputs({ B, Hq: 2, Hkv: 1, Lq: 5, Lk: 7, D: 4, Dv: 4 });
      const [qt, kt, vt] = [q, k, v].map((x) => ctx.tensor(x.data as Float32Array, x.shape));
      const slopes = ctx.tensor(new Float32Array([0.5, 0.25]), [1, 2]);
      const a = await attention(qt, kt, vt, { alibiSlopes: slopes });
      const b = await attention(qt, kt, vt, { alibiSlopes: [0.5, 0.25] });
      expectClose(await a.output.read(), await b.output.read(), F32_TOL, `B ${B}`);
      for (const t of [qt, kt, vt, slopes, a.output, b.output]) t.destroy();
    }
  });
  it('modData: what it holds, its names and its snippets are checked, with readable messages', async () => {
    const scoreMod = 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + bias(j); }';
    const live = ctx.liveBytes;
    await expect(fails({ modData: { bias: [1] } })).rejects.toThrow(
      'attention: options.modData is read only by scoreMod or maskMod, received it without',
    );
    await expect(fails({ scoreMod, modData: [1, 2] as unknown as Record<string, number[]> })).rejects.toThrow(
      'attention: options.modData must be an object of named arrays or tensors, received [1, 2]',
    );
    await expect(fails({ scoreMod, modData: { 'bias-table': [1] } })).rejects.toThrow(
      'attention: options.modData: entry names become WGSL function names (a letter or _, then letters, digits, _; not score_mod, mask_mod or score_mod_grad), received "bias-table"',
    );
    await expect(fails({ scoreMod, modData: { bias: [] } })).rejects.toThrow(
      "attention: options.modData.bias must be a non-empty array of numbers, an 'f32' tensor or an IntTensor, received []",
    );
    await expect(fails({ scoreMod, modData: { bias: [0, Number.NaN] } })).rejects.toThrow(
      'attention: options.modData.bias[1] must be a number, received NaN',
    );
    await expect(fails({ scoreMod, modData: { bias: Uint32Array.of(2 ** 31) } })).rejects.toThrow(
      'attention: options.modData.bias[0] must be a number below 2^31 (read as i32), received 2147483648',
    );
    const half = ctx.tensor(new Float32Array(4), [4], { dtype: 'f16' });
    await expect(fails({ scoreMod, modData: { bias: half } })).rejects.toThrow(
      "attention: options.modData.bias must be an 'f32' tensor or an IntTensor, received a 'f16' tensor",
    );
    half.destroy();
    // a WGSL keyword as a name; a snippet that calls a function modData does not define
    await expect(fails({ scoreMod, modData: { loop: [1] } })).rejects.toThrow(
      /^attention: options.modData: a name does not compile as a WGSL function:\nline 1:\d+: /,
    );
    const error = await fails({ scoreMod, modData: { bias_table: [1] } }).catch((e: Error) => e.message);
    expect(error).toMatch(/^attention: options.scoreMod does not compile:\nline 1:\d+: .*bias/);
    // a name the kernels use: the kernel's compile says which
    await expect(fails({ scoreMod, modData: { bias: [1], keyRange: [2] } })).rejects.toThrow(
      /its WGSL declares `keyRange` twice: a function of scoreMod or maskMod, or a modData entry, takes a name the kernel uses; rename it/,
    );
    expect(ctx.liveBytes, 'GPU bytes left').toBe(live);
  });
  it('document starts as IntTensors: shape, length and lifetime are checked', async () => {
    const grid = intTensor(ctx, [0, 1, 2, 3], [2, 2]);
    const three = intTensor(ctx, [0, 1, 3], [3]);
    const gone = intTensor(ctx, [0, 3], [2]);
    gone.destroy();
    await expect(fails({ cuSeqlensQ: grid, cuSeqlensK: [0, 3] })).rejects.toThrow(
      'attention: options.cuSeqlensQ must be an IntTensor of shape [documents + 1] (at least 2 entries), received [2, 2]',
    );
    await expect(fails({ cuSeqlensQ: three, cuSeqlensK: [0, 3] })).rejects.toThrow(
      'attention: options.cuSeqlensK must have the length of cuSeqlensQ (3, one more than the documents), received length 2',
    );
    await expect(fails({ cuSeqlensQ: [0, 3], cuSeqlensK: gone })).rejects.toThrow(
      'attention: cuSeqlensK: tensor [2] was destroyed',
    );
    grid.destroy();
    three.destroy();
  });
});

describe('rope from caller tables', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  const check = async (
    shape: [number, number, number, number],
    rotary: number,
    o: { positionIds?: number[]; perBatch?: boolean; offset?: number; interleaved?: boolean; dtype?: 'f16' },
  ) => {
    const random = rng(3);
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array = randomArray(random, n);
    if (o.dtype === 'f16') data = roundToF16(data);
    const tables = ropeTablesCpu(20, rotary, 500);
    const ids = o.positionIds && {
      data: o.positionIds,
      shape: o.perBatch ? [shape[0], shape[2]] : [shape[2]],
    };
    const ref = ropeCpu(
      { data, shape },
      { ...tables, positionIds: ids, offset: o.offset, interleaved: o.interleaved },
    );
    await checked(ctx, async () => {
      const x = ctx.tensor(data, shape, { dtype: o.dtype });
      const cos = ctx.tensor(tables.cos.data, tables.cos.shape);
      const sin = ctx.tensor(tables.sin.data, tables.sin.shape);
      const y = await rope(x, {
        cos,
        sin,
        positionIds: o.positionIds,
        offset: o.offset,
        interleaved: o.interleaved,
      });
      expectClose(await y.read(), ref.data, o.dtype === 'f16' ? F16_TOL : F32_TOL, JSON.stringify(o));
      for (const t of [x, cos, sin, y]) t.destroy();
    });
  };
  it('half-split with shared position ids', () => check([2, 3, 4, 8], 8, { positionIds: [3, 1, 19, 0] }));
  it('interleaved, per-batch position ids, partial rotary dim', () =>
    check([2, 2, 3, 10], 6, { positionIds: [0, 1, 2, 7, 8, 9], perBatch: true, interleaved: true }));
  it('offset without ids, f16 storage', () => check([1, 2, 5, 8], 8, { offset: 15, dtype: 'f16' }));
  it('bad tables and ids name what is expected', async () => {
    const x = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    const cos = ctx.tensor(new Float32Array(8), [4, 2]);
    const wide = ctx.tensor(new Float32Array(12), [4, 3]);
    await expect(rope(x, { cos, sin: wide })).rejects.toThrow(
      "rope: sin must be an 'f32' tensor [4, 2] (cos's shape), received 'f32' [4, 3]",
    );
    await expect(rope(x, { cos: wide, sin: wide })).rejects.toThrow(
      "rope: cos must be an 'f32' tensor [maxPositions, rotaryDim / 2] with rotaryDim <= 4 (the head dim), received 'f32' [4, 3]",
    );
    await expect(rope(x, { cos, sin: cos, positionIds: [0, 4] })).rejects.toThrow(
      'rope: positionIds must be integers in [0, 4) (cos/sin rows), received 4 at index 1',
    );
    await expect(rope(x, { cos, sin: cos, offset: 3 })).rejects.toThrow(
      'rope: offset must be an integer in [0, 2] (positions offset..offset+L-1 within the 4 table rows), received 3',
    );
    for (const t of [x, cos, wide]) t.destroy();
  });

  it("the layer's rope option takes tables and matches the same rotation from settings", async () => {
    const E = 16;
    const random = rng(9);
    const state = {
      in_proj_weight: randomArray(random, 3 * E * E, 0.3),
      in_proj_bias: randomArray(random, 3 * E, 0.1),
      'out_proj.weight': randomArray(random, E * E, 0.3),
      'out_proj.bias': randomArray(random, E, 0.1),
    };
    const tables = ropeTablesCpu(16, 4, 10000);
    const cos = ctx.tensor(tables.cos.data, tables.cos.shape);
    const sin = ctx.tensor(tables.sin.data, tables.sin.shape);
    const x = ctx.tensor(randomArray(random, 2 * 5 * E), [2, 5, E]);
    await checked(ctx, async () => {
      const fromTables = new MultiHeadAttention(ctx, { embedDim: E, numHeads: 4, rope: { cos, sin } });
      const fromSettings = new MultiHeadAttention(ctx, { embedDim: E, numHeads: 4, rope: { style: 'half' } });
      fromTables.loadPyTorch(state);
      fromSettings.loadPyTorch(state);
      const a = await fromTables.forward(x, { causal: true });
      const b = await fromSettings.forward(x, { causal: true });
      expectClose(await a.output.read(), await b.output.read(), F32_TOL, 'output');
      for (const t of [a.output, b.output]) t.destroy();
      expect(
        () => new MultiHeadAttention(ctx, { embedDim: E, numHeads: 2, rope: { cos, sin } }),
      ).not.toThrow();
      expect(() => new MultiHeadAttention(ctx, { embedDim: 4, numHeads: 2, rope: { cos, sin } })).toThrow(
        "MultiHeadAttention: rope: cos must be an 'f32' tensor [maxPositions, rotaryDim / 2] with rotaryDim <= 2 (the head dim), received 'f32' [16, 2]",
      );
    });
    for (const t of [x, cos, sin]) t.destroy();
  });
});
