// attentionBackward(): FlashAttention-2's backward without atomics (WebGPU has no f32 atomics):
// check -> plan -> three programs in one recording:
//   1. delta pass: per query row (lse, delta = rowsum(dO * O)) into a [B, Hq, Lq] scratch buffer;
//   2. dK/dV pass: each invocation owns keys of one kv head and walks all query heads of its GQA
//      group and all query rows, recomputing P from lse, accumulating dK and dV in registers;
//   3. dQ pass: each invocation owns query rows and walks their keys, accumulating dQ.
// P (L x L) is recomputed in both passes, never stored. Scores go through key_rules.wgsl's
// keyScore with the forward's scoringUniforms, so options added there reach the backward.
import commonSource from '../../shaders/attention_backward_common.wgsl?raw';
import deltaSource from '../../shaders/attention_backward_delta.wgsl?raw';
import dkdvSource from '../../shaders/attention_backward_dkdv.wgsl?raw';
import dkdvRegistersSource from '../../shaders/attention_backward_dkdv_registers.wgsl?raw';
import dqSource from '../../shaders/attention_backward_dq.wgsl?raw';
import dqRegistersSource from '../../shaders/attention_backward_dq_registers.wgsl?raw';
import dsinksSource from '../../shaders/attention_backward_dsinks.wgsl?raw';
import rowsSource from '../../shaders/attention_backward_rows.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import type { AttentionKernel } from '../context';
import { chunkPrelude, type ElementStorage, elementPrelude } from '../f16';
import { type Bindable, Recording } from '../program';
import { fmt } from '../shape';
import { bytesPerElement, expectTensor, type Tensor } from '../tensor';
import { recordRuleData } from './attention';
import {
  type AttentionBuffers,
  type AttentionOptions,
  type AttentionShape,
  type CorePlan,
  checkAttentionInputs,
  chunked,
  corePlan,
  type HeadStrides,
  headStrides,
  layoutShape,
  tensorStrides,
} from './attention_plan';
import { rowConstants, rowUniforms, scoringSources, scoringUniforms, withRules } from './flash_attention';

/** The forward's options (the same values as the forward call), plus its log-sum-exp. */
export type AttentionBackwardOptions = Omit<AttentionOptions, 'returnLse' | 'returnWeights'> & {
  /** The forward's `lse` [B, Hq, Lq] ('f32'), from `attention(..., { returnLse: true })`. */
  lse: Tensor;
  /**
   * With `scoreMod`: WGSL `fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32`,
   * the derivative of score_mod in s (same arguments). Required with scoreMod: the backward does
   * not differentiate WGSL by itself.
   */
  scoreModGrad?: string;
};

export interface AttentionGradients {
  /** [B, Hq, Lq, D] */
  dq: Tensor;
  /** [B, Hkv, Lk, D], summed over the query heads that read each kv head. */
  dk: Tensor;
  /** [B, Hkv, Lk, Dv], summed over the query heads that read each kv head. */
  dv: Tensor;
  /** [Hq] ('f32'), with `sinks`: d loss / d sink of each head. */
  dsinks?: Tensor;
}

/** score_mod_grad of calls without scoreMod (never called: keyScoreGrad checks p.score_mod). */
const IDENTITY_SCORE_MOD_GRAD =
  'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }';
const SCORE_MOD_GRAD_SIGNATURE =
  /fn\s+score_mod_grad\s*\(\s*\w+\s*:\s*f32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*,\s*\w+\s*:\s*u32\s*\)\s*->\s*f32/;

/** How one backward call runs: plain data, for tests and the benchmark. */
export interface AttentionBackwardPlan {
  /** The scoring parameters, shared with the forward (kernel form, mask strides, scale, causal). */
  core: CorePlan;
  /** 'registers': 4 x 4 register blocks, no barriers; 'workgroup': tiles in workgroup memory. */
  kernel: AttentionKernel;
  /** Query rows ('workgroup' dK/dV pass) or keys ('workgroup' dQ pass) per workgroup-memory tile. */
  rowsPerTile: number;
  keysPerTile: number;
  deltaWorkgroups: number;
  dkdvWorkgroups: number;
  dqWorkgroups: number;
}

/** Invocations per workgroup: rows of the delta pass, keys or rows of the 'workgroup' passes. */
const WG = 64;
/** Invocations per workgroup of the 'registers' passes (four keys or four rows each). */
const REGISTERS_WG = 16;
/** Largest workgroup-memory tile, in rows or keys. */
const MAX_TILE = 32;

