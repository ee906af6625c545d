// The split-K decode kernel of a planned call: pass 1 scores chunks of keys in parallel into
// partial results, pass 2 merges each row's partials by their log-sum-exp.
import lanesSource from '../../shaders/decode_lanes.wgsl?raw';
import lanesSubgroupsSource from '../../shaders/decode_lanes_subgroups.wgsl?raw';
import partialsSource from '../../shaders/decode_partials.wgsl?raw';
import splitSource from '../../shaders/decode_split.wgsl?raw';
import splitRegistersSource from '../../shaders/decode_split_registers.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import valueChunksSource from '../../shaders/value_chunks.wgsl?raw';
import { chunkPrelude, elementPrelude, inputPrelude } from '../f16';
import type { Recording } from '../program';
import { type AttentionBuffers, DECODE_REGISTERS_WG, DECODE_WG, type DecodePlan } from './attention_plan';
import {
  rowConstants,
  rowUniforms,
  ruleConstants,
  scoringSources,
  scoringUniforms,
  withRules,
} from './flash_attention';
import { recordPartials, recordPartialsMerge } from './partials_merge';

/** Records both passes of `plan` on `io`; the partials live until the recording is submitted. */
export function recordDecode(rec: Recording, plan: DecodePlan, io: AttentionBuffers): void {
  const { Hq, Hkv, D, Dv } = plan.shape;
  const DV4 = Math.ceil(Dv / 4);
  const parts = recordPartials(rec, plan, plan.partials);
  const { partO, partML } = parts;
  // (assigned: properties after a spread make V8 build the object slowly)
  const uniforms = Object.assign(scoringUniforms(plan, io), {
    group: Hq / Hkv,
    tilesPerChunk: plan.tilesPerChunk,
    P: plan.partials,
    chunks: plan.chunks,
    rowBlocks: plan.rowBlocks,
  });
  const { bindings, RULES_BINDING } = withRules([io.q, io.k, io.v, io.mask, partO, partML], io);
  const shared = [partialsSource, maskedSource, ...scoringSources(plan)];
  if (plan.kernel === 'registers') {
    rec.dispatch({
      name: 'decode_split_registers',
      sources: [
        elementPrelude(plan.storage, false),
        chunkPrelude(plan.storage),
        splitRegistersSource,
        valueChunksSource,
        ...shared,
      ],
      constants: {
        WG: DECODE_REGISTERS_WG,
        D4: D / 4,
        DV4,
        MASK: plan.maskKind,
        RULES_BINDING,
        ...ruleConstants(plan),
        ...rowConstants(io),
      },
      uniforms,
      bindings,
      workgroups: plan.workgroups,
    });
  } else {
    // k and v read as four-element chunks where their rows and strides allow
    const { k, v } = io.strides;
    const G = DECODE_WG / plan.keyLanes;
    const vec = D % 4 === 0 && Dv % 4 === 0 && [...k, ...v].every((x) => x % 4 === 0);
    rec.dispatch({
      name: 'decode_split',
      sources: [
        elementPrelude(plan.storage, false),
        chunkPrelude(plan.storage),
        inputPrelude(vec),
        plan.subgroups ? lanesSubgroupsSource : lanesSource,
        splitSource,
        ...shared,
      ],
      constants: {
        WG: DECODE_WG,
        RQ: plan.rowsPerBlock,
        LK: plan.keyLanes,
        G,
        RED: Math.max(plan.rowsPerBlock * DECODE_WG, plan.folded ? (G / 2) * DV4 : 0),
        FOLD: plan.folded,
        D4: Math.ceil(D / 4),
        DV4,
        SK: Math.ceil(Math.ceil(D / 4) / plan.keyLanes),
        SV: Math.ceil(DV4 / plan.keyLanes),
        VEC: vec,
        MASK: plan.maskKind,
        RULES_BINDING,
        ...ruleConstants(plan),
      },
      uniforms: { ...uniforms, ...rowUniforms(io) },
      bindings,
      workgroups: plan.workgroups,
    });
  }
  recordPartialsMerge(rec, plan, io, parts);
}
