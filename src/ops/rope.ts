import ropeSource from '../../shaders/rope.wgsl?raw';
import { checkOptions } from '../checks';
import { elementPrelude, elementStorage } from '../f16';
import { Recording } from '../program';
import { checkRopeSettings, type RopeOptions } from '../reference/rope';
import { expectRank } from '../shape';
import type { Tensor } from '../tensor';
import { expectTensor } from '../tensor';

export type { RopeOptions };

const OPTION_KEYS = ['style', 'base', 'dims', 'offset'] as const;
const WG = 64;

/**
 * Rotary position embedding applied on the GPU: x [B, H, L, D] -> a new tensor [B, H, L, D] of
 * x's dtype ('f32' or 'f16'), row l of every head rotated for position `offset + l`.
 *
 * @example
 * // q [B, H, L, D] of a decode step at position 17
 * const qRot = await rope(q, { style: 'half', offset: 17 });
 */
export async function rope(x: Tensor, options: RopeOptions): Promise<Tensor> {
  const { dims, base, offset } = checkRopeInputs(x, options);
  const { ctx } = x;
  const [, , L, D] = x.shape;
  const storage = elementStorage(ctx, x.dtype);
  const constants = { WG, STYLE: options.style === 'half' ? 0 : 1 };

  // (cos, sin) of every (row, pair), in float64 before rounding to f32.
  const half = dims / 2;
  const rotation = new Float32Array(L * half * 2);
  for (let l = 0; l < L; l++) {
    for (let i = 0; i < half; i++) {
      const angle = (offset + l) * base ** ((-2 * i) / dims);
      rotation[(l * half + i) * 2] = Math.cos(angle);
      rotation[(l * half + i) * 2 + 1] = Math.sin(angle);
    }
  }
  const rec = new Recording(ctx, 'rope');
  const table = rec.buffer(rotation.byteLength, 'rope:rotation');
  ctx.device.queue.writeBuffer(table, 0, rotation);
  const out = ctx.zeros(x.shape, x.dtype, 'rope:out');
  rec.dispatch({
    name: 'rope',
    sources: [elementPrelude(storage, true), ropeSource],
    constants,
    uniforms: { total: x.size, L, D, dims },
    bindings: [x.binding, table, out.binding],
    workgroups: Math.ceil(x.size / WG),
  });
  await rec.submit();
  return out;
}

/** Validates x and the options of `rope`; returns them with defaults filled in. */
export function checkRopeInputs(
  x: Tensor,
  options: RopeOptions,
): { dims: number; base: number; offset: number } {
  checkOptions('rope', options, OPTION_KEYS);
  expectTensor('rope: x', x);
  x.assertUsable('rope: x');
  expectRank('rope: x', x.shape, 4, 'B, H, L, D');
  if (x.dtype !== 'f32' && x.dtype !== 'f16') {
    throw new Error(`rope: x must have dtype 'f32' or 'f16', received '${x.dtype}'`);
  }
  return checkRopeSettings('rope', x.shape[3], options);
}
