// The adapter's roofs, measured in the same run as the attention rows (issue 12, item 1): f32 FMA
// throughput (and f16 where the device has `shader-f16`) from a synthetic kernel of independent
// FMA chains, read bandwidth from a vec4 streaming kernel, and copy bandwidth from
// copyBufferToBuffer. Plain WebGPU on a device, so that the page and Node (bench/node_suite.ts)
// share it. Each measurement grows its work until one timed submit takes `targetMs`, then takes the
// median of `samples` submits, timed by timestamp queries where the device has `timestamp-query`,
// else by the wall clock around onSubmittedWorkDone.
import { median } from './timing';

export interface Roof {
  /** GFLOP/s (an FMA counts 2) or GB/s (1e9 bytes per second). */
  value: number;
  unit: 'GFLOP/s' | 'GB/s';
  /** Median ms of one timed submit, and what it did. */
  ms: number;
  work: string;
}

export interface Roofs {
  /** f32 FMA throughput. */
  f32: Roof;
  /** f16 FMA throughput (vec4<f16> chains), where the device has `shader-f16`. */
  f16?: Roof;
  /**
   * A vec4<f32> streaming read of a buffer by a kernel: bytes read / time, the best of grid-stride
   * (coalesced) and per-invocation-block access.
   */
  read: Roof;
  /** copyBufferToBuffer: bytes read + bytes written / time. */
  copy: Roof;
  timing: 'timestamp-query' | 'wall clock';
}

export interface RoofOptions {
  /** ms one timed submit should take (more: steadier; default 40). */
  targetMs?: number;
  /** Timed submits per roof, median taken (default 5). */
  samples?: number;
  /** Bytes streamed by the read and copy measurements (default 256 MiB, capped by the limits). */
  bytes?: number;
  /** Hears what is being measured. */
  progress?: (message: string) => void;
}

const WG = 256;
/** Independent vec4 FMA chains per invocation: enough to hide FMA latency on any GPU. */
const CHAINS = 8;
/**
 * Workgroup counts tried by the FMA and read kernels, the best kept: few long-running
 * invocations suit adapters that run compute on the CPU, thousands of workgroups fill a GPU.
 */
const WORKGROUP_COUNTS = [32, 512, 4096];
/** FMA iterations per invocation at scale 1. */
const FMA_ITERATIONS = 64;

function fmaKernel(type: 'f32' | 'f16'): string {
  const v = `vec4<${type}>`;
  const chains = [...Array(CHAINS).keys()];
  return `${type === 'f16' ? 'enable f16;' : ''}
struct Params { iterations: u32, a: f32, b: f32, sentinel: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let a = ${v}(${type}(p.a));
  let b = ${v}(${type}(p.b));
  let seed = ${type}(f32(gid.x % 7u) * 0.125);
${chains.map((c) => `  var x${c} = ${v}(seed + ${type}(${c}.0 * 0.01));`).join('\n')}
  for (var i = 0u; i < p.iterations; i++) {
${chains.map((c) => `    x${c} = x${c} * a + b;`).join('\n')}
  }
  let s = ${chains.map((c) => `x${c}`).join(' + ')};
  let total = f32(s.x + s.y + s.z + s.w);
  if (total == p.sentinel) {
    out[gid.x] = total;
  }
}`;
}

// Reads n vec4s. mode 0: grid stride (neighbouring invocations read neighbouring vec4s: coalesced,
// what GPUs want); mode 1: each invocation reads its own contiguous block (what CPU adapters want).
const READ_KERNEL = `
struct Params { n: u32, invocations: u32, mode: u32, sentinel: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var i = gid.x;
  var end = p.n;
  var step = p.invocations;
  if (p.mode == 1u) {
    let per = (p.n + p.invocations - 1u) / p.invocations;
    i = gid.x * per;
    end = min(i + per, p.n);
    step = 1u;
  }
  for (; i + step < end; i += 2u * step) {
    s0 += src[i];
    s1 += src[i + step];
  }
  if (i < end) {
    s0 += src[i];
  }
  let s = s0 + s1;
  let total = s.x + s.y + s.z + s.w;
  if (total == p.sentinel) {
    out[gid.x] = total;
  }
}`;

