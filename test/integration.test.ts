// Using the app's own device, buffers and encoders: wrapped ranges, `out` tensors, recording into
// an app encoder, ahead-of-time compiles, and the errors that replace silent zeros.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  attention,
  attentionBackward,
  type Context,
  createContext,
  deviceRequirements,
  embedding,
  intTensor,
  KVCache,
  layerNorm,
  layerNormBackward,
  linear,
  matmul,
  prepareAttention,
  rope,
  ropeBackward,
  softmax,
  softmaxBackward,
  softmaxCrossEntropy,
  type Tensor,
} from '../src';
import {
  adamwStepCpu,
  attentionBackwardCpu,
  attentionCpu,
  embeddingCpu,
  layerNormBackwardCpu,
  layerNormCpu,
  matmulCpu,
  ropeCpu,
  softmaxBackwardCpu,
  softmaxCrossEntropyCpu,
} from '../src/reference';
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

describe('out and encoder on rope, the KV cache, attentionBackward and the training ops', () => {
  /** A tensor of `shape` full of 7s: an out tensor whose every element the op must write. */
  const stale = (shape: number[]) =>
    ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(7), shape);

  it('rope writes into out; rope and ropeBackward record into the app encoder, in order', async () => {
    const shape = [1, 2, 3, 8];
    const xd = randomArray(rng(31), 48);
    const ref = ropeCpu({ data: xd, shape }, { style: 'half', offset: 5 });
    const x = ctx.tensor(xd, shape);
    const [out, back] = [stale(shape), stale(shape)];
    await checked(ctx, async () => {
      const encoder = ctx.device.createCommandEncoder({ label: 'app' });
      expect(await rope(x, { style: 'half', offset: 5, out, encoder })).toBe(out);
      await ropeBackward(out, { style: 'half', offset: 5, out: back, encoder });
      expect(await out.read()).toEqual(new Float32Array(48).fill(7)); // not submitted yet
      ctx.device.queue.submit([encoder.finish()]);
      expectClose(await out.read(), ref.data, F32_TOL, 'rope into out');
      expectClose(await back.read(), xd, F32_TOL, 'ropeBackward of rope');
    });
    for (const t of [x, out, back]) t.destroy();
  });

  it('KVCache.append records into the app encoder, before attention on the cache', async () => {
    const c = { B: 1, Hq: 2, Hkv: 1, Lq: 3, Lk: 3, D: 8, Dv: 8 };
    const { q, k, v } = caseInputs(c);
    const ref = attentionCpu(q, k, v);
    const [tq, tk, tv] = [q, k, v].map((h) => ctx.tensor(h.data as Float32Array, h.shape));
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 8, capacity: 8 });
    await checked(ctx, async () => {
      const encoder = ctx.device.createCommandEncoder({ label: 'app' });
      const views = await cache.append(tk, tv, { encoder });
      expect(cache.length).toBe(3);
      const { output } = await attention(tq, views.k, views.v, { encoder });
      ctx.device.queue.submit([encoder.finish()]);
      expectClose(await output.read(), ref.output.data, F32_TOL, 'attention on the appended cache');
      output.destroy();
    });
    cache.destroy();
    for (const t of [tq, tk, tv]) t.destroy();
  });

  it('attentionBackward writes every element of out dq, dk, dv, dsinks and records into the app encoder', async () => {
    // head dims not multiples of 4: the 'workgroup' kernels, quicker to compile on SwiftShader
    const c = { B: 1, Hq: 2, Hkv: 1, Lq: 5, Lk: 7, D: 6, Dv: 3 };
    const { q, k, v } = caseInputs(c);
    const dOd = randomArray(rng(8), 2 * 5 * 3);
    const sinks = [0.5, -1];
    const ref = attentionBackwardCpu(q, k, v, { data: dOd, shape: [1, 2, 5, 3] }, { causal: true, sinks });
    const [tq, tk, tv] = [q, k, v].map((h) => ctx.tensor(h.data as Float32Array, h.shape));
    const dOutput = ctx.tensor(dOd, [1, 2, 5, 3]);
    const out = {
      dq: stale([1, 2, 5, 6]),
      dk: stale([1, 1, 7, 6]),
      dv: stale([1, 1, 7, 3]),
      dsinks: stale([2]),
    };
    await checked(ctx, async () => {
      const f = await attention(tq, tk, tv, { causal: true, sinks, returnLse: true });
      const encoder = ctx.device.createCommandEncoder({ label: 'app' });
      const g = await attentionBackward(tq, tk, tv, f.output, dOutput, {
        causal: true,
        sinks,
        lse: f.lse,
        out,
        encoder,
      });
      expect(g.dq).toBe(out.dq);
      ctx.device.queue.submit([encoder.finish()]);
      for (const name of ['dq', 'dk', 'dv', 'dsinks'] as const) {
        expectClose(await out[name].read(), ref[name]!.data, F32_TOL, name);
      }
      for (const t of [f.output, f.lse]) t.destroy();
    });
    for (const t of [tq, tk, tv, dOutput, ...Object.values(out)]) t.destroy();
  });

  it('the training ops write every element of their out tensors and record into the app encoder', async () => {
    const random = rng(12);
    const [R, F, V] = [3, 8, 5];
    const xd = randomArray(random, R * F);
    const wd = randomArray(random, F);
    const bd = randomArray(random, F);
    const dyd = randomArray(random, R * F);
    const ids = [4, 0, 2];
    const made = [xd, wd, bd, dyd].map((d, i) => ctx.tensor(d, i === 0 || i === 3 ? [R, F] : [F]));
    const [x, w, b, dy] = made;
    const table = ctx.tensor(randomArray(random, V * F), [V, F]);
    const tids = intTensor(ctx, ids, [R]);
    const targets = intTensor(ctx, [1, -1, 3], [R]); // -1: ignored
    const logits = ctx.tensor(randomArray(random, R * V), [R, V]);
    const param = ctx.tensor(wd, [F]);
    const opt = new AdamW([param], { lr: 0.1 });
    const outs = {
      norm: stale([R, F]),
      dx: stale([R, F]),
      dweight: stale([F]),
      dbias: stale([F]),
      embed: stale([R, F]),
      dsoftmax: stale([R, F]),
      loss: stale([1]),
      dlogits: stale([R, V]),
    };
    const host = (data: Float32Array, shape: number[]) => ({ data, shape });
    await checked(ctx, async () => {
      const encoder = ctx.device.createCommandEncoder({ label: 'app' });
      await layerNorm(x, w, b, { out: outs.norm, encoder });
      const gn = { dx: outs.dx, dweight: outs.dweight, dbias: outs.dbias };
      expect((await layerNormBackward(x, w, dy, { out: gn, encoder })).dweight).toBe(outs.dweight);
      await embedding(tids, table, { out: outs.embed, encoder });
      // y = the layerNorm's out, recorded above: ops in one encoder run in order
      await softmaxBackward(outs.norm, dy, { out: outs.dsoftmax, encoder });
      await softmaxCrossEntropy(logits, targets, {
        out: { loss: outs.loss, dlogits: outs.dlogits },
        encoder,
      });
      await opt.step([b], { encoder });
      ctx.device.queue.submit([encoder.finish()]);
      const norm = layerNormCpu(host(xd, [R, F]), host(wd, [F]), host(bd, [F]));
      expectClose(await outs.norm.read(), norm.data, F32_TOL, 'layerNorm');
      const gRef = layerNormBackwardCpu(host(xd, [R, F]), host(wd, [F]), host(dyd, [R, F]));
      expectClose(await outs.dx.read(), gRef.dx.data, F32_TOL, 'dx');
      expectClose(await outs.dweight.read(), gRef.dweight.data, F32_TOL, 'dweight');
      expectClose(await outs.dbias.read(), gRef.dbias!.data, F32_TOL, 'dbias');
      const table0 = await table.read();
      const e = embeddingCpu(host(Float32Array.from(ids), [R]), host(table0, [V, F]));
      expectClose(await outs.embed.read(), e.data, F32_TOL, 'embedding');
      const sm = softmaxBackwardCpu(host(await outs.norm.read(), [R, F]), host(dyd, [R, F]));
      expectClose(await outs.dsoftmax.read(), sm.data, F32_TOL, 'softmaxBackward');
      const ce = softmaxCrossEntropyCpu(
        host(await logits.read(), [R, V]),
        host(Float32Array.from([1, -1, 3]), [R]),
      );
      expectClose(await outs.loss.read(), [ce.loss], F32_TOL, 'loss');
      expectClose(await outs.dlogits.read(), ce.dlogits.data, F32_TOL, 'dlogits');
      const state = { param: Float64Array.from(wd), m: new Float64Array(F), v: new Float64Array(F) };
      adamwStepCpu(state, bd, 1, { lr: 0.1 });
      expectClose(await param.read(), state.param, F32_TOL, 'AdamW.step');
    });
    opt.destroy();
    for (const t of [...made, table, logits, param, ...Object.values(outs)]) t.destroy();
    tids.destroy();
    targets.destroy();
  });

  it('a destroyed app buffer into rope, the KV cache, attentionBackward or a training op rejects the call', async () => {
    const buffer = ctx.device.createBuffer({ size: 1024, usage: STORAGE_RW });
    const t4 = ctx.wrap(buffer, [1, 1, 2, 4]);
    const t2 = ctx.wrap(buffer, [2, 4]);
    const t1 = ctx.wrap(buffer, [4]);
    const dO3 = ctx.wrap(buffer, [1, 1, 2, 3]);
    buffer.destroy();
    const own = ctx.tensor(new Float32Array(8), [1, 1, 2, 4]);
    const lse = ctx.zeros([1, 1, 2]);
    const [q6, v3] = [ctx.zeros([1, 1, 2, 6]), ctx.zeros([1, 1, 2, 3])];
    const w = ctx.zeros([4]);
    const ids = intTensor(ctx, [0, 1], [2]);
    const cache = new KVCache(ctx, { batch: 1, kvHeads: 1, headDim: 4, capacity: 4 });
    const opt = new AdamW([t1]);
    const calls: [string, () => Promise<unknown>][] = [
      ['rope', () => rope(t4, { style: 'half' })],
      ['ropeBackward', () => ropeBackward(t4, { style: 'half' })],
      ['kv_cache_append', () => cache.append(t4, own)],
      // the shapes of the test above: its pipelines are compiled already
      ['attentionBackward', () => attentionBackward(q6, q6, v3, v3, dO3, { lse })],
      ['layerNorm', () => layerNorm(t2, w)],
      ['layerNormBackward', () => layerNormBackward(t2, w, t2)],
      ['embedding', () => embedding(ids, t2)],
      ['softmaxBackward', () => softmaxBackward(t2, t2)],
      ['softmaxCrossEntropy', () => softmaxCrossEntropy(t2, ids)],
      ['AdamW.step', () => opt.step([w])],
    ];
    for (const [label, call] of calls) {
      await expect(call(), label).rejects.toThrow(new RegExp(`${label}: WebGPU error: .*destroyed`, 'i'));
    }
    opt.destroy();
    cache.destroy();
    for (const t of [own, lse, w, q6, v3]) t.destroy();
    ids.destroy();
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
    // attention has several results: a bare tensor or a misspelt key would otherwise be ignored
    await expect(attention(t, t, t, { out: wrong as never })).rejects.toThrow(
      'attention: options.out must be an object { output?, lse?, weights? }, received a Tensor (write { output: tensor })',
    );
    await expect(attention(t, t, t, { out: { outputs: wrong } as never })).rejects.toThrow(
      "attention: options.out must be an object { output?, lse?, weights? }, received the key 'outputs'",
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
