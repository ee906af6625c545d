// Dawn's Null backend builds pipelines without running them and lists shader-f16 and subgroups: the
// native f16 variants that SwiftShader cannot run (also those of the backward's split calls), and
// the tiled form with and without subgroups, still compile without messages (checked without a GPU).

import { describe, expect, it } from 'vitest';
import { create } from 'webgpu';
import { createContext } from '../src';
import { attentionVariants, backwardSplitVariants, messagesOf, opVariants } from './kernel_variants';

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
