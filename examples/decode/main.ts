// A small transformer generating tokens with a KV cache per layer, in f32 and f16, in the browser.
// Run from a checkout: npx vite examples/decode (serve over http://127.0.0.1 or https: navigator.gpu
// exists only on a secure origin).
import * as lib from '../../src';
import { runDecode } from './transformer.mjs';

const log = document.getElementById('log')!;
const ctx = await lib.createContext();
const lines = [`adapter ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`];
for (const dtype of ['f32', 'f16'] as const) {
  const r = await runDecode(lib, ctx, { steps: 32, dtype });
  lines.push(
    `${dtype}: ${r.layers} layers, ${r.steps} tokens: ${r.tokensPerSecond.toFixed(1)} tokens/s, ${r.msPerLayer.toFixed(2)} ms per layer`,
  );
  log.textContent = lines.join('\n');
}
ctx.destroy();
