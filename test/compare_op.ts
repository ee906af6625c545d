// One helper that compares any op with its float64 reference (tinygrad's helper_test_op): the
// specs describe cases as data and each op's spec only says how to call the op and the reference.
import { expect } from 'vitest';
import { type Context, type DType, f16ToFloat32, float32ToF16, type Tensor } from '../src';
import type { HostResult, HostTensor } from '../src/reference';
import { checked, expectClose, F16_TOL, F32_TOL } from './helpers';

export interface OpCheck<Name extends string> {
  /** Named inputs. Float inputs take `dtype` (default f32); f16 ones are rounded first, so that the reference sees the halves the GPU reads. */
  inputs: Record<Name, HostTensor>;
  dtype?: 'f32' | 'f16';
  /** The op on the uploaded inputs. */
  gpu: (t: Record<Name, Tensor>) => Promise<Tensor>;
  /** The float64 reference on the same inputs. */
  ref: (h: Record<Name, HostTensor>) => HostResult;
  /** Default: the f32 or f16 tolerance of DESIGN.md. */
  tol?: { atol: number; rtol: number };
  label: string;
}

/**
 * Runs `c.gpu` inside validation scopes and `c.ref`, and compares shape, dtype and values. Frees
 * every tensor it made, the result included.
 */
export async function compareOp<Name extends string>(ctx: Context, c: OpCheck<Name>): Promise<void> {
  const dtype = c.dtype ?? 'f32';
  const hosts = {} as Record<Name, HostTensor>;
  for (const [name, h] of Object.entries(c.inputs) as [Name, HostTensor][]) {
    const float = h.dtype !== 'bool';
    const data = float && dtype === 'f16' ? f16ToFloat32(float32ToF16(h.data as ArrayLike<number>)) : h.data;
    hosts[name] = { ...h, data, dtype: float ? dtype : 'bool' };
  }
  const expected = c.ref(hosts);
  const made: Tensor[] = [];
  await checked(ctx, async () => {
    const tensors = {} as Record<Name, Tensor>;
    for (const [name, h] of Object.entries(hosts) as [Name, HostTensor][]) {
      const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: h.dtype as DType });
      made.push(t);
      tensors[name] = t;
    }
    const out = await c.gpu(tensors);
    made.push(out);
    expect(out.shape, `${c.label}: shape`).toEqual(expected.shape);
    expect(out.dtype, `${c.label}: dtype`).toBe(dtype);
    expectClose(await out.read(), expected.data, c.tol ?? (dtype === 'f16' ? F16_TOL : F32_TOL), c.label);
  });
  for (const t of made) t.destroy();
}
