// Causal self-attention in the browser. Run from a checkout: npx vite examples/browser
// (serve over http://127.0.0.1 or https: navigator.gpu exists only on a secure origin).
import { attention, createContext, randomUniform, seededRandom } from '../../src';

const log = document.getElementById('log')!;
const ctx = await createContext();
const [B, H, L, D] = [1, 8, 256, 64];
const seeded = seededRandom(1);
const random = (n: number) => randomUniform(seeded, n);
const q = ctx.tensor(random(B * H * L * D), [B, H, L, D]);
const k = ctx.tensor(random(B * H * L * D), [B, H, L, D]);
const v = ctx.tensor(random(B * H * L * D), [B, H, L, D]);

const start = performance.now();
const { output } = await attention(q, k, v, { causal: true });
const values = await output.read();
const ms = performance.now() - start;
log.textContent = `adapter ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}
output [${output.shape}] in ${ms.toFixed(1)} ms (first call includes the pipeline compile)
output[0..4] = ${Array.from(values.slice(0, 4), (x) => x.toFixed(4)).join(', ')}`;
for (const t of [q, k, v, output]) t.destroy();