/** Times submits of encoded work: timestamp queries around it, or the wall clock. */
class SubmitTimer {
  private readonly querySet?: GPUQuerySet;
  private readonly resolveBuffer?: GPUBuffer;
  private readonly readback?: GPUBuffer;

  constructor(private readonly device: GPUDevice) {
    if (device.features.has('timestamp-query')) {
      this.querySet = device.createQuerySet({ type: 'timestamp', count: 2, label: 'roofs' });
      this.resolveBuffer = device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        label: 'roofs:resolve',
      });
      this.readback = device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: 'roofs:readback',
      });
    }
  }

  get timing(): Roofs['timing'] {
    return this.querySet ? 'timestamp-query' : 'wall clock';
  }

  /**
   * ms of the work `encode` records. With timestamps: from the start of an empty pass before it to
   * the end of an empty pass after it (copies are not in a pass, so the brackets are passes).
   */
  async time(encode: (encoder: GPUCommandEncoder) => void): Promise<number> {
    const { device } = this;
    const encoder = device.createCommandEncoder({ label: 'roofs' });
    const bracket = (index: 0 | 1) => {
      if (!this.querySet) return;
      const writes: GPUComputePassTimestampWrites =
        index === 0
          ? { querySet: this.querySet, beginningOfPassWriteIndex: 0 }
          : { querySet: this.querySet, endOfPassWriteIndex: 1 };
      encoder.beginComputePass({ label: 'roofs:bracket', timestampWrites: writes }).end();
    };
    bracket(0);
    encode(encoder);
    bracket(1);
    if (this.querySet && this.resolveBuffer && this.readback) {
      encoder.resolveQuerySet(this.querySet, 0, 2, this.resolveBuffer, 0);
      encoder.copyBufferToBuffer(this.resolveBuffer, 0, this.readback, 0, 16);
    }
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    if (!this.readback) return wall;
    await this.readback.mapAsync(GPUMapMode.READ);
    const [begin, end] = new BigInt64Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    const ns = Number(end - begin);
    // Some drivers return zeros or wrapped values: then the wall clock is the better figure.
    return ns > 0 && ns / 1e6 <= wall * 1.5 + 1 ? ns / 1e6 : wall;
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolveBuffer?.destroy();
    this.readback?.destroy();
  }
}

/**
 * Grows `scale` (powers of two, up to `maxScale`) until `run(scale)` takes a quarter of the
 * target, sets it to reach the target, then returns the scale and the median of `samples` runs.
 */
async function calibrate(
  run: (scale: number) => Promise<number>,
  targetMs: number,
  samples: number,
  maxScale: number,
): Promise<{ scale: number; ms: number }> {
  let scale = 1;
  let ms = await run(scale); // also compiles and warms up
  ms = await run(scale);
  // far past the target already (an adapter this slow at this size): one more sample will do
  if (ms >= 4 * targetMs) return { scale, ms: Math.min(ms, await run(scale)) };
  while (ms < targetMs / 4 && scale < maxScale) {
    scale = Math.min(maxScale, scale * 2);
    ms = await run(scale);
  }
  if (ms > 0 && ms < targetMs) scale = Math.min(maxScale, Math.max(1, Math.round((scale * targetMs) / ms)));
  const times: number[] = [];
  for (let i = 0; i < samples; i++) times.push(await run(scale));
  return { scale, ms: median(times) };
}

