// The naive WGSL kernel (bench/naive_attention.wgsl) on the bench's device: the floor.
import naiveSource from '../naive_attention.wgsl?raw';
import type { F32, Impl } from './types';

const WG = 64;
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

export function naive(device: GPUDevice): Impl {
  const pipelines = new Map<number, Promise<GPUComputePipeline>>();
  const pipelineFor = (D: number) => {
    let pipeline = pipelines.get(D);
    if (!pipeline) {
      const module = device.createShaderModule({
        code: `const D = ${D}u;\n${naiveSource}`,
        label: `naive:${D}`,
      });
      pipeline = device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
        label: `naive:${D}`,
      });
      pipelines.set(D, pipeline);
    }
    return pipeline;
  };
  return {
    id: 'naive',
    label: 'naive WGSL',
    kind: 'floor',
    slow: true,
    async prepare(inputs) {
      const { B, Hq, Hkv, Lq, Lk, D, causal } = inputs.shape;
      const pipeline = await pipelineFor(D);
      const buffer = (data: F32 | null, size: number, label: string) => {
        const b = device.createBuffer({ size, usage: USAGE, label });
        if (data) device.queue.writeBuffer(b, 0, data);
        return b;
      };
      const q = buffer(inputs.q, inputs.q.byteLength, 'naive:q');
      const k = buffer(inputs.k, inputs.k.byteLength, 'naive:k');
      const v = buffer(inputs.v, inputs.v.byteLength, 'naive:v');
      const out = buffer(null, B * Hq * Lq * D * 4, 'naive:out');
      const params = new ArrayBuffer(32);
      new Uint32Array(params).set([B, Hq, Hkv, Lq, Lk, causal ? 1 : 0]);
      new Float32Array(params)[6] = 1 / Math.sqrt(D);
      const uniforms = device.createBuffer({
        size: 32,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        label: 'naive:params',
      });
      device.queue.writeBuffer(uniforms, 0, params);
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [uniforms, q, k, v, out].map((b, i) => ({ binding: i, resource: { buffer: b } })),
        label: 'naive',
      });
      const dispatch = () => {
        const encoder = device.createCommandEncoder({ label: 'naive' });
        const pass = encoder.beginComputePass({ label: 'naive' });
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(Math.ceil(Lq / WG), Hq, B);
        pass.end();
        return encoder;
      };
      return {
        device,
        async run() {
          device.queue.submit([dispatch().finish()]);
          await device.queue.onSubmittedWorkDone();
          return undefined;
        },
        async output() {
          const encoder = dispatch();
          const staging = device.createBuffer({
            size: out.size,
            usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
            label: 'naive:read',
          });
          encoder.copyBufferToBuffer(out, 0, staging, 0, out.size);
          device.queue.submit([encoder.finish()]);
          await staging.mapAsync(GPUMapMode.READ);
          const data = new Float32Array(staging.getMappedRange().slice(0));
          staging.destroy();
          return data;
        },
        dispose() {
          for (const b of [q, k, v, out, uniforms]) b.destroy();
        },
      };
    },
    dispose() {},
  };
}
