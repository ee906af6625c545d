// One attention case, run on the GPU and on the float64 reference, shared by the f16, decode and
// KV-cache specs (the kernels differ, the contract does not).
import type {
  AttentionOptions,
  AttentionPlan,
  AttentionResult,
  AttentionShape,
  Context,
  DropoutOptions,
  Tensor,
} from '../src';
import { f16ToFloat32, float32ToF16, planAttention } from '../src';
import { attentionCpu, type HostTensor } from '../src/reference';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, randomMask, rng } from './helpers';

export interface Case extends AttentionShape {
  dtype?: 'f32' | 'f16';
  causal?: boolean;
  /** shape of a mask broadcast to [B, Hq, Lq, Lk] */
  mask?: { kind: 'bool' | 'additive'; shape: number[]; pTrue?: number };
  scale?: number;
  /** multiplies q and k: large values give large logits */
  magnitude?: number;
  seed?: number;
  /** 'blhd': q, k, v and the output go to the GPU as [B, L, H, D] (transposed here, on the CPU) */
  layout?: 'bhld' | 'blhd';
  dropout?: DropoutOptions;
}

/** A [B, X, Y, D] array as [B, Y, X, D] (its own inverse: bhld <-> blhd). */
export function swapAxes12(data: ArrayLike<number>, [B, X, Y, D]: readonly number[]): Float32Array {
  const out = new Float32Array(B * X * Y * D);
  for (let b = 0; b < B; b++)
    for (let x = 0; x < X; x++)
      for (let y = 0; y < Y; y++)
        for (let d = 0; d < D; d++) out[((b * Y + y) * X + x) * D + d] = data[((b * X + x) * Y + y) * D + d];
  return out;
}

/** A host tensor [B, H, L, D] in `layout`. */
export function inLayout(t: HostTensor, layout: 'bhld' | 'blhd' = 'bhld'): HostTensor {
  if (layout === 'bhld') return t;
  const [B, H, L, D] = t.shape;
  return { ...t, data: swapAxes12(t.data as ArrayLike<number>, t.shape), shape: [B, L, H, D] };
}

export type AttentionFn = (
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: AttentionOptions,
) => Promise<AttentionResult>;

/** `data` rounded to the nearest f16 values, as an f16 tensor stores it. */
export function roundToF16(data: Float32Array): Float32Array {
  return f16ToFloat32(float32ToF16(data));
}

/** Seeded q, k, v and mask of a case, rounded to f16 when the case is f16. */
export function caseInputs(c: Case): { q: HostTensor; k: HostTensor; v: HostTensor; mask?: HostTensor } {
  const random = rng(c.seed ?? 1);
  const mag = c.magnitude ?? 1;
  const round = (x: Float32Array) => (c.dtype === 'f16' ? roundToF16(x) : x);
  const q = { data: round(randomArray(random, c.B * c.Hq * c.Lq * c.D, mag)), shape: [c.B, c.Hq, c.Lq, c.D] };
  const k = {
    data: round(randomArray(random, c.B * c.Hkv * c.Lk * c.D, mag)),
    shape: [c.B, c.Hkv, c.Lk, c.D],
  };
  const v = { data: round(randomArray(random, c.B * c.Hkv * c.Lk * c.Dv)), shape: [c.B, c.Hkv, c.Lk, c.Dv] };
  if (!c.mask) return { q, k, v };
  const n = c.mask.shape.reduce((a, b) => a * b, 1);
  if (c.mask.kind === 'bool') {
    return {
      q,
      k,
      v,
      mask: { data: randomMask(random, n, c.mask.pTrue ?? 0.7), shape: c.mask.shape, dtype: 'bool' },
    };
  }
  const data = randomArray(random, n, 2);
  const drop = randomMask(random, n, 1 - (c.mask.pTrue ?? 0.8));
  for (let i = 0; i < n; i++) if (drop[i]) data[i] = Number.NEGATIVE_INFINITY;
  return { q, k, v, mask: { data, shape: c.mask.shape, dtype: 'f32' } };
}

/**
 * The kernel form a plan runs (undefined for a plan of blocks x chunks, whose parts vary, and for
 * an empty one).
 */
export function kernelOf(plan: AttentionPlan): string | undefined {
  if (plan.path === 'heads') return plan.group.kernel;
  return plan.path === 'blocks' || plan.path === 'empty' ? undefined : plan.kernel;
}

/**
 * Runs `c` through `fn` on `ctx` and through `attentionCpu`, and compares output and lse (and the
 * weights when asked) with the tolerance of the case's dtype. Frees everything it made. Returns
 * the plan `attention` makes for the case.
 */
export async function checkCase(
  ctx: Context,
  fn: AttentionFn,
  c: Case,
  outputs: { lse?: boolean; weights?: boolean } = { lse: true },
): Promise<AttentionPlan> {
  const inputs = caseInputs(c);
  const ref = attentionCpu(inputs.q, inputs.k, inputs.v, {
    causal: c.causal,
    scale: c.scale,
    mask: inputs.mask,
    dropout: c.dropout,
  });
  const dtype = c.dtype ?? 'f32';
  const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
  const made: Tensor[] = [];
  const up = (h: HostTensor, dt = h.dtype ?? dtype) => {
    const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: dt });
    made.push(t);
    return t;
  };
  const plan = await checked(ctx, async () => {
    const [q, k, v] = [inputs.q, inputs.k, inputs.v].map((t) => up(inLayout(t, c.layout)));
    const options = {
      layout: c.layout,
      causal: c.causal,
      scale: c.scale,
      mask: inputs.mask ? up(inputs.mask) : undefined,
      dropout: c.dropout,
      returnLse: outputs.lse,
      returnWeights: outputs.weights,
    };
    const plan = planAttention(q, k, v, options);
    const result = await fn(q, k, v, options);
    made.push(
      result.output,
      ...(result.lse ? [result.lse] : []),
      ...(result.weights ? [result.weights] : []),
    );
    const label = JSON.stringify(c);
    if (result.output.dtype !== dtype) throw new Error(`${label}: output dtype ${result.output.dtype}`);
    const output = await result.output.read();
    const bhld = c.layout === 'blhd' ? swapAxes12(output, result.output.shape) : output;
    expectClose(bhld, ref.output.data, tol, `${label} output`);
    if (outputs.lse) expectClose(await result.lse!.read(), ref.lse.data, tol, `${label} lse`);
    if (outputs.weights) expectClose(await result.weights!.read(), ref.weights.data, tol, `${label} weights`);
    return plan;
  });
  for (const t of made) t.destroy();
  return plan;
}
