// Causal self-attention in Node on Dawn, checked against the float64 reference.
// Run from a checkout: npm run build && node examples/node-attention.mjs
import { attention, randomUniform, seededRandom } from 'webgpu-attention';
import { createNodeContext } from 'webgpu-attention/node';
import { attentionCpu } from 'webgpu-attention/reference';

const ctx = await createNodeContext();
console.log(`adapter: ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`);

const [B, H, L, D] = [1, 4, 128, 64];
const seeded = seededRandom(1);
const random = (n) => randomUniform(seeded, n);
const qData = random(B * H * L * D);
const kData = random(B * H * L * D);
const vData = random(B * H * L * D);

const q = ctx.tensor(qData, [B, H, L, D]);
const k = ctx.tensor(kData, [B, H, L, D]);
const v = ctx.tensor(vData, [B, H, L, D]);
const { output, lse } = await attention(q, k, v, { causal: true, returnLse: true });
const out = await output.read();

const ref = attentionCpu(
  { data: qData, shape: [B, H, L, D] },
  { data: kData, shape: [B, H, L, D] },
  { data: vData, shape: [B, H, L, D] },
  { causal: true },
);
let maxError = 0;
for (let i = 0; i < out.length; i++) maxError = Math.max(maxError, Math.abs(out[i] - ref.output.data[i]));
console.log(`output [${output.shape}], max |gpu - float64| = ${maxError.toExponential(2)}`);
console.log(`lse of row 0: ${(await lse.read())[0].toFixed(4)}`);

for (const t of [q, k, v, output, lse]) t.destroy();
console.log(`live GPU bytes after destroy: ${ctx.liveBytes}`);
ctx.destroy();
