// The flash kernel of a planned call: one dispatch, in the plan's kernel form.
import dropoutSource from '../../shaders/dropout.wgsl?raw';
import flashSource from '../../shaders/flash_attention.wgsl?raw';
import matrixSource from '../../shaders/flash_attention_matrix.wgsl?raw';
import registersSource from '../../shaders/flash_attention_registers.wgsl?raw';
import tiledSource from '../../shaders/flash_attention_tiled.wgsl?raw';
import flashCommonSource from '../../shaders/flash_common.wgsl?raw';
import flashOutputsSource from '../../shaders/flash_outputs.wgsl?raw';
import flashPartialsSource from '../../shaders/flash_partials.wgsl?raw';
import flashRowsSource from '../../shaders/flash_rows.wgsl?raw';
import keyRulesSource from '../../shaders/key_rules.wgsl?raw';
import load4Source from '../../shaders/load4.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import tilesBuiltinSource from '../../shaders/matrix_tiles_builtin.wgsl?raw';
import tilesEmulatedSource from '../../shaders/matrix_tiles_emulated.wgsl?raw';
import rowGroupPlainSource from '../../shaders/row_group_plain.wgsl?raw';
import rowGroupSubgroupsSource from '../../shaders/row_group_subgroups.wgsl?raw';
import tiledPartialsSource from '../../shaders/tiled_partials.wgsl?raw';
import tiledProductsF16Source from '../../shaders/tiled_products_f16.wgsl?raw';
import tiledProductsF16EmulatedSource from '../../shaders/tiled_products_f16_emulated.wgsl?raw';
import tiledProductsF32Source from '../../shaders/tiled_products_f32.wgsl?raw';
import tiledRowsSource from '../../shaders/tiled_rows.wgsl?raw';
import valueChunksSource from '../../shaders/value_chunks.wgsl?raw';
import { dropoutThreshold } from '../dropout';
import { chunkPrelude, elementPrelude, inputPrelude } from '../f16';
import { type Bindable, f32, i32, type Recording, type UniformValue } from '../program';
import {
  type AttentionBuffers,
  type CorePlan,
  type FlashPlan,
  RULE_NONE,
  type TiledProducts,
} from './attention_plan';
import { type Partials, recordPartials, recordPartialsMerge } from './partials_merge';

/** The identities, compiled in where the call gives no scoreMod or maskMod. */
const IDENTITY_SCORE_MOD = 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s; }';
const IDENTITY_MASK_MOD = 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return true; }';

/**
 * The WGSL every kernel that scores keys appends: key_rules.wgsl, dropout.wgsl, the call's
 * score_mod and mask_mod and its modData functions (so pipelines are cached per snippet text and
 * modData's names and types, not its sizes). The kernel also needs
 * masked.wgsl, a `mask` binding and its MASK constant, and the constant RULES_BINDING = the
 * binding of `io.rules`, which goes last in its binding list (see `withRules`).
 */
export function scoringSources(plan: CorePlan): string[] {
  return [
    keyRulesSource,
    dropoutSource,
    plan.rules.scoreMod ?? IDENTITY_SCORE_MOD,
    plan.rules.maskMod ?? IDENTITY_MASK_MOD,
    plan.rules.modAccessors,
  ];
}

/** `bindings` with the rule data appended, and the RULES_BINDING constant that declares it. */
export function withRules(
  bindings: readonly (Bindable | undefined)[],
  io: AttentionBuffers,
): { bindings: (Bindable | undefined)[]; RULES_BINDING: number } {
  return { bindings: [...bindings, io.rules], RULES_BINDING: bindings.length + 1 };
}

/**
 * Constants of the forward kernels: MODS (softcap or score_mod present), BLOCKS (a block mask: 0,
 * 1, 2), KEY_RULES (ALiBi, mask_mod or a block mask) and DROPOUT keep the code of absent options
 * out of their key loops (any code in a loop costs SwiftShader speed). key_rules.wgsl itself needs
 * none of them.
 */
export function ruleConstants(plan: CorePlan): {
  MODS: boolean;
  BLOCKS: number;
  KEY_RULES: boolean;
  DROPOUT: boolean;
} {
  const r = plan.rules;
  return {
    DROPOUT: plan.dropout !== undefined,
    MODS: r.softcap > 0 || r.scoreMod !== undefined,
    // 1: a block mask; 2: one whose tiles have at least four rows (blockStates2 suffices)
    BLOCKS: r.blockMaskAt === RULE_NONE ? 0 : r.blockSize[0] >= 4 ? 2 : 1,
    KEY_RULES: r.alibiAt !== RULE_NONE || r.maskMod !== undefined || r.blockMaskAt !== RULE_NONE,
  };
}

