// A small transformer generating tokens with a KV cache per layer, in f32 and f16, in Node on Dawn.
// Run from a checkout: npm run build && node examples/transformer-decode.mjs [steps]
import * as lib from 'webgpu-attention';
import { createNodeContext } from 'webgpu-attention/node';
import { runDecode } from './decode/transformer.mjs';

const steps = Number(process.argv[2] ?? 32);
const ctx = await createNodeContext();
console.log(`adapter: ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`);
for (const dtype of ['f32', 'f16']) {
  const r = await runDecode(lib, ctx, { steps, dtype });
  console.log(
    `${dtype}: ${r.layers} layers, ${r.steps} tokens: ${r.tokensPerSecond.toFixed(1)} tokens/s, ` +
      `${r.msPerLayer.toFixed(2)} ms per layer, prefill ${r.prefillMs.toFixed(0)} ms, ` +
      `last output [${r.last.map((x) => x.toFixed(3)).join(', ')}, …]`,
  );
}
console.log(`live GPU bytes after destroy: ${ctx.liveBytes}`);
ctx.destroy();
