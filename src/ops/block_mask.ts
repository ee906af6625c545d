// createBlockMask: FlexAttention's create_block_mask on the GPU. Each (query block, key block)
// tile of the pairs that maskMod / mask (and causal / window) allow is classified as empty,
// partial or full; attention's `blockMask` option then skips the empty tiles and evaluates no
// maskMod on the full ones.
import blockMaskSource from '../../shaders/block_mask.wgsl?raw';
import maskedSource from '../../shaders/masked.wgsl?raw';
import { checkOptions } from '../checks';
import type { Context } from '../context';
import { Recording } from '../program';
import { broadcastStrides } from '../shape';
import { Tensor } from '../tensor';
import { recordRuleData } from './attention';
import {
  type BlockMask,
  type CorePlan,
  checkModData,
  checkSnippetSignature,
  checkWindow,
  denseStrides,
  type ModData,
  scoringRules,
} from './attention_plan';
import { scoringSources, scoringUniforms, withRules } from './flash_attention';
import { checkSnippets } from './score_snippets';

export type { BlockMask };

export interface CreateBlockMaskOptions {
  /** WGSL `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool` (as attention's maskMod). */
  maskMod?: string;
  /** Data maskMod reads (as attention's modData). */
  modData?: ModData;
  /** A 'bool' tensor (true = may attend) broadcastable to [B, H, Lq, Lk]. */
  mask?: Tensor;
  /** Also apply bottom-right causal masking (as attention's `causal`). */
  causal?: boolean;
  /** Also apply a sliding window (as attention's `window`). */
  window?: readonly [number, number];
  /** Batch size; 1 (the default) broadcasts over the batch. */
  B?: number;
  /** Query heads; 1 (the default) broadcasts over the heads. */
  H?: number;
  Lq: number;
  Lk: number;
  /** Tile size: one number for both, or [query rows, keys]. */
  blockSize: number | readonly [number, number];
}

const OPTION_KEYS = [
  'maskMod',
  'modData',
  'mask',
  'causal',
  'window',
  'B',
  'H',
  'Lq',
  'Lk',
  'blockSize',
] as const;
const WG = 64;

/**
 * The block mask of a maskMod and/or bool mask (with causal / window), computed on the GPU: one
 * state per (b, h, query block, key block) tile, 0 empty, 1 partial, 2 full. Pass it with the same
 * maskMod / mask to `attention(..., { blockMask })`.
 *
 * @example
 * const local = 'fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool { return j < 64u || i - min(i, 256u) <= j; }';
 * const blockMask = await createBlockMask(ctx, { maskMod: local, causal: true, Lq: L, Lk: L, blockSize: 64 });
 * await attention(q, k, v, { causal: true, maskMod: local, blockMask });
 */
export async function createBlockMask(ctx: Context, options: CreateBlockMaskOptions): Promise<BlockMask> {
  const what = 'createBlockMask';
  checkOptions(what, options, OPTION_KEYS);
  const { Lq, Lk, mask } = options;
  const B = options.B ?? 1;
  const H = options.H ?? 1;
  for (const [name, x] of [
    ['B', B],
    ['H', H],
    ['Lq', Lq],
    ['Lk', Lk],
  ] as const) {
    if (!Number.isInteger(x) || x < 1) {
      throw new Error(`${what}: ${name} must be a positive integer, received ${String(x)}`);
    }
  }
  const bs = options.blockSize;
  const [bq, bk] = typeof bs === 'number' ? [bs, bs] : Array.isArray(bs) && bs.length === 2 ? bs : [0, 0];
  if (!Number.isInteger(bq) || !Number.isInteger(bk) || bq < 1 || bk < 1) {
    throw new Error(
      `${what}: blockSize must be a positive integer or [rows, keys] of positive integers, received ${String(bs)}`,
    );
  }
  if (options.maskMod !== undefined) {
    if (typeof options.maskMod !== 'string') {
      throw new Error(`${what}: maskMod must be WGSL text, received ${typeof options.maskMod}`);
    }
    checkSnippetSignature('maskMod', options.maskMod);
  }
  if (mask !== undefined) {
    if (!(mask instanceof Tensor) || mask.dtype !== 'bool') {
      throw new Error(
        `${what}: mask must be a 'bool' tensor, received ${mask instanceof Tensor ? `'${mask.dtype}'` : typeof mask}`,
      );
    }
    mask.assertUsable(`${what}: mask`, ctx);
  }
  checkWindow(`${what}: window`, options.window);
  checkModData(`${what}: modData`, ctx, options.modData, 'maskMod', options.maskMod !== undefined);
  const scoring = { window: options.window, maskMod: options.maskMod, modData: options.modData };
  await checkSnippets(ctx, scoring, `${what}: `);
  const shape = { B, Hq: H, Hkv: H, Lq, Lk, D: 4, Dv: 4 };
  const rules = scoringRules(scoring, shape);
  const plan = {
    shape,
    maskStrides: mask ? broadcastStrides(`${what}: mask`, mask.shape, [B, H, Lq, Lk]) : [0, 0, 0, 0],
    scale: 1,
    causal: options.causal ?? false,
    causalShift: Lk - Lq,
    rules,
  } as CorePlan;
  const nq = Math.ceil(Lq / bq);
  const nk = Math.ceil(Lk / bk);
  const states = ctx.zeros([B, H, nq, nk], 'f32', 'createBlockMask:states');
  const rec = new Recording(ctx, what);
  const io = {
    q: states.buffer,
    k: states.buffer,
    v: states.buffer,
    strides: denseStrides(shape, 'bhld'),
    output: states.buffer,
    rules: recordRuleData(rec, ctx, scoring, rules)?.buffer,
  };
  const { bindings, RULES_BINDING } = withRules([mask?.buffer, states.buffer], io);
  rec.dispatch({
    name: 'block_mask',
    sources: [blockMaskSource, maskedSource, ...scoringSources(plan)],
    constants: { WG, MASK: mask ? 1 : 0, RULES_BINDING },
    uniforms: { ...scoringUniforms(plan, io), bq, bk, nq, nk },
    bindings,
    // one workgroup per tile
    workgroups: B * H * nq * nk,
  });
  try {
    await rec.submit();
  } catch (e) {
    states.destroy();
    throw e;
  }
  return { states, blockSizeQ: bq, blockSizeK: bk, Lq, Lk };
}