/**
 * Row strides of q, k, v and the output, in elements, as the constants of the `registers` kernels
 * (which read four-element chunks): their key loops then index rows by constant offsets, which
 * SwiftShader needs for speed.
 */
export function rowConstants(io: AttentionBuffers): {
  Q_ROW: number;
  K_ROW: number;
  V_ROW: number;
  O_ROW: number;
} {
  const { q, k, v, o } = io.strides;
  return { Q_ROW: q[2], K_ROW: k[2], V_ROW: v[2], O_ROW: o[2] };
}

/**
 * The same row strides as the uniforms of the kernels that read elements (`workgroup` forms,
 * merges): constants there would compile a pipeline per head dim and head count.
 */
export function rowUniforms(io: AttentionBuffers): { q_l: number; k_l: number; v_l: number; o_l: number } {
  const { q, k, v, o } = io.strides;
  return { q_l: q[2], k_l: k[2], v_l: v[2], o_l: o[2] };
}

/**
 * Uniforms every attention kernel that scores keys reads (key_rules.wgsl and the kernels); the
 * batch and head strides of q, k, v and the output are q_b, q_h, .., o_h.
 */
export function scoringUniforms(plan: CorePlan, io: AttentionBuffers): Record<string, UniformValue> {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = plan.shape;
  const [mask_b, mask_h, mask_i, mask_j] = plan.maskStrides;
  const r = plan.rules;
  return {
    B,
    Hq,
    Hkv,
    Lq,
    Lk,
    D,
    Dv,
    causal: plan.causal ? 1 : 0,
    mask_b,
    mask_h,
    mask_i,
    mask_j,
    scale: f32(plan.scale),
    q_b: io.strides.q[0],
    q_h: io.strides.q[1],
    k_b: io.strides.k[0],
    k_h: io.strides.k[1],
    v_b: io.strides.v[0],
    v_h: io.strides.v[1],
    o_b: io.strides.o[0],
    o_h: io.strides.o[1],
    shift: i32(plan.causalShift),
    softcap: f32(r.softcap),
    win_left: i32(r.window[0]),
    win_right: i32(r.window[1]),
    alibi_at: r.alibiAt,
    alibi_b: r.alibiB,
    sinks_at: r.sinksAt,
    docs: r.docs,
    docs_q_at: r.docsQAt,
    docs_k_at: r.docsKAt,
    used_at: r.usedAt,
    lk_full: r.keysFull,
    leftpad_at: r.leftpadAt,
    score_mod: r.scoreMod ? 1 : 0,
    mask_mod: r.maskMod ? 1 : 0,
    mod_at: r.modAt,
    b0: r.origin[0],
    h0: r.origin[1],
    i0: r.origin[2],
    j0: r.origin[3],
    bm_at: r.blockMaskAt,
    bm_b: r.blockMaskShape[0],
    bm_h: r.blockMaskShape[1],
    bm_nq: r.blockMaskShape[2],
    bm_nk: r.blockMaskShape[3],
    bm_bq: r.blockSize[0],
    bm_bk: r.blockSize[1],
    drop_seed: plan.dropout?.seed ?? 0,
    drop_threshold: plan.dropout ? dropoutThreshold(plan.dropout.p) : 0,
    drop_scale: f32(plan.dropout ? 1 / (1 - plan.dropout.p) : 1),
  };
}

/**
 * Whether a kernel can read q, k and v four elements at a time (src/f16.ts's Chunk): head dims
 * and every batch, head and row stride multiples of 4.
 */
function chunkReads(plan: CorePlan, io: AttentionBuffers): boolean {
  const { q, k, v } = io.strides;
  return plan.shape.D % 4 === 0 && plan.shape.Dv % 4 === 0 && [...q, ...k, ...v].every((x) => x % 4 === 0);
}

/** The tiled kernel's products (the Tile interface) in each arithmetic. */
const TILED_PRODUCTS: Record<TiledProducts, string> = {
  f32: tiledProductsF32Source,
  f16: tiledProductsF16Source,
  'f16-emulated': tiledProductsF16EmulatedSource,
};

/** Partials of a call of `plan` split over keys, one per row and split; undefined when it is not. */
function splitPartials(rec: Recording, plan: FlashPlan): Partials | undefined {
  return plan.keySplits > 1 ? recordPartials(rec, plan, plan.keySplits) : undefined;
}

/**
 * Records the tiled kernel of `plan` on `io`; a call split over keys writes partial results that
 * a merge pass combines into the output.
 */