/** Measures the roofs of `device` (see {@link Roofs}). */
export async function measureRoofs(device: GPUDevice, options: RoofOptions = {}): Promise<Roofs> {
  const targetMs = options.targetMs ?? 40;
  const samples = options.samples ?? 5;
  const say = options.progress ?? (() => {});
  const timer = new SubmitTimer(device);
  const made: GPUBuffer[] = [];
  const buffer = (size: number, usage: GPUBufferUsageFlags, label: string) => {
    const b = device.createBuffer({ size, usage, label });
    made.push(b);
    return b;
  };
  const uniform = (values: ArrayBuffer, label: string) => {
    const b = buffer(16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label);
    device.queue.writeBuffer(b, 0, values);
    return b;
  };
  try {
    const sink = buffer(Math.max(...WORKGROUP_COUNTS) * WG * 4, GPUBufferUsage.STORAGE, 'roofs:sink');

    const fma = async (type: 'f32' | 'f16'): Promise<Roof> => {
      const module = device.createShaderModule({ code: fmaKernel(type), label: `roofs:fma-${type}` });
      const pipeline = await device.createComputePipelineAsync({
        label: `roofs:fma-${type}`,
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
      });
      const groups = new Map<number, GPUBindGroup>();
      const bindGroupOf = (iterations: number) => {
        let g = groups.get(iterations);
        if (!g) {
          const params = new ArrayBuffer(16);
          new Uint32Array(params, 0, 1)[0] = iterations;
          new Float32Array(params, 4, 3).set([0.9999, 0.0001, -12345.5]);
          g = device.createBindGroup({
            layout: pipeline.getBindGroupLayout(0),
            entries: [
              { binding: 0, resource: { buffer: uniform(params, 'roofs:fma-params') } },
              { binding: 1, resource: { buffer: sink } },
            ],
          });
          groups.set(iterations, g);
        }
        return g;
      };
      let best: Roof | undefined;
      for (const workgroups of WORKGROUP_COUNTS) {
        say(`roofs: ${type} FMA throughput, ${workgroups} workgroups`);
        // scale: iterations per invocation / FMA_ITERATIONS
        const run = (scale: number) => {
          const group = bindGroupOf(FMA_ITERATIONS * scale);
          return timer.time((encoder) => {
            const pass = encoder.beginComputePass({ label: `roofs:fma-${type}` });
            pass.setPipeline(pipeline);
            pass.setBindGroup(0, group);
            pass.dispatchWorkgroups(workgroups);
            pass.end();
          });
        };
        const { scale, ms } = await calibrate(run, targetMs, samples, 2 ** 16);
        const iterations = FMA_ITERATIONS * scale;
        const value = (2 * workgroups * WG * iterations * CHAINS * 4) / ms / 1e6;
        if (!best || value > best.value) {
          const work = `${workgroups} x ${WG} invocations x ${iterations} iterations x ${CHAINS} vec4<${type}> FMA chains`;
          best = { value, unit: 'GFLOP/s', ms, work };
        }
      }
      return best!;
    };

    const f32 = await fma('f32');
    const f16 = device.features.has('shader-f16') ? await fma('f16') : undefined;

    const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    const bytes = Math.floor(Math.min(options.bytes ?? 256 * 2 ** 20, limit) / 16) * 16;
    const src = buffer(bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC, 'roofs:src');
    const dst = buffer(bytes, GPUBufferUsage.COPY_DST, 'roofs:dst');

    const module = device.createShaderModule({ code: READ_KERNEL, label: 'roofs:read' });
    const pipeline = await device.createComputePipelineAsync({
      label: 'roofs:read',
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    let read: Roof | undefined;
    for (const [mode, workgroups] of [0, 1].flatMap((m) => WORKGROUP_COUNTS.map((w) => [m, w]))) {
      const how = mode ? 'contiguous blocks' : 'grid stride';
      say(`roofs: read bandwidth, ${(bytes / 2 ** 20).toFixed(0)} MiB by ${workgroups} workgroups, ${how}`);
      const params = new ArrayBuffer(16);
      new Uint32Array(params, 0, 3).set([bytes / 16, workgroups * WG, mode]);
      new Float32Array(params, 12, 1)[0] = -12345.5;
      const group = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: uniform(params, 'roofs:read-params') } },
          { binding: 1, resource: { buffer: src } },
          { binding: 2, resource: { buffer: sink } },
        ],
      });
      const readRun = (repeats: number) =>
        timer.time((encoder) => {
          const pass = encoder.beginComputePass({ label: 'roofs:read' });
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, group);
          for (let r = 0; r < repeats; r++) pass.dispatchWorkgroups(workgroups);
          pass.end();
        });
      const r = await calibrate(readRun, targetMs, samples, 64);
      const value = (r.scale * bytes) / r.ms / 1e6;
      if (!read || value > read.value) {
        const work = `${r.scale} x ${(bytes / 2 ** 20).toFixed(0)} MiB read by ${workgroups} x ${WG} invocations, ${how}`;
        read = { value, unit: 'GB/s', ms: r.ms, work };
      }
    }

    say('roofs: copy bandwidth (copyBufferToBuffer)');
    const copyRun = (repeats: number) =>
      timer.time((encoder) => {
        for (let i = 0; i < repeats; i++) encoder.copyBufferToBuffer(src, 0, dst, 0, bytes);
      });
    const c = await calibrate(copyRun, targetMs, samples, 64);
    const copy: Roof = {
      value: (2 * c.scale * bytes) / c.ms / 1e6,
      unit: 'GB/s',
      ms: c.ms,
      work: `${c.scale} x ${(bytes / 2 ** 20).toFixed(0)} MiB copied (read + write counted)`,
    };
    return { f32, f16, read: read!, copy, timing: timer.timing };
  } finally {
    for (const b of made) b.destroy();
    timer.destroy();
  }
}

