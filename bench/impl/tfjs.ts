// @tensorflow/tfjs-backend-webgpu composed as a user would: matMul(q·scale, kᵀ) (+ causal bias),
// softmax, matMul(·, v), on rank-3 tensors [B·H, L, D].
import { causalBias, type Impl, repeatHeads } from './types';

type Tf = typeof import('@tensorflow/tfjs-core');
/** The parts of tfjs-backend-webgpu's backend the bench uses to wait for the GPU. */
interface WebGpuBackend {
  device: GPUDevice;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

let tfModule: Promise<Tf> | undefined;

function loadTf(): Promise<Tf> {
  tfModule ??= (async () => {
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
    await tf.ready();
    return tf;
  })();
  return tfModule;
}

export function tfjsWebgpu(): Impl {
  return {
    id: 'tfjs',
    label: 'tfjs-webgpu composed',
    kind: 'library',
    slow: true,
    note: (s) =>
      [s.causal ? 'causal as an additive bias' : '', s.Hq !== s.Hkv ? 'k, v repeated to Hq heads' : '']
        .filter(Boolean)
        .join('; ') || undefined,
    async prepare(inputs) {
      const tf = await loadTf();
      const backend = tf.backend() as unknown as WebGpuBackend;
      const { B, Hq, Hkv, Lq, Lk, D, causal } = inputs.shape;
      const group = Hq / Hkv;
      const q = tf.tensor3d(inputs.q, [B * Hq, Lq, D]);
      const k = tf.tensor3d(repeatHeads(inputs.k, B, Hkv, Lk, D, group), [B * Hq, Lk, D]);
      const v = tf.tensor3d(repeatHeads(inputs.v, B, Hkv, Lk, D, group), [B * Hq, Lk, D]);
      const bias = causal ? tf.tensor2d(causalBias(Lq, Lk), [Lq, Lk]) : undefined;
      const scale = 1 / Math.sqrt(D);
      const call = () =>
        tf.tidy(() => {
          let scores = tf.matMul(tf.mul(q, scale), k, false, true);
          if (bias) scores = tf.add(scores, bias);
          return tf.matMul(tf.softmax(scores), v);
        });
      return {
        device: backend.device,
        async run() {
          const out = call();
          // tfjs keeps one compute pass open across ops: end it before submitting, as its own
          // read-back path does (finishing an encoder with an open pass is a validation error).
          backend.ensureCommandEncoderReady();
          backend.endComputePassEncoder();
          backend.submitQueue();
          await backend.device.queue.onSubmittedWorkDone();
          const doneAt = performance.now();
          out.dispose();
          return { doneAt };
        },
        async output() {
          const out = call();
          const data = (await out.data()) as Float32Array;
          out.dispose();
          return data;
        },
        dispose() {
          tf.dispose([q, k, v, ...(bias ? [bias] : [])]);
        },
      };
    },
    dispose() {},
  };
}
