// Using the app's own device, buffers and encoders: wrapped ranges, `out` tensors, recording into
// an app encoder, ahead-of-time compiles, and the errors that replace silent zeros.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attention,
  type Context,
  createContext,
  deviceRequirements,
  linear,
  matmul,
  prepareAttention,
  softmax,
  type Tensor,
} from '../src';
import { attentionCpu, matmulCpu } from '../src/reference';
import { Usage } from '../src/usage';
import { caseInputs } from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

const STORAGE_RW = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

/** An app buffer holding `parts` one after another, each starting at a multiple of 256 bytes. */
function packed(parts: Float32Array<ArrayBuffer>[]): { buffer: GPUBuffer; offsets: number[] } {
  const offsets: number[] = [];
  let size = 0;
  for (const p of parts) {
    offsets.push(size);
    size += Math.ceil(p.byteLength / 256) * 256;
  }
  const buffer = ctx.device.createBuffer({ size, usage: STORAGE_RW, label: 'app:packed' });
  parts.forEach((p, i) => {
    ctx.device.queue.writeBuffer(buffer, offsets[i], p);
  });
  return { buffer, offsets };
}

describe('wrapped ranges of an app buffer', () => {
  it('attention reads q, k and v from one packed buffer and writes into a range of another', async () => {
    const c = { B: 1, Hq: 2, Hkv: 2, Lq: 16, Lk: 16, D: 8, Dv: 8, causal: true };
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v, { causal: true });
    const qkv = packed([q.data, k.data, v.data] as Float32Array<ArrayBuffer>[]);
    const outBuffer = ctx.device.createBuffer({ size: 512 + 1024, usage: STORAGE_RW, label: 'app:out' });
    const shape = [1, 2, 16, 8];
    await checked(ctx, async () => {
      const [tq, tk, tv] = qkv.offsets.map((offset) => ctx.wrap(qkv.buffer, shape, { offset }));
      const out = ctx.wrap(outBuffer, shape, { offset: 512 });
      const r = await attention(tq, tk, tv, { causal: true, out: { output: out } });
      expect(r.output).toBe(out);
      expectClose(await out.read(), ref.output.data, F32_TOL, 'wrapped ranges');
    });
    qkv.buffer.destroy();
    outBuffer.destroy();
  });

  it('matmul, softmax and linear read and write wrapped ranges', async () => {
    const random = rng(4);
    const a = randomArray(random, 6 * 5);
    const b = randomArray(random, 5 * 7);
    // inputs in one buffer, results in another: WebGPU forbids binding one buffer both read-only
    // and writable in a dispatch
    const inputs = packed([a, b]);
    const results = packed([new Float32Array(6 * 7), new Float32Array(6 * 7)]);
    await checked(ctx, async () => {
      const ta = ctx.wrap(inputs.buffer, [6, 5]);
      const tb = ctx.wrap(inputs.buffer, [5, 7], { offset: inputs.offsets[1] });
      const c = ctx.wrap(results.buffer, [6, 7]);
      await matmul(ta, tb, { out: c });
      const ref = matmulCpu({ data: a, shape: [6, 5] }, { data: b, shape: [5, 7] });
      expectClose(await c.read(), ref.data, F32_TOL, 'matmul');
      const s = await softmax(ctx.wrap(inputs.buffer, [6, 5]), {
        out: ctx.wrap(results.buffer, [6, 5], { offset: results.offsets[1] }),
      });
      expect(s.shape).toEqual([6, 5]);
      const w = ctx.wrap(inputs.buffer, [7, 5], { offset: inputs.offsets[1] });
      const y = await linear(ctx.wrap(inputs.buffer, [1, 6, 5]), w);
      expect(y.shape).toEqual([1, 6, 7]);
      y.destroy();
    });
    for (const app of [inputs, results]) app.buffer.destroy();
  });

  it('an f16 out tensor reused across calls is cleared first (packed halves are ORed in)', async () => {
    const c = { B: 1, Hq: 1, Hkv: 1, Lq: 3, Lk: 5, D: 4, Dv: 3, dtype: 'f16' as const };
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v);
    const up = (h: typeof q) => ctx.tensor(h.data as Float32Array, h.shape, { dtype: 'f16' });
    const [tq, tk, tv] = [up(q), up(k), up(v)];
    const out = ctx.zeros([1, 1, 3, 3], 'f16');
    await checked(ctx, async () => {
      for (let i = 0; i < 2; i++) await attention(tq, tk, tv, { out: { output: out } });
      expectClose(await out.read(), ref.output.data, F16_TOL, 'second call into the same out');
    });
    for (const t of [tq, tk, tv, out]) t.destroy();
  });
});

describe("recording into the app's command encoder", () => {
  it('runs nothing until the app submits, then gives the reference result', async () => {
    const c = { B: 1, Hq: 2, Hkv: 1, Lq: 5, Lk: 40, D: 8, Dv: 8 };
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v);
    const [tq, tk, tv] = [q, k, v].map((h) => ctx.tensor(h.data as Float32Array, h.shape));
    await checked(ctx, async () => {
      const encoder = ctx.device.createCommandEncoder({ label: 'app' });
      const { output } = await attention(tq, tk, tv, { encoder });
      expect(await output.read()).toEqual(new Float32Array(output.size)); // not submitted yet
      ctx.device.queue.submit([encoder.finish()]);
      expectClose(await output.read(), ref.output.data, F32_TOL, 'after the app submitted');
      output.destroy();
    });
    for (const t of [tq, tk, tv]) t.destroy();
  });

  it('a decode call (scratch partials) recorded into an encoder still gives the reference result', async () => {
    const c = { B: 1, Hq: 2, Hkv: 2, Lq: 1, Lk: 300, D: 8, Dv: 8 };
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v);
    const [tq, tk, tv] = [q, k, v].map((h) => ctx.tensor(h.data as Float32Array, h.shape));
    const before = ctx.liveBytes;
    const encoder = ctx.device.createCommandEncoder({ label: 'app' });
    const { output } = await attention(tq, tk, tv, { encoder });
    expect(ctx.liveBytes - before).toBe(output.buffer.size); // scratch is not counted as live
    ctx.device.queue.submit([encoder.finish()]);
    expectClose(await output.read(), ref.output.data, F32_TOL, 'decode into an encoder');
    for (const t of [tq, tk, tv, output]) t.destroy();
  });
});

