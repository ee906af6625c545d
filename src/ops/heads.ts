import headsSource from '../../shaders/heads.wgsl?raw';
import { Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { checkF32, WG } from './train_common';

async function permute(op: string, x: Tensor, split: boolean, B: number, L: number, H: number, d: number) {
  const out = x.ctx.zeros(split ? [B, H, L, d] : [B, L, H * d], 'f32', `${op}:out`);
  const rec = new Recording(x.ctx, op);
  rec.dispatch({
    name: 'heads',
    sources: [headsSource],
    constants: { WG, SPLIT: split },
    uniforms: { total: x.size, L, H, d },
    bindings: [x.binding, out.binding],
    workgroups: Math.ceil(x.size / WG),
  });
  await rec.submit();
  return out;
}

/** x [B, L, H · d] -> [B, H, L, d] (f32): the head split of attention; its backward is {@link mergeHeads}. */
export async function splitHeads(x: Tensor, heads: number): Promise<Tensor> {
  checkF32('splitHeads', 'x', x, x?.ctx);
  if (x.rank !== 3)
    throw new Error(`splitHeads: x: expected rank 3 [B, L, E], received shape ${fmt(x.shape)}`);
  const [B, L, E] = x.shape;
  if (!Number.isInteger(heads) || heads < 1 || E % heads !== 0) {
    throw new Error(
      `splitHeads: heads must be a positive integer dividing E=${E}, received ${String(heads)}`,
    );
  }
  return permute('splitHeads', x, true, B, L, heads, E / heads);
}

/** x [B, H, L, d] -> [B, L, H · d] (f32): the head merge; its backward is {@link splitHeads}. */
export async function mergeHeads(x: Tensor): Promise<Tensor> {
  checkF32('mergeHeads', 'x', x, x?.ctx);
  if (x.rank !== 4)
    throw new Error(`mergeHeads: x: expected rank 4 [B, H, L, d], received shape ${fmt(x.shape)}`);
  const [B, H, L, d] = x.shape;
  return permute('mergeHeads', x, false, B, L, H, d);
}