/**
 * Gradients of `attention(q, k, v, options)` given `dOutput` = d loss / d output, fused
 * (FlashAttention-2's structure: a delta pre-pass, a dK/dV pass over key blocks and a dQ pass over
 * query blocks; no atomics, the L x L probabilities are recomputed from `lse`, never stored).
 * `output` and `options.lse` are the forward's results for the same inputs and options
 * (`returnLse: true`). Query rows that attend no key (lse = -Infinity) get zero gradients. dk and
 * dv of a kv head sum over its query heads (GQA/MQA). Results have q's dtype (f16 storage
 * accumulates in f32). The kernel form follows the context ({@link Context.attentionKernel}).
 *
 * @example
 * const { output, lse } = await attention(q, k, v, { causal: true, returnLse: true });
 * const { dq, dk, dv } = await attentionBackward(q, k, v, output, dOutput, { causal: true, lse: lse! });
 */
export async function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): Promise<AttentionGradients> {
  const plan = planAttentionBackward(q, k, v, output, dOutput, options);
  const { ctx } = q;
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = plan.core.shape;
  const layout = options.layout ?? 'bhld';
  const dq = ctx.zeros(layoutShape(layout, B, Hq, Lq, D), q.dtype, 'attentionBackward:dq');
  const dk = ctx.zeros(layoutShape(layout, B, Hkv, Lk, D), q.dtype, 'attentionBackward:dk');
  const dv = ctx.zeros(layoutShape(layout, B, Hkv, Lk, Dv), q.dtype, 'attentionBackward:dv');
  const dsinks = options.sinks !== undefined ? ctx.zeros([Hq], 'f32', 'attentionBackward:dsinks') : undefined;
  const rec = new Recording(ctx, 'attentionBackward');
  rec.watch(q, k, v, output, dOutput, options.mask, options.lse);
  try {
    // The rule data of the forward's options, with room for the row stats after it.
    const { lse: _, scoreModGrad: __, ...forward } = options;
    const statsBytes = B * Hq * Lq * 8;
    const data = recordRuleData(rec, ctx, forward, plan.core.rules, statsBytes)!;
    const io: AttentionBuffers = {
      q: q.binding,
      k: k.binding,
      v: v.binding,
      // dOutput and dq have the strides of output and q (all dense in the layout)
      strides: tensorStrides({ q, k, v, output, layout }),
      mask: options.mask?.binding,
      output: output.binding,
      rules: data.buffer,
    };
    recordBackward(rec, plan, io, {
      dOutput: dOutput.binding,
      lse: options.lse.binding,
      stats: { buffer: data.buffer, offset: data.reservedAt, size: statsBytes },
      statsAt: data.reservedAt / 4,
      scoreModGrad: options.scoreModGrad,
      dq: dq.binding,
      dk: dk.binding,
      dv: dv.binding,
      dkStrides: headStrides(dk.strides, layout),
      dvStrides: headStrides(dv.strides, layout),
      dsinks: dsinks?.binding,
    });
    await rec.submit();
  } catch (e) {
    for (const t of [dq, dk, dv, dsinks]) t?.destroy();
    throw e;
  }
  return dsinks ? { dq, dk, dv, dsinks } : { dq, dk, dv };
}

/**
 * How `attentionBackward` would run on these inputs (kernel form, tiles, workgroups). Validates
 * like `attentionBackward` does.
 */
export function planAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): AttentionBackwardPlan {
  const { forward, shape } = checkBackwardInputs(q, k, v, output, dOutput, options);
  const { ctx } = q;
  checkBindingSizes(ctx.limits.maxStorageBufferBindingSize, shape, q, k, v, options.mask);
  const inputs = { ctx, shape, dtype: q.dtype, mask: options.mask, chunked: chunked(k, v) };
  const core = corePlan(inputs, forward, shape.Lk - shape.Lq);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
  const kernel = core.kernel;
  const budget = ctx.limits.maxComputeWorkgroupStorageSize - 64;
  const rowBytes = (Math.ceil(D / 4) + Math.ceil(Dv / 4)) * 16;
  let rowsPerTile = MAX_TILE;
  while (rowsPerTile > 1 && rowsPerTile * (rowBytes + 8) > budget) rowsPerTile /= 2;
  let keysPerTile = MAX_TILE;
  while (keysPerTile > 1 && keysPerTile * rowBytes > budget) keysPerTile /= 2;
  const per = kernel === 'registers' ? 4 * REGISTERS_WG : WG;
  return {
    core,
    kernel,
    rowsPerTile,
    keysPerTile,
    deltaWorkgroups: Math.ceil((B * Hq * Lq) / WG),
    dkdvWorkgroups: B * Hkv * Math.ceil(Lk / per),
    dqWorkgroups: B * Hq * Math.ceil(Lq / per),
  };
}

interface BackwardBuffers {
  dOutput: Bindable;
  lse: Bindable;
  /** [B, Hq, Lq] of (lse, delta), written by the delta pass: a range of the rule data */
  stats: GPUBufferBinding;
  /** where `stats` starts in the rule data, in u32 words */
  statsAt: number;
  scoreModGrad?: string;
  dq: Bindable;
  dk: Bindable;
  dv: Bindable;
  /** Strides of dk and dv: dense, where k and v may be views. */
  dkStrides: HeadStrides;
  dvStrides: HeadStrides;
  /** [Hq], with sinks */
  dsinks?: Bindable;
}