function recordTiled(rec: Recording, plan: FlashPlan, io: AttentionBuffers): void {
  const { Dv } = plan.shape;
  const partials = splitPartials(rec, plan);
  const split = partials !== undefined;
  const outputs = partials ? [partials.partO, partials.partML] : [io.output, io.lse];
  const { bindings, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, ...outputs], io);
  rec.dispatch({
    name: 'flash_attention_tiled',
    sources: [
      elementPrelude(plan.storage, !split),
      chunkPrelude(plan.storage),
      inputPrelude(chunkReads(plan, io)),
      tiledSource,
      load4Source,
      TILED_PRODUCTS[plan.products],
      plan.subgroups ? rowGroupSubgroupsSource : rowGroupPlainSource,
      split ? tiledPartialsSource : tiledRowsSource,
      maskedSource,
      ...scoringSources(plan),
    ],
    constants: {
      VCHUNKS: Math.ceil(Dv / 32),
      MASK: plan.maskKind,
      LSE: plan.lse,
      ...ruleConstants(plan),
      RULES_BINDING,
    },
    uniforms: {
      ...scoringUniforms(plan, io),
      ...rowUniforms(io),
      splits: plan.keySplits,
      split_keys: plan.splitKeys,
    },
    bindings,
    workgroups: plan.workgroups,
  });
  if (partials) recordPartialsMerge(rec, plan, io, partials);
}

/** Records the flash kernel of `plan` on `io`. */
export function recordFlash(rec: Recording, plan: FlashPlan, io: AttentionBuffers): void {
  const { D, Dv } = plan.shape;
  const D4 = Math.ceil(D / 4);
  const DV4 = Math.ceil(Dv / 4);
  const shared = [flashCommonSource, maskedSource, ...scoringSources(plan)];
  const common = { D4, DV4, MASK: plan.maskKind, LSE: plan.lse, ...ruleConstants(plan) };
  if (plan.kernel === 'registers') {
    const { bindings, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, io.output, io.lse], io);
    rec.dispatch({
      name: 'flash_attention_registers',
      sources: [
        elementPrelude(plan.storage, true),
        chunkPrelude(plan.storage),
        registersSource,
        valueChunksSource,
        flashOutputsSource,
        ...shared,
      ],
      constants: { WG: plan.rowsPerWorkgroup / 4, ...common, ...rowConstants(io), RULES_BINDING },
      uniforms: scoringUniforms(plan, io),
      bindings,
      workgroups: plan.workgroups,
    });
  } else if (plan.matrix) {
    const { builtin, M, N, K, valueDims } = plan.matrix;
    const { bindings, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, io.output, io.lse], io);
    rec.dispatch({
      name: builtin ? 'flash_attention_matrix' : 'flash_attention_matrix_emulated',
      sources: [
        elementPrelude(plan.storage, true),
        matrixSource,
        builtin ? tilesBuiltinSource : tilesEmulatedSource,
        flashOutputsSource,
        ...shared,
      ],
      constants: {
        TILE_M: M,
        TILE_N: N,
        TILE_K: K,
        VG: valueDims,
        MASK: plan.maskKind,
        LSE: plan.lse,
        ...ruleConstants(plan),
        RULES_BINDING,
      },
      uniforms: { ...scoringUniforms(plan, io), ...rowUniforms(io) },
      bindings,
      workgroups: plan.workgroups,
    });
  } else if (plan.kernel === 'tiled') {
    recordTiled(rec, plan, io);
  } else {
    // a call split over keys writes partials (flash_partials.wgsl), merged into the output
    const partials = splitPartials(rec, plan);
    const outputs = partials ? [partials.partO, partials.partML] : [io.output, io.lse];
    const { bindings, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, ...outputs, io.weights], io);
    rec.dispatch({
      name: 'flash_attention',
      sources: [
        elementPrelude(plan.storage, !partials),
        chunkPrelude(plan.storage),
        inputPrelude(chunkReads(plan, io)),
        flashSource,
        load4Source,
        ...(partials ? [flashPartialsSource] : [flashOutputsSource, flashRowsSource]),
        ...shared,
      ],
      constants: {
        WG: plan.rowsPerWorkgroup,
        BC: plan.keysPerTile,
        ...common,
        WEIGHTS: plan.weights,
        RULES_BINDING,
      },
      uniforms: {
        ...scoringUniforms(plan, io),
        ...rowUniforms(io),
        splits: plan.keySplits,
        split_keys: plan.splitKeys,
      },
      bindings,
      workgroups: plan.workgroups,
    });
    if (partials) recordPartialsMerge(rec, plan, io, partials);
  }
}
