// Contexts whose limits are set low on purpose: work is folded or split and gives the same result.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  attention,
  attentionBackward,
  type Context,
  KVCache,
  planAttentionBackward,
  type Tensor,
} from '../src';
import { attentionBackwardCpu, attentionCpu, type HostTensor } from '../src/reference';
import {
  type Case as AttentionCase,
  caseInputs,
  checkCase,
  inLayout,
  roundToF16,
  swapAxes12,
} from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, randomMask, rng, testContext } from './helpers';

let folded: Context;
let small: Context;
/** Largest buffer any dispatch on `small` bound: shows the split really happened. */
let largestBinding = 0;

/** Makes `ctx` note the largest storage binding of every dispatch in `largestBinding`. */
function trackBindings(ctx: Context): void {
  const { device } = ctx;
  const createBindGroup = device.createBindGroup.bind(device);
  device.createBindGroup = (descriptor) => {
    for (const e of descriptor.entries) {
      const { buffer, size } = e.resource as GPUBufferBinding;
      if (e.binding > 0) largestBinding = Math.max(largestBinding, size ?? buffer.size);
    }
    return createBindGroup(descriptor);
  };
}

beforeAll(async () => {
  folded = await testContext({ limits: { maxComputeWorkgroupsPerDimension: 3 } });
  small = await testContext({ limits: { maxStorageBufferBindingSize: 4096 } });
  trackBindings(small);
});
afterAll(() => {
  folded?.destroy();
  small?.destroy();
});

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  causal: boolean;
  /** shape of a bool mask, or none */
  mask?: number[];
  /** the mask is additive (f32) rather than bool */
  additive?: boolean;
  /** q, k, v and the output as [B, L, H, D] */
  layout?: 'blhd';
}

async function compare(ctx: Context, c: Case) {
  const random = rng(c.B * 1000 + c.Lq);
  const shapes = { q: [c.B, c.Hq, c.Lq, c.D], k: [c.B, c.Hkv, c.Lk, c.D] };
  const qd = randomArray(
    random,
    shapes.q.reduce((a, b) => a * b),
  );
  const kd = randomArray(
    random,
    shapes.k.reduce((a, b) => a * b),
  );
  const vd = randomArray(
    random,
    shapes.k.reduce((a, b) => a * b),
  );
  const maskSize = c.mask?.reduce((a, b) => a * b) ?? 0;
  const md = c.mask
    ? c.additive
      ? randomArray(random, maskSize, 3)
      : randomMask(random, maskSize, 0.8)
    : undefined;
  const dtype = c.additive ? 'f32' : 'bool';
  const ref = attentionCpu(
    { data: qd, shape: shapes.q },
    { data: kd, shape: shapes.k },
    { data: vd, shape: shapes.k },
    { causal: c.causal, mask: md && c.mask ? { data: md, shape: c.mask, dtype } : undefined },
  );
  await checked(ctx, async () => {
    const up = (data: Float32Array, shape: number[]) => {
      const t = inLayout({ data, shape }, c.layout);
      return ctx.tensor(t.data as Float32Array, t.shape);
    };
    const [q, k, v] = [up(qd, shapes.q), up(kd, shapes.k), up(vd, shapes.k)];
    const mask = md && c.mask ? ctx.tensor(md, c.mask, { dtype }) : undefined;
    const options = { causal: c.causal, mask, returnLse: true, layout: c.layout };
    const { output, lse } = await attention(q, k, v, options);
    const out = await output.read();
    expectClose(c.layout ? swapAxes12(out, output.shape) : out, ref.output.data, F32_TOL, 'output');
    expectClose(await lse!.read(), ref.lse.data, F32_TOL, 'lse');
    for (const t of [q, k, v, mask, output, lse]) t?.destroy();
  });
}

describe('maxComputeWorkgroupsPerDimension = 3', () => {
  it('the context reports the lowered limit', () => {
    expect(folded.limits.maxComputeWorkgroupsPerDimension).toBe(3);
  });
  it('a grid of 2 x 4 x 2 workgroups is folded', () =>
    compare(folded, { B: 2, Hq: 4, Hkv: 2, Lq: 70, Lk: 9, D: 4, causal: true, mask: [2, 1, 1, 9] }));
});

