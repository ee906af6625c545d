// Attention between two onnxruntime-web WebGPU sessions, without a copy: ORT's own GPUDevice
// (`ort.env.webgpu.device`), its output tensors kept on the GPU (`preferredOutputLocation:
// 'gpu-buffer'`) read in place by our attention, and our output buffer handed to the next ORT
// session as an input (`Tensor.fromGpuBuffer`).
//
// Copy into an app that runs onnxruntime-web with the webgpu execution provider. ORT loads its
// .wasm at run time: serve node_modules/onnxruntime-web/dist/ (or a CDN copy of the same version)
// and point `ort.env.wasm.wasmPaths` at it. Run in a browser (headless Chromium in
// test/interop.browser.test.ts).
import * as ort from 'onnxruntime-web/webgpu';
import { attention, createContext, randomUniform, seededRandom } from '../../src';
import { type InteropResult, type InteropShape, toBhld } from './common';
import { mergeHeadsModel, splitHeadsModel } from './onnx_models';

export interface OrtInteropOptions {
  shape?: InteropShape;
  /** URL of the folder that serves onnxruntime-web's dist/*.wasm and *.mjs files */
  wasmPaths: string;
}

export async function ortInterop(options: OrtInteropOptions): Promise<InteropResult> {
  const shape = options.shape ?? { B: 1, H: 4, L: 64, D: 32, causal: true };
  const { B, H, L, D, causal } = shape;
  ort.env.wasm.wasmPaths = options.wasmPaths;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';

  // 1. The app's model, here in two parts around attention: split heads before, merge after.
  //    'gpu-buffer' keeps the first part's outputs on the GPU.
  const before = await ort.InferenceSession.create(splitHeadsModel(B, H, L, D), {
    executionProviders: ['webgpu'],
    preferredOutputLocation: 'gpu-buffer',
  });
  const after = await ort.InferenceSession.create(mergeHeadsModel(B, H, L, D), {
    executionProviders: ['webgpu'],
  });

  // 2. ORT's device, available once a webgpu session exists; our context wraps it.
  const device = await ort.env.webgpu.device;
  const ctx = await createContext({ device });

  // 3. Run the first part: q, k, v [B, H, L, D] stay on the GPU as ORT tensors.
  const n = B * H * L * D;
  const random = seededRandom(11);
  const x = { q: randomUniform(random, n), k: randomUniform(random, n), v: randomUniform(random, n) };
  const dimsIn = [B, L, H * D];
  const heads = await before.run({
    q_in: new ort.Tensor('float32', x.q, dimsIn),
    k_in: new ort.Tensor('float32', x.k, dimsIn),
    v_in: new ort.Tensor('float32', x.v, dimsIn),
  });

  // 4. Their GPU buffers, read in place: ORT's buffers have STORAGE | COPY_SRC | COPY_DST usage,
  //    may be rounded up in size (wrap accepts larger buffers), and start at offset 0.
  const dims = [B, H, L, D];
  const [q, k, v] = [heads.q, heads.k, heads.v].map((t) => {
    if (t.location !== 'gpu-buffer') throw new Error(`ORT: output is on '${t.location}', not the GPU`);
    return ctx.wrap(t.gpuBuffer, dims);
  });

  // 5. Our output in our buffer on ORT's device, then given to ORT as an input tensor.
  const outBuffer = device.createBuffer({
    size: n * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    label: 'attention output',
  });
  await attention(q, k, v, { causal, out: { output: ctx.wrap(outBuffer, dims) } });
  const attn = ort.Tensor.fromGpuBuffer(outBuffer, { dataType: 'float32', dims });
  const { y } = await after.run({ attn }); // same queue: ORT's work runs after our submit
  const merged = (await y.getData()) as Float32Array; // [B, L, H*D]

  // 6. Lifetimes: ORT's read waited for the GPU. Dispose ORT's GPU outputs (their buffers go back
  //    to ORT), our buffer and context (ORT's device stays alive), and the sessions.
  for (const t of Object.values(heads)) t.dispose();
  outBuffer.destroy();
  ctx.destroy();
  await Promise.all([before.release(), after.release()]);
  return {
    // back to [B, H, L, D], the layout the reference and the other example use
    output: toBhld(merged, shape),
    q: toBhld(x.q, shape),
    k: toBhld(x.k, shape),
    v: toBhld(x.v, shape),
    shape,
    adapter: `${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture}`,
  };
}