/** The shape of an attention call, as far as its work and traffic go. */
export interface WorkShape {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  /** Defaults to D. */
  Dv?: number;
  causal: boolean;
  /** Bytes per element of q, k, v and the output (4 for f32, 2 for f16). */
  bytesPerElement?: number;
}

/** Useful flops of one call: 2·B·Hq·Lq·Lk·(D + Dv), halved when causal. */
export function attentionFlops(s: WorkShape): number {
  return (2 * s.B * s.Hq * s.Lq * s.Lk * (s.D + (s.Dv ?? s.D))) / (s.causal ? 2 : 1);
}

/** Bytes a call must move at least: q, k and v read once, the output written once. */
export function attentionBytes(s: WorkShape): number {
  const bpe = s.bytesPerElement ?? 4;
  const Dv = s.Dv ?? s.D;
  return bpe * (s.B * s.Hq * s.Lq * (s.D + Dv) + s.B * s.Hkv * s.Lk * (s.D + Dv));
}

/**
 * Which roof bounds a call: bandwidth when its arithmetic intensity (flops per byte) is below the
 * adapter's ridge point (FMA roof / read roof), as in decode; else compute, as in prefill.
 */
export function boundOf(s: WorkShape, roofs: Roofs): 'compute' | 'bandwidth' {
  const intensity = attentionFlops(s) / attentionBytes(s);
  return intensity < roofs.f32.value / roofs.read.value ? 'bandwidth' : 'compute';
}

/** A call's speed as a fraction of the roof that bounds it (see {@link boundOf}). */
export function roofFraction(
  s: WorkShape,
  ms: number,
  roofs: Roofs,
): { bound: 'compute' | 'bandwidth'; fraction: number; achieved: number; unit: Roof['unit'] } {
  const bound = boundOf(s, roofs);
  if (bound === 'compute') {
    // against the f32 roof even for f16 storage: the kernels compute in f32
    const achieved = attentionFlops(s) / ms / 1e6;
    return { bound, fraction: achieved / roofs.f32.value, achieved, unit: 'GFLOP/s' };
  }
  const achieved = attentionBytes(s) / ms / 1e6;
  return { bound, fraction: achieved / roofs.read.value, achieved, unit: 'GB/s' };
}
