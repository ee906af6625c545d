// Trains a 2-layer transformer to reverse 4-digit sequences on the GPU, printing the loss and the
// held-out token accuracy. Run from a checkout: npm run build && node examples/train/reverse-digits.mjs
import { trainReverseDigits } from 'webgpu-attention';
import { createNodeContext } from 'webgpu-attention/node';

const ctx = await createNodeContext();
console.log(`adapter: ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`);
const { history, params } = await trainReverseDigits(ctx, {
  onProgress: ({ step, loss, accuracy, seconds }) =>
    console.log(
      `step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}  held-out accuracy ${(100 * accuracy).toFixed(1)}%  ${seconds.toFixed(1)} s`,
    ),
});
const last = history.at(-1);
console.log(
  `done: ${(100 * last.accuracy).toFixed(1)}% after ${last.step} steps, ${last.seconds.toFixed(1)} s`,
);
for (const t of Object.values(params)) t.destroy();
ctx.destroy();
