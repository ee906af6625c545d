import ropeSource from '../../shaders/rope.wgsl?raw';
import { checkOptions } from '../checks';
import { elementPrelude, elementStorage } from '../f16';
import { Recording } from '../program';
import { checkRopeSettings, type RopeOptions } from '../reference/rope';
import { expectRank } from '../shape';
import type { Tensor } from '../tensor';

const OPTION_KEYS = ['style', 'base', 'dims', 'offset'] as const;
const WG = 64;

/**
 * Gradient of {@link rope} on the GPU: dy [B, H, L, D] -> dx [B, H, L, D] (dy's dtype), each pair
 * rotated by the negative angle (a rotation's transpose is its inverse); features past `dims` pass
 * through. Takes the forward's options. Runs rope's kernel with the sines negated.
 *
 * @example
 * const dq = await ropeBackward(dqRotated, { style: 'half' });
 */
export async function ropeBackward(dy: Tensor, options: RopeOptions): Promise<Tensor> {
  checkOptions('ropeBackward', options, OPTION_KEYS);
  dy.assertUsable('ropeBackward: dy');
  expectRank('ropeBackward: dy', dy.shape, 4, 'B, H, L, D');
  if (dy.dtype !== 'f32' && dy.dtype !== 'f16') {
    throw new Error(`ropeBackward: dy must have dtype 'f32' or 'f16', received '${dy.dtype}'`);
  }
  const [, , L, D] = dy.shape;
  const { dims, base, offset } = checkRopeSettings('ropeBackward', D, options);
  const { ctx } = dy;
  const half = dims / 2;
  // (cos, -sin) of every (row, pair), in float64 before rounding to f32
  const rotation = new Float32Array(L * half * 2);
  for (let l = 0; l < L; l++) {
    for (let i = 0; i < half; i++) {
      const angle = (offset + l) * base ** ((-2 * i) / dims);
      rotation[(l * half + i) * 2] = Math.cos(angle);
      rotation[(l * half + i) * 2 + 1] = -Math.sin(angle);
    }
  }
  const rec = new Recording(ctx, 'ropeBackward');
  const table = rec.buffer(rotation.byteLength, 'ropeBackward:rotation');
  ctx.device.queue.writeBuffer(table, 0, rotation);
  const dx = ctx.zeros(dy.shape, dy.dtype, 'ropeBackward:dx');
  rec.dispatch({
    name: 'rope',
    sources: [elementPrelude(elementStorage(ctx, dy.dtype), true), ropeSource],
    constants: { WG, STYLE: options.style === 'half' ? 0 : 1 },
    uniforms: { total: dy.size, L, D, dims },
    bindings: [dy.binding, table, dx.binding],
    workgroups: Math.ceil(dy.size / WG),
  });
  await rec.submit();
  return dx;
}
