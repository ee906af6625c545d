// Dawn's Null backend builds pipelines without running them and lists shader-f16, subgroups (and,
// with allow_unsafe_apis, chromium-experimental-subgroup-matrix): the native f16 and
// subgroup-matrix variants that SwiftShader cannot run (also those of the backward's split calls),
// the tiled form with and without subgroups and the decode pass without subgroups still compile
// without messages (checked without a GPU).

import { describe, expect, it } from 'vitest';
import { create } from 'webgpu';
import { attention, createContext, deviceRequirements, planAttention } from '../src';
import {
  attentionVariants,
  backwardSplitVariants,
  decodeVariants,
  matrixVariants,
  messagesOf,
  opVariants,
} from './kernel_variants';

describe("every kernel variant compiles on Dawn's Null backend (shader-f16)", () => {
  for (const kernel of ['workgroup', 'registers', 'tiled'] as const) {
    it(`${kernel} form`, async () => {
      const ctx = await createContext({ gpu: create(['backend=null']), attentionKernel: kernel });
      expect([ctx.hasF16, ctx.hasSubgroups]).toEqual([true, true]);
      const { count, messages } = await messagesOf(ctx, async () => {
        await attentionVariants(ctx, kernel === 'tiled');
        if (kernel !== 'tiled') {
          await backwardSplitVariants(ctx);
          await opVariants(ctx);
        }
      });
      ctx.destroy();
      expect(messages).toEqual([]);
      expect(count).toBeGreaterThan(kernel === 'tiled' ? 5 : 20);
    });
  }

  // What SwiftShader's device has (subgroups, no shader-f16: f16 packed in u32 words); the browser
  // project compiles the same on SwiftShader with Chromium's own compiler (kernels.browser.test.ts)
  for (const kernel of ['workgroup', 'registers'] as const) {
    it(`${kernel} form without shader-f16 (packed f16), and split calls`, async () => {
      const gpu = create(['backend=null']);
      const ctx = await createContext({ gpu, attentionKernel: kernel, disableFeatures: ['shader-f16'] });
      // a binding limit this low sends attention through the split paths and the merge kernel
      const small = await createContext({
        device: ctx.device,
        attentionKernel: kernel,
        limits: { maxStorageBufferBindingSize: 1024 },
      });
      expect(ctx.hasF16).toBe(false);
      const { count, messages } = await messagesOf(ctx, async () => {
        await attentionVariants(ctx);
        await backwardSplitVariants(ctx);
        await opVariants(ctx);
        const q = small.zeros([1, 2, 40, 8]);
        const r = await attention(q, q, q, { returnLse: true });
        for (const x of [q, r.output, r.lse!]) x.destroy();
      });
      small.destroy();
      ctx.destroy();
      expect(messages).toEqual([]);
      expect(count).toBeGreaterThan(20);
    });
  }

  // The Null adapter reports no subgroup-matrix shapes: an adapter object that reports the vendors'
  // shapes (NVIDIA 16x16x16, Intel 8x16x16, Apple 8x8x8) describes the device instead.
  it('matrix form: subgroup-matrix builtins in every reported shape, and the emulation', async () => {
    const gpu = create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']);
    const adapter = (await gpu.requestAdapter())!;
    const device = await adapter.requestDevice(deviceRequirements(adapter, [], 'matrix'));
    expect(device.features.has('chromium-experimental-subgroup-matrix')).toBe(true);
    let count = 0;
    const messages: string[] = [];
    for (const [M, N, K] of [
      [16, 16, 16],
      [8, 16, 16],
      [8, 8, 8],
    ]) {
      const config = { componentType: 'f16', resultComponentType: 'f32', M, N, K };
      const info = { vendor: '', architecture: '', description: '', subgroupMatrixConfigs: [config] };
      const reporting = { features: adapter.features, limits: adapter.limits, info } as unknown as GPUAdapter;
      const ctx = await createContext({ device, adapter: reporting, attentionKernel: 'matrix' });
      const q = ctx.zeros([1, 1, 40, 8]);
      const plan = planAttention(q, q, q);
      expect(plan.path === 'flash' && plan.matrix).toMatchObject({ builtin: true, M, N, K });
      q.destroy();
      const r = await messagesOf(ctx, () => matrixVariants(ctx, true));
      count += r.count;
      messages.push(...r.messages);
      ctx.destroy();
    }
    // the emulation, where the device has no subgroup matrices
    const plain = await createContext({ gpu: create(['backend=null']), attentionKernel: 'matrix' });
    const r = await messagesOf(plain, () => matrixVariants(plain, true));
    plain.destroy();
    device.destroy();
    expect([...messages, ...r.messages]).toEqual([]);
    expect(count).toBeGreaterThan(30);
    expect(r.count).toBeGreaterThan(10);
  });

  it('workgroup decode pass without subgroups', async () => {
    const ctx = await createContext({
      gpu: create(['backend=null']),
      attentionKernel: 'workgroup',
      disableFeatures: ['subgroups'],
    });
    expect(ctx.hasSubgroups).toBe(false);
    const { count, messages } = await messagesOf(ctx, () => decodeVariants(ctx));
    ctx.destroy();
    expect(messages).toEqual([]);
    expect(count).toBeGreaterThan(4);
  });

  it('tiled form without subgroups (row groups through workgroup memory)', async () => {
    const gpu = create(['backend=null']);
    const ctx = await createContext({ gpu, attentionKernel: 'tiled', disableFeatures: ['subgroups'] });
    expect(ctx.hasSubgroups).toBe(false);
    const { count, messages } = await messagesOf(ctx, () => attentionVariants(ctx, true));
    ctx.destroy();
    expect(messages).toEqual([]);
    expect(count).toBeGreaterThan(5);
  });
});
