// onnxruntime-web running one com.microsoft MultiHeadAttention node: on its WebGPU execution
// provider (a device we create, with or without the adapter's subgroup features) and on its
// single-thread wasm CPU provider; and one GroupQueryAttention node (its local_window_size: the
// sparse section's window peer) on the WebGPU EP.
import { groupQueryAttentionModel, multiHeadAttentionModel } from '../onnx';
import type { BenchShape } from '../shapes';
import {
  type BenchInputs,
  causalBias,
  type F32,
  type Impl,
  type Prepared,
  repeatHeads,
  toBsd,
} from './types';

type Ort = typeof import('onnxruntime-web/webgpu');
type OrtTensor = InstanceType<Ort['Tensor']>;

let ortModule: Promise<Ort> | undefined;

/**
 * onnxruntime-web's WebGPU build: in a page, its .wasm served from node_modules by the Vite server;
 * in Node (bench:node, on Dawn), read from beside the module.
 */
function loadOrt(): Promise<Ort> {
  ortModule ??= import('onnxruntime-web/webgpu').then((ort) => {
    if (typeof location !== 'undefined') {
      ort.env.wasm.wasmPaths = new URL('/node_modules/onnxruntime-web/dist/', location.href).href;
    }
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    return ort;
  });
  return ortModule;
}

/**
 * In Node (Dawn): onnxruntime-web looks for `navigator.gpu` before it takes the device it is
 * given, and writes its uploads from the wasm heap, a SharedArrayBuffer, which Dawn's
 * queue.writeBuffer refuses ("Invalid argument"; browsers take it). `gpu` becomes
 * `navigator.gpu` where there is none, and such views are copied to an ArrayBuffer before the
 * write (patched once, on the queue's prototype; other writes go through unchanged).
 */
export function ortInNode(gpu: GPU, device: GPUDevice): void {
  if (!(globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  }
  const queue = Object.getPrototypeOf(device.queue) as GPUQueue & { sharedWrites?: true };
  if (queue.sharedWrites) return;
  queue.sharedWrites = true;
  const write = queue.writeBuffer;
  queue.writeBuffer = function (
    this: GPUQueue,
    buffer: GPUBuffer,
    offset: number,
    data: GPUAllowSharedBufferSource,
    dataOffset = 0,
    size?: number,
  ) {
    if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
      const bpe = 'BYTES_PER_ELEMENT' in data ? (data.BYTES_PER_ELEMENT as number) : 1;
      const count = size ?? data.byteLength / bpe - dataOffset;
      const bytes = new Uint8Array(data.buffer, data.byteOffset + dataOffset * bpe, count * bpe).slice();
      return write.call(this, buffer, offset, bytes, 0, bytes.byteLength);
    }
    return write.call(this, buffer, offset, data, dataOffset, size);
  };
}

/** A device on `adapter` with its maximum limits and its features, less those containing `drop`. */
export async function deviceWithout(adapter: GPUAdapter, drop: string | undefined, label: string) {
  const requiredFeatures = [...adapter.features].filter(
    (f) => !drop || !f.includes(drop),
  ) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize']) {
    requiredLimits[name] = adapter.limits[name as keyof GPUSupportedLimits] as number;
  }
  return adapter.requestDevice({ requiredFeatures, requiredLimits, label });
}

/** Inputs in MultiHeadAttention's layout: [B, L, H*D], kv heads repeated to Hq (MHA has no GQA). */
function mhaInputs(inputs: BenchInputs) {
  const { B, Hq, Hkv, Lq, Lk, D, causal } = inputs.shape;
  const group = Hq / Hkv;
  return {
    query: toBsd(inputs.q, B, Hq, Lq, D),
    key: toBsd(repeatHeads(inputs.k, B, Hkv, Lk, D, group), B, Hq, Lk, D),
    value: toBsd(repeatHeads(inputs.v, B, Hkv, Lk, D, group), B, Hq, Lk, D),
    bias: inputs.bias ?? (causal ? causalBias(Lq, Lk) : undefined),
  };
}

function model(s: BenchShape, attentionBias: boolean): Uint8Array {
  return multiHeadAttentionModel({
    B: s.B,
    H: s.Hq,
    Lq: s.Lq,
    Lk: s.Lk,
    D: s.D,
    scale: 1 / Math.sqrt(s.D),
    attentionBias,
  });
}

const notes = (s: BenchShape) =>
  [
    s.causal ? 'causal as an additive attention_bias (the WebGPU MHA kernel rejects unidirectional)' : '',
    s.Hq !== s.Hkv ? 'k, v repeated to Hq heads' : '',
  ]
    .filter(Boolean)
    .join('; ') || undefined;

/**
 * A session of `modelBytes` on the WebGPU EP of `device`: `gpu` inputs uploaded to GPU buffers,
 * `cpu` inputs (int32) passed from the host, the output kept on the GPU, read back as [B, Hq, Lq, D].
 */
