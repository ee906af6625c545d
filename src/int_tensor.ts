// Integer tensors (token ids, class targets) for the training ops. The float Tensor has no integer
// dtype, so ids live here: an i32 GPUBuffer with a shape. Created through `intTensor`; not tracked
// by `ctx.scope` (destroy them yourself).
import type { Context } from './context';
import { keepAliveUntil } from './keep_alive';
import { fmt } from './shape';
import { MAP_READ_MODE, Usage } from './usage';

/** An n-d array of i32 in a GPUBuffer, row-major: token ids, class targets (-1 = ignored). */
export class IntTensor {
  private live = true;

  /** @internal use {@link intTensor}. */
  constructor(
    readonly ctx: Context,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
  ) {}

  /** @internal the range a kernel binds for this tensor. */
  get binding(): GPUBufferBinding {
    return { buffer: this.buffer };
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }
  get destroyed(): boolean {
    return !this.live;
  }

  /** @internal throws when `what` cannot use the tensor. */
  assertUsable(what: string, ctx: Context = this.ctx): void {
    if (!this.live) throw new Error(`${what}: tensor ${fmt(this.shape)} was destroyed`);
    if (ctx !== this.ctx) throw new Error(`${what}: tensor belongs to another context`);
    this.ctx.assertAlive(what);
  }

  /** Copy the ids back to the CPU. */
  async read(): Promise<Int32Array> {
    this.assertUsable('read');
    const size = this.size * 4;
    const staging = this.ctx.createBuffer(size, Usage.MAP_READ | Usage.COPY_DST, 'read:ids');
    try {
      const encoder = this.ctx.device.createCommandEncoder({ label: 'read' });
      encoder.copyBufferToBuffer(this.buffer, 0, staging, 0, size);
      this.ctx.device.queue.submit([encoder.finish()]);
      await Promise.race([keepAliveUntil(staging.mapAsync(MAP_READ_MODE)), this.ctx.lost]);
      this.ctx.assertAlive('read');
      const out = new Int32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      return out;
    } finally {
      this.ctx.freeBuffer(staging);
    }
  }

  /** Free the buffer. Safe to call twice. */
  destroy(): void {
    if (!this.live) return;
    this.live = false;
    this.ctx.freeBuffer(this.buffer);
  }
}

/**
 * Upload integers (each in [-2^31, 2^31)) into a new {@link IntTensor} of `shape`.
 *
 * @example
 * const ids = intTensor(ctx, [3, 1, 4, 1], [2, 2]);
 */
export function intTensor(
  ctx: Context,
  data: Int32Array | Uint32Array | readonly number[],
  shape: readonly number[],
): IntTensor {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`intTensor: shape must be an array of positive integers, received [${String(shape)}]`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) {
    throw new Error(`intTensor: data has ${data.length} elements, expected ${size} for shape ${fmt(shape)}`);
  }
  const values = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    const v = Number(data[i]);
    if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
      throw new Error(`intTensor: data[${i}] must be an integer in [-2^31, 2^31), received ${data[i]}`);
    }
    values[i] = v;
  }
  const buffer = ctx.createBuffer(size * 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, 'ids');
  ctx.device.queue.writeBuffer(buffer, 0, values);
  return new IntTensor(ctx, buffer, Object.freeze([...shape]));
}
