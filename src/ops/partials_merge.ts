// Merges partial attention results over disjoint chunks of keys by their log-sum-exp (the second
// pass of split-K decode, and of tiled calls split over keys): decode_merge.wgsl.
import mergeSource from '../../shaders/decode_merge.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import { elementPrelude } from '../f16';
import type { Bindable, Recording } from '../program';
import { type AttentionBuffers, type CorePlan, DECODE_WG } from './attention_plan';

/**
 * Records the merge of `P` partials per query row, partO `[B * Hq * Lq, P, ceil(Dv / 4)]` (vec4,
 * unnormalised) and partML `[B * Hq * Lq, P]` ((m, l) pairs), into `io.output` (and `io.lse`),
 * adding the call's sinks.
 */
export function recordPartialsMerge(
  rec: Recording,
  plan: CorePlan,
  io: AttentionBuffers,
  parts: { partO: Bindable; partML: Bindable; P: number },
): void {
  const { B, Hq, Lq, Dv } = plan.shape;
  rec.dispatch({
    name: 'decode_merge',
    sources: [elementPrelude(plan.storage, true), mergeSource, maskedSource],
    constants: { WG: DECODE_WG, DV4: Math.ceil(Dv / 4), LSE: plan.lse },
    uniforms: {
      Dv,
      P: parts.P,
      Lq,
      Hq,
      o_b: io.strides.o[0],
      o_h: io.strides.o[1],
      o_l: io.strides.o[2],
      h0: plan.rules.origin[1],
      sinks_at: plan.rules.sinksAt,
    },
    bindings: [parts.partO, parts.partML, io.output, io.lse, io.rules],
    workgroups: B * Hq * Lq,
  });
}
