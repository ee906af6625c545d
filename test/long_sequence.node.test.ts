// 16,384 tokens, checked against the float64 reference on sampled rows. Minutes on SwiftShader, so
// kept out of the default run: `npm run test:long`.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { attention, type Context } from '../src';
import { attentionCpu } from '../src/reference';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

const L = 16_384;
const D = 64;

describe.runIf(process.env.WEBGPU_ATTENTION_LONG)(`${L} tokens`, () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  for (const causal of [true, false]) {
    it(`causal ${causal}: sampled rows match the reference, output and lse`, {
      timeout: 1_800_000,
    }, async () => {
      const random = rng(16384);
      const [qd, kd, vd] = [
        randomArray(random, L * D),
        randomArray(random, L * D),
        randomArray(random, L * D),
      ];
      const shape = [1, 1, L, D];
      await checked(ctx, async () => {
        const [q, k, v] = [ctx.tensor(qd, shape), ctx.tensor(kd, shape), ctx.tensor(vd, shape)];
        const { output, lse } = await attention(q, k, v, { causal, returnLse: true });
        const [out, lseData] = [await output.read(), await lse!.read()];
        const rows = [0, 1, 63, 64, 4095, 8191, 12_345, L - 2, L - 1];
        for (const i of rows) {
          // Row i alone: causal becomes an explicit key mask j <= i.
          const mask = causal
            ? { data: Uint8Array.from({ length: L }, (_, j) => (j <= i ? 1 : 0)), shape: [L] }
            : undefined;
          const ref = attentionCpu(
            { data: qd.subarray(i * D, (i + 1) * D), shape: [1, 1, 1, D] },
            { data: kd, shape },
            { data: vd, shape },
            { mask: mask && { ...mask, dtype: 'bool' } },
          );
          expectClose(out.subarray(i * D, (i + 1) * D), ref.output.data, F32_TOL, `row ${i} output`);
          expectClose([lseData[i]], ref.lse.data, F32_TOL, `row ${i} lse`);
        }
        for (const t of [q, k, v, output, lse!]) t.destroy();
      });
    });
  }
});
