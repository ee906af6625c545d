// Device loss, memory accounting and scopes, and many operations in flight at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attention,
  type Context,
  ContextDestroyedError,
  createContext,
  DeviceLostError,
  type Tensor,
} from '../src';
import { attentionCpu } from '../src/reference';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

describe('createContext options', () => {
  it('unknown options and limits throw, naming them', async () => {
    const typo = { gpu: navigator.gpu, limit: {} } as unknown as Parameters<typeof createContext>[0];
    await expect(createContext(typo)).rejects.toThrow(
      "createContext: unknown option 'limit', expected one of gpu, device, adapter, powerPreference, disableFeatures, limits, label, attentionKernel, autotune",
    );
    const badLimit = { limits: { maxBindingSize: 4 } } as unknown as Parameters<typeof createContext>[0];
    await expect(createContext(badLimit)).rejects.toThrow("createContext: unknown limit 'maxBindingSize'");
    await expect(createContext({ limits: { maxStorageBufferBindingSize: 0 } })).rejects.toThrow(
      'createContext: limits.maxStorageBufferBindingSize must be a positive integer, received 0',
    );
  });
  it('attentionKernel: a bad name throws; the default follows the adapter', async () => {
    const bad = { attentionKernel: 'fast' } as unknown as Parameters<typeof createContext>[0];
    await expect(createContext(bad)).rejects.toThrow(
      `createContext: options.attentionKernel must be one of 'workgroup', 'registers', 'tiled', 'matrix', received "fast"`,
    );
    const ctx = await createContext();
    const fallback = ctx.adapterInfo.isFallbackAdapter;
    // SwiftShader runs compute on the CPU: it counts as a fallback adapter
    if (ctx.adapterInfo.architecture === 'swiftshader') expect(fallback).toBe(true);
    expect(ctx.attentionKernel).toBe(fallback ? 'registers' : 'workgroup');
    ctx.destroy();
    const chosen = await createContext({ attentionKernel: 'workgroup' });
    expect(chosen.attentionKernel).toBe('workgroup');
    chosen.destroy();
  });
});

