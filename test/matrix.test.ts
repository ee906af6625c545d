// The 'matrix' kernel form (opt-in): S = Q K^T and O += P V as f16 x f16 -> f32 matrix tiles. On
// an adapter without subgroup matrices (SwiftShader) it runs their emulation, which rounds every
// operand to f16 like the builtins: checked here against the float64 reference at the f16
// tolerance of DESIGN.md, f32 inputs included, and every shader module compiles without messages
// (kernels.browser.test.ts's check; Dawn's Null backend compiles every variant, builtins included, in
// kernels_null.node.test.ts). Few shapes: each new constant set is a pipeline (seconds here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionOptions,
  attention,
  type Context,
  createBlockMask,
  planAttention,
  type Tensor,
} from '../src';
import {
  type AttentionCpuOptions,
  attentionCpu,
  createBlockMaskCpu,
  type HostTensor,
} from '../src/reference';
import { type Case, caseInputs, inLayout, kernelOf, swapAxes12 } from './attention_cases';
import { checked, expectClose, F16_TOL, testContext } from './helpers';
import { messagesOf } from './kernel_variants';

describe('matrix kernel form', () => {
  let ctx: Context;
  beforeAll(async () => {
    // 24 KiB of workgroup memory: the emulation keeps 32 value dims per workgroup (one pipeline
    // size for every case; larger Dv runs over several workgroups)
    ctx = await testContext({ attentionKernel: 'matrix', limits: { maxComputeWorkgroupStorageSize: 24576 } });
  });
  afterAll(() => ctx?.destroy());

  /**
   * Runs `c` (with `extra`: options both sides take) on the GPU and on the float64 reference and
   * compares output and lse at f16 tolerance; checks that the matrix form ran it. Returns the
   * reference's lse.
   */
  const check = async (
    c: Case,
    extra: AttentionOptions = {},
    cpuExtra = extra as AttentionCpuOptions,
  ): Promise<ArrayLike<number>> => {
    const inputs = caseInputs(c);
    const ref = attentionCpu(inputs.q, inputs.k, inputs.v, {
      ...cpuExtra,
      causal: c.causal,
      scale: c.scale,
      mask: inputs.mask,
    });
    const made: Tensor[] = [];
    const up = (h: HostTensor, dtype = h.dtype ?? c.dtype ?? 'f32') => {
      const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype });
      made.push(t);
      return t;
    };
    const { messages } = await messagesOf(ctx, () =>
      checked(ctx, async () => {
        const [q, k, v] = [inputs.q, inputs.k, inputs.v].map((t) => up(inLayout(t, c.layout)));
        const options: AttentionOptions = {
          ...extra,
          layout: c.layout,
          causal: c.causal,
          scale: c.scale,
          mask: inputs.mask ? up(inputs.mask) : undefined,
          returnLse: true,
        };
        expect(kernelOf(planAttention(q, k, v, options))).toBe('matrix');
        const r = await attention(q, k, v, options);
        made.push(r.output, r.lse!);
        const label = JSON.stringify(c);
        const out = await r.output.read();
        const bhld = c.layout === 'blhd' ? swapAxes12(out, r.output.shape) : out;
        expectClose(bhld, ref.output.data, F16_TOL, `${label} output`);
        expectClose(await r.lse!.read(), ref.lse.data, F16_TOL, `${label} lse`);
      }),
    );
    // the compile check of kernels.browser.test.ts, on the pipelines compiled here anyway
    expect(messages).toEqual([]);
    for (const t of made) t.destroy();
    return ref.lse.data;
  };
  const base = { B: 1, Hq: 2, Hkv: 2, Lq: 16, Lk: 16, D: 16, Dv: 16 };
  const empty = (lse: ArrayLike<number>) => Array.from(lse).filter((x) => x === Number.NEGATIVE_INFINITY);

  // f32 inputs, Dv <= 32: one pipeline
  it('size 1 everywhere', () => check({ B: 1, Hq: 1, Hkv: 1, Lq: 1, Lk: 1, D: 1, Dv: 1 }));
  it('odd sizes, Dv != D, GQA (3 query heads on 1 kv head), layout blhd', () =>
    check({ B: 2, Hq: 3, Hkv: 1, Lq: 7, Lk: 13, D: 5, Dv: 3, layout: 'blhd' }));
  it('causal, Lq > Lk: the first rows attend nothing (zeros, lse -Infinity)', async () => {
    expect(empty(await check({ ...base, Lq: 40, Lk: 9, causal: true })).length).toBeGreaterThan(0);
  });
  it('window and sinks', () => check({ ...base, Lq: 33, Lk: 40 }, { window: [5, 3], sinks: [0.5, -1] }));
  it('packed documents, causal', () =>
    check(
      { ...base, Lq: 37, Lk: 45, causal: true },
      { cuSeqlensQ: [0, 10, 10, 37], cuSeqlensK: [0, 20, 21, 45] },
    ));
  // f16 inputs, a bool mask, softcap, ALiBi and a block mask: one more pipeline; Dv 72 runs over
  // three workgroups
  const rules = async (
    Lq: number,
    Lk: number,
    softcap: number,
    slopes: number[],
    window: [number, number],
  ) => {
    const blockMask = await createBlockMask(ctx, { Lq, Lk, window, blockSize: 16 });
    const gpu = { softcap, alibiSlopes: slopes, window, blockMask };
    const cpu = {
      softcap,
      alibiSlopes: slopes,
      window,
      blockMask: createBlockMaskCpu({ Lq, Lk, window, blockSize: 16 }),
    };
    return { gpu, cpu, blockMask };
  };
  it('rows and keys past a block and a tile, D not a multiple of the tile, rules, a mask emptying rows', async () => {
    const r = await rules(45, 70, 3, [0.3, 0.1], [20, 10]);
    const mask = { kind: 'bool' as const, shape: [45, 70], pTrue: 0.1 };
    const c = { ...base, Hkv: 1, Lq: 45, Lk: 70, D: 20, Dv: 72, dtype: 'f16' as const, mask };
    expect(empty(await check(c, r.gpu, r.cpu)).length).toBeGreaterThan(0);
    r.blockMask.states.destroy();
  });
  it('large logits (about 1e4; the rules present, but neutral)', async () => {
    const r = await rules(16, 16, 1e6, [0, 0], [Infinity, Infinity]);
    const mask = { kind: 'bool' as const, shape: [16, 16], pTrue: 1 };
    await check({ ...base, D: 4, Dv: 40, magnitude: 100, scale: 1, dtype: 'f16', mask }, r.gpu, r.cpu);
    r.blockMask.states.destroy();
  });

  it('calls it cannot run go to the workgroup form; decode too', () => {
    const q = ctx.zeros([1, 2, 5, 8]);
    const long = ctx.zeros([1, 2, 300, 8]);
    expect(kernelOf(planAttention(q, q, q, { returnWeights: true }))).toBe('workgroup');
    expect(kernelOf(planAttention(q, q, q, { dropout: { p: 0.5, seed: 1 } }))).toBe('workgroup');
    const decode = planAttention(q.ctx.zeros([1, 2, 1, 8]), long, long);
    expect([decode.path, kernelOf(decode)]).toEqual(['decode', 'workgroup']);
    const plan = planAttention(q, q, q);
    expect(plan.path === 'flash' && plan.matrix?.builtin).toBe(
      ctx.features.has('chromium-experimental-subgroup-matrix'),
    );
    for (const t of [q, long]) t.destroy();
  });

  it('a device with too little workgroup memory for its tiles runs the workgroup form', async () => {
    const small = await testContext({
      attentionKernel: 'matrix',
      limits: { maxComputeWorkgroupStorageSize: 16384 },
    });
    const q = small.zeros([1, 1, 40, 8]);
    expect(kernelOf(planAttention(q, q, q))).toBe(
      small.features.has('chromium-experimental-subgroup-matrix') ? 'matrix' : 'workgroup',
    );
    small.destroy();
  });
});
