// Merges partial attention results over disjoint chunks of keys by their log-sum-exp (the second
// pass of split-K decode, and of tiled calls split over keys): decode_merge.wgsl.
import mergeSource from '../../shaders/decode_merge.wgsl?raw';
import mergeSerialSource from '../../shaders/decode_merge_serial.wgsl?raw';
import mergeSlicesSource from '../../shaders/decode_merge_slices.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import { elementPrelude } from '../f16';
import type { Bindable, Recording } from '../program';
import type { AttentionBuffers, CorePlan } from './attention_plan';

/**
 * Invocations of a merge workgroup (one query row) on a GPU: 256, so that a row's partials are
 * read by up to 256 / ceil(Dv / 4) slices in parallel rather than one after another (a row of a
 * long decode has hundreds). On a fallback adapter (a CPU), where every invocation is a fiber
 * and the partials are few, one invocation per four output columns reads them serially.
 */
const MERGE_WG = 256;

/** Partial results of a call's rows, `P` per row, for {@link recordPartialsMerge}. */
export interface Partials {
  partO: Bindable;
  partML: Bindable;
  P: number;
}

/**
 * Buffers for `P` partials per query row of `plan` (living until the recording is submitted):
 * partO `[B * Hq * Lq, P, ceil(Dv / 4)]` vec4s and partML `[B * Hq * Lq, P]` (m, l) pairs.
 */
export function recordPartials(rec: Recording, plan: CorePlan, P: number): Partials {
  const { B, Hq, Lq, Dv } = plan.shape;
  return {
    partO: rec.buffer(B * Hq * Lq * P * Math.ceil(Dv / 4) * 16, 'attention:partials'),
    partML: rec.buffer(B * Hq * Lq * P * 8, 'attention:partial-lse'),
    P,
  };
}

/**
 * Records the merge of `P` partials per query row, partO `[B * Hq * Lq, P, ceil(Dv / 4)]` (vec4,
 * unnormalised) and partML `[B * Hq * Lq, P]` ((m, l) pairs), into `io.output` (and `io.lse`),
 * adding the call's sinks.
 */
export function recordPartialsMerge(
  rec: Recording,
  plan: CorePlan,
  io: AttentionBuffers,
  parts: Partials,
): void {
  const { B, Hq, Lq, Dv } = plan.shape;
  const serial = rec.ctx.adapterInfo?.isFallbackAdapter ?? false;
  const DV4 = Math.ceil(Dv / 4);
  rec.dispatch({
    name: 'decode_merge',
    sources: [
      elementPrelude(plan.storage, true),
      mergeSource,
      serial ? mergeSerialSource : mergeSlicesSource,
      maskedSource,
    ],
    constants: serial
      ? { WG: DV4, DV4, LSE: plan.lse }
      : { WG: MERGE_WG, DV4, SLICES: Math.floor(MERGE_WG / DV4), LSE: plan.lse },
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
