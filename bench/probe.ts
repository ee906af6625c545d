// Counts the compute dispatches a call encodes on a device and, where the device has
// `timestamp-query`, times each compute pass on the GPU, without changing the library: while a
// probe is recording, the command encoders the device creates add timestamp writes to their passes.

const MAX_PASSES = 64;

export interface ProbeResult {
  dispatches: number;
  passes: number;
  /** Sum of the passes' GPU durations (undefined without timestamp-query). */
  gpuMs?: number;
  /** performance.now() when the GPU had finished the recorded work. */
  doneAt: number;
}

export class PassProbe {
  private recording = false;
  private dispatches = 0;
  private passes = 0;
  private readonly querySet?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;
  private readonly readback?: GPUBuffer;

  constructor(private readonly device: GPUDevice) {
    if (device.features.has('timestamp-query')) {
      const size = MAX_PASSES * 2 * 8;
      this.querySet = device.createQuerySet({ type: 'timestamp', count: MAX_PASSES * 2, label: 'probe' });
      this.resolve = device.createBuffer({
        size,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        label: 'probe:resolve',
      });
      this.readback = device.createBuffer({
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: 'probe:readback',
      });
    }
    const createEncoder = device.createCommandEncoder.bind(device);
    device.createCommandEncoder = (descriptor?: GPUCommandEncoderDescriptor) => {
      const encoder = createEncoder(descriptor);
      if (this.recording) this.instrument(encoder);
      return encoder;
    };
  }

  private instrument(encoder: GPUCommandEncoder): void {
    const beginPass = encoder.beginComputePass.bind(encoder);
    encoder.beginComputePass = (descriptor: GPUComputePassDescriptor = {}) => {
      const index = this.passes++;
      const timed = this.querySet && index < MAX_PASSES && !descriptor.timestampWrites;
      const pass = beginPass(
        timed
          ? {
              ...descriptor,
              timestampWrites: {
                querySet: this.querySet!,
                beginningOfPassWriteIndex: 2 * index,
                endOfPassWriteIndex: 2 * index + 1,
              },
            }
          : descriptor,
      );
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => {
        this.dispatches++;
        dispatch(x, y, z);
      };
      const dispatchIndirect = pass.dispatchWorkgroupsIndirect.bind(pass);
      pass.dispatchWorkgroupsIndirect = (buffer: GPUBuffer, offset: number) => {
        this.dispatches++;
        dispatchIndirect(buffer, offset);
      };
      return pass;
    };
  }

  /** Records the passes of the work `call` encodes; resolves once the GPU has finished it. */
  async record<T>(call: () => Promise<T>): Promise<{ value: T; probe: ProbeResult }> {
    this.dispatches = 0;
    this.passes = 0;
    this.recording = true;
    let value: T;
    try {
      value = await call();
    } finally {
      this.recording = false;
    }
    await this.device.queue.onSubmittedWorkDone();
    const probe: ProbeResult = {
      dispatches: this.dispatches,
      passes: this.passes,
      doneAt: performance.now(),
    };
    const timed = Math.min(this.passes, MAX_PASSES);
    if (this.querySet && this.resolve && this.readback && timed > 0) {
      const encoder = this.device.createCommandEncoder({ label: 'probe:resolve' });
      encoder.resolveQuerySet(this.querySet, 0, timed * 2, this.resolve, 0);
      encoder.copyBufferToBuffer(this.resolve, 0, this.readback, 0, timed * 16);
      this.device.queue.submit([encoder.finish()]);
      await this.readback.mapAsync(GPUMapMode.READ, 0, timed * 16);
      const ns = new BigInt64Array(this.readback.getMappedRange(0, timed * 16).slice(0));
      this.readback.unmap();
      let total = 0n;
      for (let i = 0; i < timed; i++) {
        const d = ns[2 * i + 1] - ns[2 * i];
        if (d > 0n) total += d;
      }
      probe.gpuMs = Number(total) / 1e6;
    }
    return { value, probe };
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolve?.destroy();
    this.readback?.destroy();
  }
}
