// @tensorflow/tfjs-backend-webgpu composed as a user would: matMul(q·scale, kᵀ) (+ causal bias),
// softmax, matMul(·, v), on rank-3 tensors [B·H, L, D].
import { type BackwardImpl, sumHeads } from '../backward';
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

/**
 * The backward section's tfjs row: `tf.grads` of the same composed attention (softmax(q·kᵀ·scale
 * [+ causal bias])·v) with respect to q, k, v, given dOutput; k and v repeated to Hq heads, their
 * gradients summed back over each group for the check. tf.grads records the forward each call, so
 * its time includes the forward.
 */
export function tfjsBackward(): BackwardImpl {
  return {
    id: 'tfjs',
    label: 'tfjs-webgpu tf.grads of composed',
    kind: 'library',
    slow: true,
    backwardIncludesForward: true,
    note: (s) =>
      [s.causal ? 'causal as an additive bias' : '', s.Hq !== s.Hkv ? 'k, v repeated to Hq heads' : '']
        .filter(Boolean)
        .join('; ') || undefined,
    async prepare(inputs) {
      const tf = await loadTf();
      // tfjs-core alone registers no gradient functions (the tfjs bundle does this import).
      await import('@tensorflow/tfjs-core/dist/register_all_gradients');
      const backend = tf.backend() as unknown as WebGpuBackend;
      const { B, Hq, Hkv, Lq, Lk, D, causal } = inputs.shape;
      const group = Hq / Hkv;
      const q = tf.tensor3d(inputs.q, [B * Hq, Lq, D]);
      const k = tf.tensor3d(repeatHeads(inputs.k, B, Hkv, Lk, D, group), [B * Hq, Lk, D]);
      const v = tf.tensor3d(repeatHeads(inputs.v, B, Hkv, Lk, D, group), [B * Hq, Lk, D]);
      const dO = tf.tensor3d(inputs.dO, [B * Hq, Lq, D]);
      const bias = causal ? tf.tensor2d(causalBias(Lq, Lk), [Lq, Lk]) : undefined;
      const scale = 1 / Math.sqrt(D);
      const f = (
        qq: import('@tensorflow/tfjs-core').Tensor,
        kk: import('@tensorflow/tfjs-core').Tensor,
        vv: import('@tensorflow/tfjs-core').Tensor,
      ) => {
        let scores = tf.matMul(tf.mul(qq, scale), kk, false, true);
        if (bias) scores = tf.add(scores, bias);
        return tf.matMul(tf.softmax(scores), vv);
      };
      const gradsOf = tf.grads(f);
      const finish = async (dispose: () => void) => {
        // As the forward's tfjs row: end tfjs's open compute pass, submit, wait for the GPU.
        backend.ensureCommandEncoderReady();
        backend.endComputePassEncoder();
        backend.submitQueue();
        await backend.device.queue.onSubmittedWorkDone();
        const doneAt = performance.now();
        dispose();
        return { doneAt };
      };
      return {
        device: backend.device,
        forward() {
          const out = tf.tidy(() => f(q, k, v));
          return finish(() => out.dispose());
        },
        backward() {
          const g = tf.tidy(() => gradsOf([q, k, v], dO));
          return finish(() => tf.dispose(g));
        },
        async grads() {
          const [dq, dk, dv] = tf.tidy(() => gradsOf([q, k, v], dO));
          const data = [
            (await dq.data()) as Float32Array,
            (await dk.data()) as Float32Array,
            (await dv.data()) as Float32Array,
          ];
          tf.dispose([dq, dk, dv]);
          return {
            dq: data[0],
            dk: sumHeads(data[1], B, Hkv, Lk, D, group),
            dv: sumHeads(data[2], B, Hkv, Lk, D, group),
          };
        },
        dispose() {
          tf.dispose([q, k, v, dO, ...(bias ? [bias] : [])]);
        },
      };
    },
    dispose() {},
  };
}