describe('errors instead of silent zeros', () => {
  it('wrap needs GPUBufferUsage.STORAGE and an aligned offset', () => {
    const plain = ctx.device.createBuffer({ size: 1024, usage: Usage.COPY_DST });
    expect(() => ctx.wrap(plain, [4])).toThrow(
      'wrap: the buffer needs GPUBufferUsage.STORAGE (and COPY_SRC to be read back), received usage COPY_DST',
    );
    const storage = ctx.device.createBuffer({ size: 1024, usage: Usage.STORAGE });
    expect(() => ctx.wrap(storage, [4], { offset: 16 })).toThrow(
      /wrap: offset must be a multiple of minStorageBufferOffsetAlignment \(\d+ bytes on this device\), received 16/,
    );
    expect(() => ctx.wrap(storage, [300], { offset: 256 })).toThrow(
      'wrap: buffer has 1024 bytes, expected at least 1456 for f32 shape [300] at offset 256',
    );
    plain.destroy();
    storage.destroy();
  });

  it('read() of a wrapped buffer without COPY_SRC throws instead of returning zeros', async () => {
    const storage = ctx.device.createBuffer({ size: 64, usage: Usage.STORAGE });
    await expect(ctx.wrap(storage, [4]).read()).rejects.toThrow(
      "read: the tensor's buffer needs GPUBufferUsage.COPY_SRC to be read back, received usage STORAGE",
    );
    storage.destroy();
  });

  it('a destroyed app buffer rejects the call with the WebGPU message', async () => {
    const buffer = ctx.device.createBuffer({ size: 256, usage: STORAGE_RW });
    const t = ctx.wrap(buffer, [1, 1, 2, 4]);
    buffer.destroy();
    await expect(attention(t, t, t)).rejects.toThrow(/attention: WebGPU error: .*destroyed/i);
  });

  it('a buffer of another device rejects the call with the WebGPU message', async () => {
    const other = await testContext();
    const foreign = other.device.createBuffer({ size: 256, usage: STORAGE_RW });
    const t = ctx.wrap(foreign, [1, 1, 2, 4]);
    await expect(attention(t, t, t)).rejects.toThrow(/attention: WebGPU error:/);
    foreign.destroy();
    other.destroy();
  });

  it('a plain array where a tensor belongs says so', async () => {
    const t = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    await expect(attention([1, 2, 3] as unknown as Tensor, t, t)).rejects.toThrow(
      'attention: q: expected a Tensor (upload data with ctx.tensor(data, shape)), received an array of length 3',
    );
    await expect(matmul(t, new Float32Array(4) as unknown as Tensor)).rejects.toThrow(
      'matmul: b: expected a Tensor (upload data with ctx.tensor(data, shape)), received a Float32Array',
    );
    t.destroy();
  });

  it('an out tensor of the wrong shape or dtype is refused', async () => {
    const t = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    const wrong = ctx.zeros([1, 1, 2, 3]);
    await expect(attention(t, t, t, { out: { output: wrong } })).rejects.toThrow(
      'attention: out.output: expected a f32 tensor of shape [1, 1, 2, 4], received f32 [1, 1, 2, 3]',
    );
    for (const x of [t, wrong]) x.destroy();
  });
});

describe('the device and its pipelines', () => {
  it('deviceRequirements lists what the library would request, and a device made with it lacks nothing', async () => {
    const adapter = (await navigator.gpu.requestAdapter())!;
    const { requiredFeatures, requiredLimits } = deviceRequirements(adapter);
    for (const f of requiredFeatures) expect(adapter.features.has(f)).toBe(true);
    expect(requiredLimits.maxStorageBufferBindingSize).toBe(adapter.limits.maxStorageBufferBindingSize);
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    const app = await createContext({ device, adapter });
    for (const f of requiredFeatures) expect(app.features.has(f)).toBe(true);
    app.destroy();
    device.destroy();
  });

  it('prepareAttention compiles the pipelines of a call ahead of it', async () => {
    const fresh = await testContext();
    const shapes = { q: [1, 2, 1, 8], k: [1, 2, 300, 8], v: [1, 2, 300, 8] };
    await prepareAttention(fresh, [
      shapes,
      { q: [1, 2, 9, 8], k: [1, 2, 9, 8], v: [1, 2, 9, 8], options: { causal: true } },
    ]);
    const modules: string[] = [];
    const create = fresh.device.createShaderModule.bind(fresh.device);
    fresh.device.createShaderModule = (d) => {
      modules.push(d.label ?? '');
      return create(d);
    };
    const q = fresh.zeros(shapes.q);
    const kv = fresh.zeros(shapes.k);
    const p = fresh.zeros([1, 2, 9, 8]);
    const results = [await attention(q, kv, kv), await attention(p, p, p, { causal: true })];
    expect(modules).toEqual([]); // everything was compiled already
    for (const t of [q, kv, p, ...results.map((r) => r.output)]) t.destroy();
    fresh.destroy();
  });
});
