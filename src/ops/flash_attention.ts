// The flash kernel of a planned call: one dispatch, in the plan's kernel form.
import flashSource from '../../shaders/flash_attention.wgsl?raw';
import registersSource from '../../shaders/flash_attention_registers.wgsl?raw';
import flashCommonSource from '../../shaders/flash_common.wgsl?raw';
import keyRulesSource from '../../shaders/key_rules.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import valueChunksSource from '../../shaders/value_chunks.wgsl?raw';
import { chunkPrelude, elementPrelude } from '../f16';
import { f32, i32, type Recording, type UniformValue } from '../program';
import type { AttentionBuffers, CorePlan, FlashPlan } from './attention_plan';

/** Uniforms every attention kernel that scores keys reads (flash_common.wgsl, decode_partials.wgsl). */
export function scoringUniforms(plan: CorePlan, io: AttentionBuffers): Record<string, UniformValue> {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = plan.shape;
  const [mask_b, mask_h, mask_i, mask_j] = plan.maskStrides;
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
    kStride: io.kStride,
    vStride: io.vStride,
    shift: i32(plan.causalShift),
  };
}

/** Records the flash kernel of `plan` on `io`. */
export function recordFlash(rec: Recording, plan: FlashPlan, io: AttentionBuffers): void {
  const { D, Dv } = plan.shape;
  const D4 = Math.ceil(D / 4);
  const DV4 = Math.ceil(Dv / 4);
  const bindings = [io.q, io.k, io.v, io.mask, io.output, io.lse];
  const shared = [flashCommonSource, keyRulesSource, maskedSource];
  const common = { D4, DV4, MASK: plan.maskKind, LSE: plan.lse };
  if (plan.kernel === 'registers') {
    rec.dispatch({
      name: 'flash_attention_registers',
      sources: [
        elementPrelude(plan.storage, true),
        chunkPrelude(plan.storage),
        registersSource,
        valueChunksSource,
        ...shared,
      ],
      constants: { WG: plan.rowsPerWorkgroup / 4, ...common },
      uniforms: scoringUniforms(plan, io),
      bindings,
      workgroups: plan.workgroups,
    });
  } else {
    rec.dispatch({
      name: 'flash_attention',
      sources: [elementPrelude(plan.storage, true), flashSource, ...shared],
      constants: { WG: plan.rowsPerWorkgroup, BC: plan.keysPerTile, ...common, WEIGHTS: plan.weights },
      uniforms: scoringUniforms(plan, io),
      bindings: [...bindings, io.weights],
      workgroups: plan.workgroups,
    });
  }
}