/** Records the three passes of `plan`. dq, dk and dv must start zeroed (packed f16 stores OR). */
function recordBackward(
  rec: Recording,
  plan: AttentionBackwardPlan,
  io: AttentionBuffers,
  out: BackwardBuffers,
) {
  const { core, kernel } = plan;
  const { B, Hq, Lq, D, Dv } = core.shape;
  const storage = core.storage;
  const [o_b, o_h, o_l] = io.strides.o;
  rec.dispatch({
    name: 'attention_backward_delta',
    sources: [elementPrelude(storage, false), deltaSource, maskedSource],
    constants: { WG },
    uniforms: { rows: B * Hq * Lq, Dv, Hq, Lq, o_b, o_h, o_l },
    bindings: [out.dOutput, io.output, out.lse, out.stats],
    workgroups: plan.deltaWorkgroups,
  });
  const [dk_b, dk_h, dk_l] = out.dkStrides;
  const [dv_b, dv_h, dv_l] = out.dvStrides;
  const registers = kernel === 'registers';
  // row strides: constants of the registers passes, uniforms of the workgroup ones
  const uniforms = {
    ...scoringUniforms(core, io),
    ...(registers ? {} : rowUniforms(io)),
    stats_at: out.statsAt,
  };
  const gradUniforms = { ...uniforms, dk_b, dk_h, dk_l, dv_b, dv_h, dv_l };
  // the rule data (with the stats) at binding 6, where key_rules.wgsl's `rules` is declared
  const { bindings: inputs, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, out.dOutput], io);
  const shared = [
    commonSource,
    ...scoringSources(core),
    out.scoreModGrad ?? IDENTITY_SCORE_MOD_GRAD,
    maskedSource,
  ];
  const prelude = registers
    ? [elementPrelude(storage, false), chunkPrelude(storage)]
    : [elementPrelude(storage, false)];
  const common = { D4: Math.ceil(D / 4), DV4: Math.ceil(Dv / 4), MASK: core.maskKind, RULES_BINDING };
  rec.dispatch({
    name: registers ? 'attention_backward_dkdv_registers' : 'attention_backward_dkdv',
    sources: [
      ...prelude,
      outputBinding(storage, 7, 'dk', 'storeDk'),
      outputBinding(storage, 8, 'dv', 'storeDv'),
      ...(registers ? [dkdvRegistersSource] : [dkdvSource, rowsSource]),
      ...shared,
    ],
    constants: registers
      ? { WG: REGISTERS_WG, ...common, ...rowConstants(io) }
      : { WG, BR: plan.rowsPerTile, ...common },
    uniforms: gradUniforms,
    bindings: [...inputs, out.dk, out.dv],
    workgroups: plan.dkdvWorkgroups,
  });
  rec.dispatch({
    name: registers ? 'attention_backward_dq_registers' : 'attention_backward_dq',
    sources: [
      ...prelude,
      outputBinding(storage, 7, 'dq', 'storeDq'),
      ...(registers ? [dqRegistersSource] : [dqSource, rowsSource]),
      ...shared,
    ],
    constants: registers
      ? { WG: REGISTERS_WG, ...common, ...rowConstants(io) }
      : { WG, BC: plan.keysPerTile, ...common },
    uniforms,
    bindings: [...inputs, out.dq],
    workgroups: plan.dqWorkgroups,
  });
  if (out.dsinks) {
    rec.dispatch({
      name: 'attention_backward_dsinks',
      sources: [dsinksSource],
      constants: { WG },
      uniforms: { B, Hq, Lq, sinks_at: core.rules.sinksAt, stats_at: out.statsAt, h0: 0 },
      bindings: [io.rules, out.dsinks],
      workgroups: Math.ceil(Hq / WG),
    });
  }
}

/**
 * WGSL of an output binding `array` at `binding` and its store function `store(e, x)`, which
 * writes element e: packed f16 ORs each half into its (zeroed) word, so that two invocations
 * whose rows share a word never race.
 */
function outputBinding(storage: ElementStorage, binding: number, array: string, store: string): string {
  const type = storage === 'f32' ? 'f32' : storage === 'f16' ? 'f16' : 'atomic<u32>';
  const body =
    storage === 'f16-packed'
      ? `atomicOr(&${array}[e >> 1u], (pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu) << ((e & 1u) * 16u));`
      : storage === 'f16'
        ? `${array}[e] = f16(x);`
        : `${array}[e] = x;`;
  return `@group(0) @binding(${binding}) var<storage, read_write> ${array}: array<${type}>;
fn ${store}(e: u32, x: f32) { ${body} }
`;
}