async function webgpuSession(
  device: GPUDevice,
  modelBytes: Uint8Array,
  s: BenchShape,
  gpu: [name: string, data: F32 | undefined, dims: number[]][],
  cpu: [name: string, data: Int32Array, dims: number[]][] = [],
): Promise<Prepared> {
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(modelBytes, {
    executionProviders: [{ name: 'webgpu', device }],
    preferredOutputLocation: 'gpu-buffer',
    graphOptimizationLevel: 'all',
  });
  const buffers: GPUBuffer[] = [];
  const feeds: Record<string, OrtTensor> = {};
  for (const [name, data, dims] of gpu) {
    if (!data) continue;
    const buffer = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: `ort:${name}`,
    });
    device.queue.writeBuffer(buffer, 0, data);
    buffers.push(buffer);
    feeds[name] = ort.Tensor.fromGpuBuffer(buffer, { dataType: 'float32', dims });
  }
  for (const [name, data, dims] of cpu) feeds[name] = new ort.Tensor('int32', data, dims);
  const call = async () => session.run(feeds);
  const release = (results: Record<string, OrtTensor>) => {
    for (const t of Object.values(results)) t.dispose();
  };
  return {
    device,
    async run() {
      const results = await call();
      await device.queue.onSubmittedWorkDone();
      const doneAt = performance.now();
      release(results);
      return { doneAt };
    },
    async output() {
      const results = await call();
      const data = (await results.output.getData()) as F32;
      release(results);
      return toBsd(data, s.B, s.Hq, s.Lq, s.D, true);
    },
    dispose() {
      void session.release();
      for (const b of buffers) b.destroy();
    },
  };
}

/** MultiHeadAttention on the WebGPU EP, on `device`, with GPU-resident inputs and outputs. */
export function ortWebgpu(device: GPUDevice, id: string, label: string): Impl {
  return {
    id,
    label,
    kind: 'library',
    slow: true,
    note: notes,
    async prepare(inputs): Promise<Prepared> {
      const s = inputs.shape;
      const host = mhaInputs(inputs);
      return webgpuSession(device, model(s, host.bias !== undefined), s, [
        ['query', host.query, [s.B, s.Lq, s.Hq * s.D]],
        ['key', host.key, [s.B, s.Lk, s.Hq * s.D]],
        ['value', host.value, [s.B, s.Lk, s.Hq * s.D]],
        ['attention_bias', host.bias, [1, 1, s.Lq, s.Lk]],
      ]);
    },
    dispose() {
      device.destroy();
    },
  };
}

/**
 * GroupQueryAttention on the WebGPU EP, on `device` (a prompt: causal, Lq = Lk, no past), with
 * `inputs.window` as its local_window_size (each row attends itself and the window - 1 keys before
 * it). `dispose` leaves the device to its owner.
 */
export function ortGqaWebgpu(device: GPUDevice, id: string, label: string): Impl {
  const unsupported = (s: BenchShape) =>
    s.causal && s.Lq === s.Lk ? undefined : 'GroupQueryAttention here is a causal prompt (Lq = Lk)';
  return {
    id,
    label,
    kind: 'library',
    slow: true,
    unsupported,
    async prepare(inputs): Promise<Prepared> {
      const s = inputs.shape;
      const why = unsupported(s);
      if (why) throw new Error(why);
      const bytes = groupQueryAttentionModel({
        B: s.B,
        Hq: s.Hq,
        Hkv: s.Hkv,
        L: s.Lq,
        D: s.D,
        scale: 1 / Math.sqrt(s.D),
        window: inputs.window ?? -1,
      });
      return webgpuSession(
        device,
        bytes,
        s,
        [
          ['query', toBsd(inputs.q, s.B, s.Hq, s.Lq, s.D), [s.B, s.Lq, s.Hq * s.D]],
          ['key', toBsd(inputs.k, s.B, s.Hkv, s.Lk, s.D), [s.B, s.Lk, s.Hkv * s.D]],
          ['value', toBsd(inputs.v, s.B, s.Hkv, s.Lk, s.D), [s.B, s.Lk, s.Hkv * s.D]],
        ],
        [
          ['seqlens_k', new Int32Array(s.B).fill(s.Lk - 1), [s.B]],
          ['total_sequence_length', new Int32Array([s.Lk]), []],
        ],
      );
    },
    dispose() {},
  };
}

/** MultiHeadAttention on the wasm EP, one thread: the CPU row. */
export function ortWasm(): Impl {
  return {
    id: 'ort-wasm',
    label: 'onnxruntime-web wasm (CPU, 1 thread)',
    kind: 'cpu',
    slow: false,
    note: notes,
    async prepare(inputs): Promise<Prepared> {
      const ort = await loadOrt();
      const s = inputs.shape;
      const host = mhaInputs(inputs);
      const session = await ort.InferenceSession.create(model(s, host.bias !== undefined), {
        executionProviders: ['wasm'],
        graphOptimizationLevel: 'all',
      });
      const feeds: Record<string, OrtTensor> = {
        query: new ort.Tensor('float32', host.query, [s.B, s.Lq, s.Hq * s.D]),
        key: new ort.Tensor('float32', host.key, [s.B, s.Lk, s.Hq * s.D]),
        value: new ort.Tensor('float32', host.value, [s.B, s.Lk, s.Hq * s.D]),
      };
      if (host.bias) feeds.attention_bias = new ort.Tensor('float32', host.bias, [1, 1, s.Lq, s.Lk]);
      return {
        async run() {
          await session.run(feeds);
          return undefined;
        },
        async output() {
          const results = await session.run(feeds);
          return toBsd(results.output.data as F32, s.B, s.Hq, s.Lq, s.D, true);
        },
        dispose() {
          void session.release();
        },
      };
    },
    dispose() {},
  };
}