describe('device loss', () => {
  it('rejects pending reads, throws on new work at once, and a fresh context works', async () => {
    const ctx = await testContext();
    const random = rng(7);
    const shape = [1, 2, 64, 16];
    const n = shape.reduce((a, b) => a * b);
    const q = ctx.tensor(randomArray(random, n), shape);
    const { output } = await attention(q, q, q);
    const pending = output.read();
    ctx.device.destroy();
    await expect(pending).rejects.toThrow(/read: the GPU device is lost \(destroyed/);
    const info = await ctx.lost;
    expect(info.reason).toBe('destroyed');
    expect(ctx.isLost).toBe(true);
    expect(() => ctx.tensor(new Float32Array(4), [4])).toThrow(DeviceLostError);
    await expect(attention(q, q, q)).rejects.toThrow('attention: q: the GPU device is lost (destroyed');

    const fresh = await testContext();
    const t = fresh.tensor(new Float32Array([1, 2, 3, 4]), [1, 1, 1, 4]);
    const { output: o } = await checked(fresh, () => attention(t, t, t));
    expectClose(await o.read(), [1, 2, 3, 4], F32_TOL, 'fresh context');
    fresh.destroy();
  });

  it('destroy() ends the context synchronously', async () => {
    const ctx = await testContext();
    ctx.destroy();
    expect(ctx.isLost).toBe(true);
    expect(() => ctx.zeros([2])).toThrow(ContextDestroyedError);
    expect(() => ctx.zeros([2])).toThrow(
      'tensor: the context was destroyed (ctx.destroy()); create a new context',
    );
  });

  it('destroy() of a context on an app device is not a device loss: the device lives on', async () => {
    const owner = await testContext();
    const ctx = await createContext({ device: owner.device });
    ctx.destroy();
    const outcome = await Promise.race([
      ctx.lost.then(() => 'lost'),
      new Promise((r) => setTimeout(r, 50, 'alive')),
    ]);
    expect(outcome).toBe('alive');
    expect(() => ctx.zeros([2])).toThrow(ContextDestroyedError);
    const t = owner.tensor(new Float32Array([1, 2, 3, 4]), [1, 1, 1, 4]);
    const { output } = await checked(owner, () => attention(t, t, t));
    expectClose(await output.read(), [1, 2, 3, 4], F32_TOL, 'the app device still works');
    owner.destroy();
  });
});

describe('memory', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  it('1,000 attention calls leave live bytes where they started', async () => {
    const random = rng(3);
    const shape = [1, 2, 9, 8];
    const n = shape.reduce((a, b) => a * b);
    const q = ctx.tensor(randomArray(random, n), shape);
    const mask = ctx.tensor(new Uint8Array(9).fill(1), [9], { dtype: 'bool' });
    const start = ctx.liveBytes;
    await checked(ctx, async () => {
      for (let i = 0; i < 1000; i++) {
        const r = await attention(q, q, q, { mask, causal: i % 2 === 0, returnLse: i % 3 === 0 });
        if (i % 250 === 0) await r.output.read();
        r.output.destroy();
        r.lse?.destroy();
      }
      await ctx.sync();
    });
    expect(ctx.liveBytes).toBe(start);
    q.destroy();
    mask.destroy();
  });

  it('a default call allocates no Lq x Lk buffer; returnWeights does', async () => {
    const shape = [1, 2, 512, 16];
    const q = ctx.tensor(randomArray(rng(4), 2 * 512 * 16), shape);
    const outputBytes = 2 * 512 * 16 * 4;
    const scores = 2 * 512 * 512 * 4;
    for (const returnWeights of [false, true]) {
      const before = ctx.liveBytes;
      ctx.resetPeak();
      const r = await checked(ctx, () => attention(q, q, q, { returnWeights }));
      const allocated = ctx.peakBytes - before;
      if (returnWeights) expect(allocated).toBeGreaterThanOrEqual(scores);
      else expect(allocated).toBe(outputBytes);
      r.output.destroy();
      r.weights?.destroy();
    }
    q.destroy();
  });

  it('scope() frees what was made inside except what it returns', async () => {
    const start = ctx.liveBytes;
    const out = await ctx.scope(async () => {
      const q = ctx.tensor(new Float32Array(16).fill(0.5), [1, 1, 4, 4]);
      const inner = await ctx.scope(async () => (await attention(q, q, q, { returnLse: true })).output);
      expect(q.destroyed).toBe(false);
      return inner;
    });
    expect(out.destroyed).toBe(false);
    expectClose(await out.read(), new Float32Array(16).fill(0.5), F32_TOL, 'scoped output');
    out.destroy();
    expect(ctx.liveBytes).toBe(start);
  });

  it('scope() keeps tensors returned at any depth, frees the rest', async () => {
    const start = ctx.liveBytes;
    const [freed, typed] = [[] as Tensor[], new Float32Array(4)];
    const out = await ctx.scope(async () => {
      const [a, b, c] = [ctx.zeros([4]), ctx.zeros([8]), ctx.zeros([2])];
      freed.push(ctx.zeros([16]), ctx.zeros([3]));
      const cycle: { self?: unknown; t: Tensor } = { t: c };
      cycle.self = cycle;
      return { grads: { a, list: [1, [b]] }, cycle, typed };
    });
    expect(freed.map((t) => t.destroyed)).toEqual([true, true]);
    const kept = [out.grads.a, (out.grads.list[1] as Tensor[])[0]!, out.cycle.t];
    expect(kept.map((t) => t.destroyed)).toEqual([false, false, false]);
    expect(ctx.liveBytes - start).toBe((4 + 8 + 2) * 4);
    for (const t of kept) t.destroy();
    expect(ctx.liveBytes).toBe(start);
  });

  it('scope() frees its tensors when the function throws', async () => {
    const start = ctx.liveBytes;
    await expect(
      ctx.scope(async () => {
        ctx.zeros([64]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(ctx.liveBytes).toBe(start);
  });
});

describe('concurrency', () => {
  it('many attention calls and reads in flight in random order all match the reference', async () => {
    const ctx = await testContext();
    const random = rng(11);
    const cases = Array.from({ length: 24 }, (_, i) => {
      const [Lq, Lk, D] = [1 + Math.floor(random() * 20), 1 + Math.floor(random() * 20), 4 + (i % 3) * 4];
      const qd = randomArray(random, 2 * Lq * D);
      const kd = randomArray(random, 2 * Lk * D);
      const vd = randomArray(random, 2 * Lk * D);
      return { Lq, Lk, D, qd, kd, vd, causal: i % 2 === 0, delay: random() * 20 };
    });
    await checked(ctx, () =>
      Promise.all(
        cases.map(async (c) => {
          await new Promise((r) => setTimeout(r, c.delay));
          const q = ctx.tensor(c.qd, [1, 2, c.Lq, c.D]);
          const k = ctx.tensor(c.kd, [1, 2, c.Lk, c.D]);
          const v = ctx.tensor(c.vd, [1, 2, c.Lk, c.D]);
          const { output } = await attention(q, k, v, { causal: c.causal });
          const ref = attentionCpu(
            { data: c.qd, shape: q.shape },
            { data: c.kd, shape: k.shape },
            { data: c.vd, shape: v.shape },
            { causal: c.causal },
          );
          expectClose(await output.read(), ref.output.data, F32_TOL, `case ${JSON.stringify(c.Lq)}`);
          for (const t of [q, k, v, output]) t.destroy();
        }),
      ),
    );
    expect(ctx.liveBytes).toBe(0);
    ctx.destroy();
  });
});