describe('maxStorageBufferBindingSize = 4 KiB', () => {
  it('inputs larger than a binding are split by batch and head', async () => {
    largestBinding = 0;
    // q is 7,680 bytes; the mask [B, Hq, Lq, Lk] is sliced with the heads
    await compare(small, { B: 2, Hq: 6, Hkv: 3, Lq: 20, Lk: 40, D: 8, causal: false, mask: [2, 6, 20, 40] });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it("layout 'blhd': groups of heads are runs of each row, copied and written back", async () => {
    largestBinding = 0;
    const c = { B: 2, Hq: 6, Hkv: 3, Lq: 20, Lk: 40, D: 8, causal: true, mask: [2, 6, 20, 40] };
    await compare(small, { ...c, layout: 'blhd' });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('GQA groups and causal across split groups', async () => {
    largestBinding = 0;
    await compare(small, { B: 3, Hq: 4, Hkv: 1, Lq: 16, Lk: 24, D: 12, causal: true, mask: [24] });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('k and v read in place from a KV cache (strided views) are split correctly', async () => {
    const random = rng(21);
    const [qd, kd, vd] = [
      randomArray(random, 4 * 40 * 8),
      randomArray(random, 40 * 8),
      randomArray(random, 40 * 8),
    ];
    const kvShape = [1, 2, 20, 8];
    const ref = attentionCpu(
      { data: qd, shape: [1, 4, 40, 8] },
      { data: kd, shape: kvShape },
      { data: vd, shape: kvShape },
    );
    // capacity 32 > 20 rows: the second kv head starts 32 rows in, not 20
    const cache = new KVCache(small, { batch: 1, kvHeads: 2, headDim: 8, capacity: 32 });
    const step = [small.tensor(kd, kvShape), small.tensor(vd, kvShape)];
    largestBinding = 0;
    await checked(small, async () => {
      const { k, v } = await cache.append(step[0], step[1]);
      const q = small.tensor(qd, [1, 4, 40, 8]); // 5,120 bytes: split
      const { output } = await attention(q, k, v);
      expectClose(await output.read(), ref.output.data, F32_TOL, 'output');
      for (const t of [q, output, ...step]) t.destroy();
    });
    expect(largestBinding).toBeLessThanOrEqual(4096);
    cache.destroy();
  });
  // One head [128, 16] f32 is 8 KiB: queries run in blocks against chunks of keys, merged by lse.
  it('one head larger than a binding is split into query blocks and key chunks', async () => {
    largestBinding = 0;
    const live = small.liveBytes;
    await compare(small, { B: 1, Hq: 1, Hkv: 1, Lq: 128, Lk: 128, D: 16, causal: false });
    expect(largestBinding).toBeLessThanOrEqual(4096);
    expect(small.liveBytes).toBe(live); // every slice, partial and merged block is freed
  });
  it('one head split: causal (Lq < Lk), GQA and a bool mask [Lq, Lk]', async () => {
    largestBinding = 0;
    await compare(small, { B: 1, Hq: 2, Hkv: 1, Lq: 100, Lk: 136, D: 16, causal: true, mask: [100, 136] });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it("one head split, layout 'blhd': GQA, causal", async () => {
    largestBinding = 0;
    await compare(small, { B: 1, Hq: 2, Hkv: 1, Lq: 100, Lk: 136, D: 16, causal: true, layout: 'blhd' });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('one head split: causal with Lq > Lk (rows attending nothing) and an additive mask', async () => {
    largestBinding = 0;
    await compare(small, {
      B: 2,
      Hq: 1,
      Hkv: 1,
      Lq: 136,
      Lk: 100,
      D: 16,
      causal: true,
      mask: [2, 1, 136, 100],
      additive: true,
    });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('one head split: few queries against 256-key chunks run the decode kernel with its causal shift', async () => {
    largestBinding = 0;
    // k [300, 4] is 4,800 bytes; blocks of 4 rows keep the decode kernel's partials within 4 KiB
    await compare(small, { B: 1, Hq: 1, Hkv: 1, Lq: 6, Lk: 300, D: 4, causal: true, mask: [300] });
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('one head split: a NaN in q keeps its output row NaN, its lse non-finite, like an unsplit call', async () => {
    const random = rng(5);
    const [qd, kd] = [randomArray(random, 128 * 16), randomArray(random, 128 * 16)];
    qd[70 * 16 + 3] = Number.NaN;
    await checked(small, async () => {
      const q = small.tensor(qd, [1, 1, 128, 16]);
      const k = small.tensor(kd, [1, 1, 128, 16]);
      const { output, lse } = await attention(q, k, k, { returnLse: true });
      const [out, l] = [await output.read(), await lse!.read()];
      expect(out.slice(70 * 16, 71 * 16).every(Number.isNaN)).toBe(true);
      expect(Number.isFinite(l[70])).toBe(false);
      expect(Number.isFinite(l[69])).toBe(true);
      for (const t of [q, k, output, lse]) t?.destroy();
    });
  });
  // Slices of f16 and bool tensors that do not start or end on a 4-byte word are copied by a
  // kernel (copy_bytes.wgsl), not by copyBufferToBuffer.
  it('groups of heads: f16 rows of 5 halves and a bool mask of 4095 bytes per head', async () => {
    largestBinding = 0;
    const c = { B: 1, Hq: 3, Hkv: 1, Lq: 45, Lk: 91, D: 5, Dv: 3, dtype: 'f16' as const, causal: true };
    const plan = await checkCase(small, attention, { ...c, mask: { kind: 'bool', shape: [1, 3, 45, 91] } });
    expect(plan.path).toBe('heads');
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('blocks: mask rows of 137 bytes and f16 heads of odd sizes', async () => {
    largestBinding = 0;
    const c = { B: 1, Hq: 1, Hkv: 1, Lq: 100, Lk: 137, D: 7, Dv: 5, dtype: 'f16' as const };
    const plan = await checkCase(small, attention, { ...c, mask: { kind: 'bool', shape: [100, 137] } });
    expect(plan.path).toBe('blocks');
    expect(largestBinding).toBeLessThanOrEqual(4096);
  });
  it('one head split: returnWeights is refused with a clear error', async () => {
    const q = small.tensor(new Float32Array(2048), [1, 1, 128, 16]);
    await expect(attention(q, q, q, { returnWeights: true })).rejects.toThrow(
      'attention: returnWeights is not supported when one head needs more than maxStorageBufferBindingSize (4096 bytes), received true for q [128, 16], k [128, 16], v [128, 16]',
    );
    q.destroy();
  });
});

/** A backward case: the shape, mask and dtype of `AttentionCase`, and sparse options. */
interface BackwardCase extends AttentionCase {
  options?: { sinks?: number[]; window?: [number, number] };
  path: 'heads' | 'blocks';
}

// Every binding of the backward within 4 KiB: units of heads (all rows and keys) or of one head's
// row and key blocks; dq, dk, dv (and dsinks) summed over the units. The forward splits too.
describe.each<AttentionKernel>(['workgroup', 'registers'])(
  'attentionBackward split to fit 4 KiB bindings, %s form',
  (form) => {
    let ctx: Context;
    beforeAll(async () => {
      ctx = await testContext({ limits: { maxStorageBufferBindingSize: 4096 }, attentionKernel: form });
      trackBindings(ctx);
    });
    afterAll(() => ctx?.destroy());

    async function checkBackward(c: BackwardCase) {
      const inputs = caseInputs(c);
      const dtype = c.dtype ?? 'f32';
      const dOData = randomArray(rng(99), c.B * c.Hq * c.Lq * c.Dv);
      const dO: HostTensor = {
        data: dtype === 'f16' ? roundToF16(dOData) : dOData,
        shape: [c.B, c.Hq, c.Lq, c.Dv],
      };
      const sparse = c.options ?? {};
      const ref = attentionBackwardCpu(inputs.q, inputs.k, inputs.v, dO, {
        causal: c.causal,
        mask: inputs.mask,
        ...sparse,
      });
      const made: Tensor[] = [];
      const up = (h: HostTensor, dt = h.dtype ?? dtype) => {
        const t = ctx.tensor(h.data as Float32Array, h.shape, { dtype: dt });
        made.push(t);
        return t;
      };
      largestBinding = 0;
      const live = ctx.liveBytes;
      await checked(ctx, async () => {
        const [q, k, v] = [up(inputs.q), up(inputs.k), up(inputs.v)];
        const options = { causal: c.causal, mask: inputs.mask && up(inputs.mask), ...sparse };
        const f = await attention(q, k, v, { ...options, returnLse: true });
        made.push(f.output, f.lse);
        const dOutput = up(dO);
        const backward = { ...options, lse: f.lse };
        expect(planAttentionBackward(q, k, v, f.output, dOutput, backward).path).toBe(c.path);
        const g = await attentionBackward(q, k, v, f.output, dOutput, backward);
        made.push(g.dq, g.dk, g.dv, ...(g.dsinks ? [g.dsinks] : []));
        const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
        for (const name of ['dq', 'dk', 'dv'] as const) {
          expectClose(await g[name].read(), ref[name].data, tol, name);
        }
        expect(g.dsinks === undefined).toBe(ref.dsinks === undefined);
        if (g.dsinks && ref.dsinks) expectClose(await g.dsinks.read(), ref.dsinks.data, tol, 'dsinks');
      });
      for (const t of made) t.destroy();
      expect(largestBinding).toBeLessThanOrEqual(4096);
      expect(ctx.liveBytes).toBe(live); // every slice and sum is freed
    }

    // D 16, Dv 8 and an additive mask in every case of both forms: one configuration of each
    // kernel to compile (a registers backward kernel takes SwiftShader 10-20 s to compile)
    const shape = { D: 16, Dv: 8 };
    // 2 query heads per unit: dk, dv of the kv head sum over two units
    it('MQA heads split inside a kv group, causal Lq < Lk, additive mask [B, 1, 1, Lk]', () =>
      checkBackward({
        B: 2,
        Hq: 4,
        Hkv: 1,
        Lq: 24,
        Lk: 32,
        ...shape,
        causal: true,
        mask: { kind: 'additive', shape: [2, 1, 1, 32] },
        path: 'heads',
      }));
    it('GQA in row and key blocks, causal Lq < Lk, additive mask [Lq, Lk]', () =>
      checkBackward({
        B: 1,
        Hq: 2,
        Hkv: 1,
        Lq: 72,
        Lk: 100,
        ...shape,
        causal: true,
        mask: { kind: 'additive', shape: [72, 100] },
        path: 'blocks',
      }));
    it('sinks and a window in blocks: dsinks sums over the row blocks', () =>
      checkBackward({
        B: 1,
        Hq: 2,
        Hkv: 1,
        Lq: 80,
        Lk: 40,
        ...shape,
        mask: { kind: 'additive', shape: [40], pTrue: 0.9 },
        options: { sinks: [0.5, -1], window: [8, 3] },
        path: 'blocks',
      }));
    // The split is the same in both forms: these run in the faster-compiling one only.
    if (form === 'workgroup') {
      it('no options, one head in row and key blocks', () =>
        checkBackward({ B: 1, Hq: 1, Hkv: 1, Lq: 70, Lk: 90, ...shape, path: 'blocks' }));
      it('f16 in blocks with a bool mask of odd rows (copied by a kernel)', () =>
        checkBackward({
          B: 1,
          Hq: 1,
          Hkv: 1,
          Lq: 70,
          Lk: 63,
          ...shape,
          dtype: 'f16',
          mask: { kind: 'bool', shape: [70, 63] },
          path: 'blocks',
        }));
      it('f16 in blocks, causal Lq > Lk (rows that attend nothing)', () =>
        checkBackward({
          B: 1,
          Hq: 2,
          Hkv: 2,
          Lq: 100,
          Lk: 64,
          ...shape,
          dtype: 'f16',
          causal: true,
          path: 'blocks',
        }));
    }
  },
);
