// Attention on tfjs-webgpu tensors, without a copy on our side: tfjs's own GPUDevice, its
// tensors' GPU buffers (`dataToGPU`) read in place, and our output handed back to tfjs as a
// tensor over our buffer (`tf.tensor({ buffer, zeroCopy: true }, ...)`).
//
// Copy into an app that already runs tfjs on the webgpu backend. Run in a browser (headless
// Chromium in test/interop.browser.test.ts).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-webgpu'; // registers the 'webgpu' backend
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { attention, createContext, randomUniform, seededRandom } from '../../src';
import { type InteropResult, type InteropShape, toBhld } from './common';

export async function tfjsInterop(
  shape: InteropShape = { B: 1, H: 4, L: 64, D: 32, causal: true },
): Promise<InteropResult> {
  // 1. tfjs's device: the webgpu backend owns it; our context wraps it (nothing is created).
  if (!(await tf.setBackend('webgpu'))) {
    throw new Error('tfjs: the webgpu backend did not initialise (no WebGPU adapter?)');
  }
  await tf.ready();
  const backend = tf.backend() as WebGPUBackend;
  const device = backend.device;
  const ctx = await createContext({ device });

  const { B, H, L, D, causal } = shape;
  const dims = [B, H, L, D];
  const n = B * H * L * D;
  const random = seededRandom(7);
  // Activations [B, L, H*D] as a transformer produces them.
  const x = { q: randomUniform(random, n), k: randomUniform(random, n), v: randomUniform(random, n) };

  // 2. q, k, v computed by tfjs on the GPU (in an app, its own layers): split heads,
  //    [B, L, H*D] -> [B, H, L, D]. (A tensor fresh from tf.tensor() still lives on the CPU, and
  //    dataToGPU refuses it: it must be the output of a GPU op.)
  const splitHeads = (data: Float32Array) =>
    tf.tidy(() => tf.transpose(tf.reshape(tf.tensor3d(data, [B, L, H * D]), [B, L, H, D]), [0, 2, 1, 3]));
  const [tq, tk, tv] = [splitHeads(x.q), splitHeads(x.k), splitHeads(x.v)];

  // 3. Their GPU buffers. `dataToGPU` returns a buffer tfjs fills on the GPU (and submits) plus a
  //    tensorRef that keeps it alive: dispose the ref once our work on it is done. tfjs's buffers
  //    have STORAGE | COPY_SRC | COPY_DST usage and may be larger than the tensor, which `wrap`
  //    accepts; the data starts at offset 0.
  const gpu = [tq, tk, tv].map((t) => t.dataToGPU());
  const [q, k, v] = gpu.map((g) => ctx.wrap(g.buffer!, dims));

  // 4. Our output in a buffer tfjs can adopt: tfjs requires STORAGE | COPY_SRC.
  const outBuffer = device.createBuffer({
    size: n * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    label: 'attention output',
  });
  await attention(q, k, v, { causal, out: { output: ctx.wrap(outBuffer, dims) } });

  // 5. Back into tfjs without a copy: zeroCopy binds outBuffer itself (tfjs never destroys it).
  //    Both libraries submit to the same queue, so tfjs's later work sees our result.
  const output = tf.tensor({ buffer: outBuffer, zeroCopy: true }, [B, H, L, D], 'float32');
  const values = (await output.data()) as Float32Array;

  // 6. Lifetimes: tfjs's read above waited for the GPU; now release everything.
  output.dispose();
  for (const g of gpu) g.tensorRef.dispose();
  tf.dispose([tq, tk, tv]);
  outBuffer.destroy();
  ctx.destroy(); // ends our context, leaves tfjs's device alive
  return {
    output: values,
    q: toBhld(x.q, shape),
    k: toBhld(x.k, shape),
    v: toBhld(x.v, shape),
    shape,
    adapter: `${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`,
  };
}