/** Validates the inputs of attentionBackward; returns the forward's options and the sizes. */
function checkBackwardInputs(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  output: Tensor,
  dOutput: Tensor,
  options: AttentionBackwardOptions,
): { forward: AttentionOptions; shape: AttentionShape } {
  const what = 'attentionBackward';
  if (options === null || typeof options !== 'object') {
    throw new Error(
      `${what}: options must be an object with the forward's lse, received ${options === null ? 'null' : typeof options}`,
    );
  }
  for (const key of ['returnLse', 'returnWeights']) {
    if (key in options) {
      throw new Error(`${what}: options.${key} is an option of the forward only, received ${key}`);
    }
  }
  const { lse, scoreModGrad, ...forward } = options;
  if (forward.scoreMod !== undefined && scoreModGrad === undefined) {
    throw new Error(
      `${what}: options.scoreMod needs options.scoreModGrad, WGSL 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32' (its derivative in s), received undefined`,
    );
  }
  if (scoreModGrad !== undefined) {
    if (forward.scoreMod === undefined) {
      throw new Error(
        `${what}: options.scoreModGrad is only used with options.scoreMod, received it without`,
      );
    }
    if (typeof scoreModGrad !== 'string' || !SCORE_MOD_GRAD_SIGNATURE.test(scoreModGrad)) {
      throw new Error(
        `${what}: options.scoreModGrad must be WGSL text defining 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32', received ${typeof scoreModGrad === 'string' ? JSON.stringify(scoreModGrad.slice(0, 80)) : typeof scoreModGrad}`,
      );
    }
  }
  let shape: AttentionShape;
  try {
    shape = checkAttentionInputs(q, k, v, forward);
  } catch (e) {
    // The forward's checks, reported as this op's.
    if (e instanceof Error && e.message.startsWith('attention:')) {
      throw new Error(`${what}:${e.message.slice('attention:'.length)}`);
    }
    throw e;
  }
  // dq is written through q's strides
  q.assertUsable(`${what}: q`);
  const { B, Hq, Lq, Dv } = shape;
  const blhd = forward.layout === 'blhd';
  const want = layoutShape(forward.layout ?? 'bhld', B, Hq, Lq, Dv);
  const same = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((n, i) => n === b[i]);
  for (const [name, t] of [
    ['output', output],
    ['dOutput', dOutput],
  ] as const) {
    expectTensor(`${what}: ${name}`, t);
    t.assertUsable(`${what}: ${name}`, q.ctx);
    if (!same(t.shape, want)) {
      throw new Error(
        `${what}: ${name} must have shape ${fmt(want)} (the forward's output${blhd ? ", layout 'blhd'" : ''}), received ${fmt(t.shape)}`,
      );
    }
    if (t.dtype !== q.dtype) {
      throw new Error(`${what}: ${name} must have dtype '${q.dtype}' like q, received '${t.dtype}'`);
    }
  }
  if (lse === undefined) {
    throw new Error(
      `${what}: options.lse is required: the forward's log-sum-exp [${B}, ${Hq}, ${Lq}] from attention(..., { returnLse: true }), received undefined`,
    );
  }
  expectTensor(`${what}: options.lse`, lse);
  lse.assertUsable(`${what}: options.lse`, q.ctx);
  if (!same(lse.shape, [B, Hq, Lq])) {
    throw new Error(`${what}: options.lse must have shape ${fmt([B, Hq, Lq])}, received ${fmt(lse.shape)}`);
  }
  if (lse.dtype !== 'f32') {
    throw new Error(`${what}: options.lse must have dtype 'f32', received '${lse.dtype}'`);
  }
  return { forward, shape };
}

/**
 * Throws when a binding would exceed maxStorageBufferBindingSize: unlike the forward, the backward
 * does not split such calls yet.
 */
function checkBindingSizes(
  limit: number,
  s: AttentionShape,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | undefined,
): void {
  const bpe = bytesPerElement(q.dtype);
  const bindings: [string, number][] = [
    ['q and dq', s.B * s.Hq * s.Lq * s.D * bpe],
    ['k and dk', k.spanElements * bpe],
    ['v and dv', v.spanElements * bpe],
    ['output and dOutput', s.B * s.Hq * s.Lq * s.Dv * bpe],
    ['the row stats', s.B * s.Hq * s.Lq * 8],
    ['mask', mask ? mask.size * bytesPerElement(mask.dtype) : 0],
  ];
  for (const [name, bytes] of bindings) {
    if (bytes > limit) {
      throw new Error(
        `attentionBackward: ${name} need ${bytes} bytes in one binding, more than maxStorageBufferBindingSize (${limit} bytes); the backward does not split calls yet: split the batch or heads`,
      );
    }
  }
}
