// Trains a 2-layer transformer to reverse 4-digit sequences on the GPU, printing the loss, the
// held-out token accuracy and, at the end, each head's attention map on one held-out sequence.
// Run from a checkout: npm run build && node examples/train/reverse-digits.mjs
import { trainReverseDigits } from 'webgpu-attention';
import { createNodeContext } from 'webgpu-attention/node';

const ctx = await createNodeContext();
console.log(`adapter: ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`);
const { history, params, config } = await trainReverseDigits(ctx, {
  watchAttention: true,
  onProgress: ({ step, loss, accuracy, seconds }) =>
    console.log(
      `step ${String(step).padStart(4)}  loss ${loss.toFixed(4)}  held-out accuracy ${(100 * accuracy).toFixed(1)}%  ${seconds.toFixed(1)} s`,
    ),
});
const last = history.at(-1);
console.log(
  `done: ${(100 * last.accuracy).toFixed(1)}% after ${last.step} steps, ${last.seconds.toFixed(1)} s`,
);

// Rows: query positions, columns: key positions; darker = more weight (causal: nothing right of
// the diagonal). Tokens: digits 0-9, '|' the separator.
const shades = ' .:-=+*#%@';
const tokens = Array.from(last.sequence, (t) => (t === 10 ? '|' : String(t)));
const L = tokens.length;
last.attention.forEach((w, layer) => {
  for (let h = 0; h < config.heads; h++) {
    console.log(`\nlayer ${layer} head ${h}    keys: ${tokens.join('')}`);
    for (let i = 0; i < L; i++) {
      let row = '';
      for (let j = 0; j < L; j++) {
        const p = w[(h * L + i) * L + j];
        row += shades[Math.min(shades.length - 1, Math.floor(p * shades.length))];
      }
      console.log(`  query ${i} (${tokens[i]})  ${row}`);
    }
  }
});
for (const t of Object.values(params)) t.destroy();
ctx.destroy();
