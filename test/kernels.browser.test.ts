// Every kernel variant the library generates compiles on the adapter without a single compilation
// message (error, warning or info). The ops run over their variant space on tiny inputs; every
// shader module they create is collected and its compilation info checked. In the browser project
// only: Chromium's WGSL compiler on SwiftShader. The Node project compiles the same variants (and
// the native-f16, subgroup-matrix and no-subgroup ones) with its Dawn on the Null backend in a few
// seconds (kernels_null.node.test.ts), where SwiftShader takes minutes for the same messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, type Context } from '../src';
import { testContext } from './helpers';
import { attentionVariants, messagesOf, opVariants } from './kernel_variants';

// Compiling every variant is the suite's slowest work on SwiftShader (a CPU): minutes under load.
const COMPILE_TIMEOUT = 600_000;

describe('every kernel variant compiles without messages', () => {
  let ctx: Context;
  let small: Context;
  beforeAll(async () => {
    ctx = await testContext();
    // a binding limit this low sends attention through the split paths and the merge kernel
    small = await testContext({ limits: { maxStorageBufferBindingSize: 1024 } });
  });
  afterAll(() => {
    ctx?.destroy();
    small?.destroy();
  });

  // The tiled form's variants (with and without subgroups) compile on Dawn's Null backend
  // (kernels_null.node.test.ts: the same WGSL compiler, in a second instead of SwiftShader's two
  // minutes); the other specs run them here.
  for (const kernel of ['workgroup', 'registers'] as const) {
    it(`attention, ${kernel} form`, { timeout: COMPILE_TIMEOUT }, async () => {
      const forced = await testContext({ attentionKernel: kernel });
      const { count, messages } = await messagesOf(forced, () => attentionVariants(forced));
      forced.destroy();
      expect(messages).toEqual([]);
      // modules are cached per device and source: a form's count depends on what ran before it
      expect(count).toBeGreaterThan(10);
    });
  }

  it('attention split over heads and blocks', { timeout: COMPILE_TIMEOUT }, async () => {
    const { count, messages } = await messagesOf(small, async () => {
      const q = small.zeros([1, 2, 40, 8]);
      const r = await attention(q, q, q, { returnLse: true });
      for (const x of [q, r.output, r.lse!]) x.destroy();
    });
    expect(messages).toEqual([]);
    expect(count).toBeGreaterThan(0);
  });

  it('matmul, softmax, linear, rope, KV cache', { timeout: COMPILE_TIMEOUT }, async () => {
    const { count, messages } = await messagesOf(ctx, () => opVariants(ctx));
    expect(messages).toEqual([]);
    expect(count).toBeGreaterThan(10);
  });
});
