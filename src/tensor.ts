import type { Context } from './context';
import { f16ToFloat32, float32ToF16 } from './f16';
import { keepAliveUntil } from './keep_alive';
import { MAP_READ_MODE, Usage } from './usage';

/**
 * Element types. `f32`: one float per element. `f16`: halves packed two per u32 (no optional
 * feature needed). `bool`: one byte per element (0 = false), packed four per u32.
 */
export type DType = 'f32' | 'f16' | 'bool';

/**
 * What {@link Tensor.read} returns for a dtype: `Float32Array` for `f32` and `f16` (f16 is widened),
 * `Uint8Array` for `bool` (0 = false, 1 = true). For the union {@link DType}, the union of both.
 */
export type ReadType<D extends DType> = D extends 'bool' ? Uint8Array : Float32Array;

export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Uint8Array
  | readonly (number | boolean)[];

/** Bytes one element takes in a buffer. */
export function bytesPerElement(dtype: DType): number {
  return dtype === 'f32' ? 4 : dtype === 'f16' ? 2 : 1;
}

const USAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

/** @internal the object whose buffer a view reads, e.g. a KVCache. */
export interface ViewOwner {
  readonly kind: string;
  readonly destroyed: boolean;
}

/**
 * An n-d array in a GPUBuffer, row-major. Create tensors through a {@link Context}.
 * `D` is the element type where it is known, e.g. `Tensor<'bool'>` for a mask; a plain `Tensor`
 * is a tensor of any dtype.
 */
export class Tensor<D extends DType = DType> {
  private live = true;

  private constructor(
    readonly ctx: Context,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: D,
    private readonly ownsBuffer: boolean,
    /**
     * Elements from one index of each dim to the next in the buffer: row-major for an ordinary
     * tensor; other strides for a view, e.g. a KV cache's keys [B, Hkv, length, D] of a buffer
     * [B, Hkv, capacity, D] have strides [Hkv * capacity * D, capacity * D, D, 1].
     */
    readonly strides: readonly number[] = rowMajorStrides(shape),
    /** What a view's buffer belongs to (a KV cache): once it is destroyed, so is the view. */
    private readonly owner?: ViewOwner,
    /** Where the tensor starts in its buffer (a wrapped range of an app's buffer), in bytes. */
    readonly byteOffset = 0,
  ) {
    ctx.track(this);
  }

  /** @internal */
  static empty<D extends DType>(
    ctx: Context,
    shape: readonly number[],
    dtype: D,
    label = 'tensor',
  ): Tensor<D> {
    const size = checkShape(shape, label);
    const buffer = ctx.createBuffer(size * bytesPerElement(dtype), USAGE, label);
    return new Tensor(ctx, buffer, Object.freeze([...shape]), dtype, true);
  }

  /** @internal */
  static fromData<D extends DType>(
    ctx: Context,
    data: TensorData,
    shape: readonly number[],
    dtype: D,
    label = 'tensor',
  ): Tensor<D> {
    const size = checkShape(shape, label);
    if (data.length !== size) {
      throw new Error(
        `${label}: data has ${data.length} elements, expected ${size} for shape [${shape.join(', ')}]`,
      );
    }
    const t = Tensor.empty(ctx, shape, dtype, label);
    let bytes = encode(data, dtype);
    if (bytes.byteLength % 4) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4); // writeBuffer takes whole words
      padded.set(bytes);
      bytes = padded;
    }
    ctx.device.queue.writeBuffer(t.buffer, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return t;
  }

  /** @internal */
  static wrap<D extends DType>(
    ctx: Context,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: D,
    offset = 0,
    strides: readonly number[] = rowMajorStrides(shape),
  ): Tensor<D> {
    if (typeof buffer !== 'object' || buffer === null || typeof buffer.usage !== 'number') {
      throw new Error(`wrap: buffer must be a GPUBuffer, received ${describeValue(buffer)}`);
    }
    checkShape(shape, 'wrap');
    checkStrides('wrap', shape, strides);
    const alignment = ctx.device.limits.minStorageBufferOffsetAlignment;
    if (!Number.isInteger(offset) || offset < 0 || offset % alignment !== 0) {
      throw new Error(
        `wrap: offset must be a multiple of minStorageBufferOffsetAlignment (${alignment} bytes on this device), received ${offset}`,
      );
    }
    // bound as a range of whole words
    const needed = align4(spanOf(shape, strides) * bytesPerElement(dtype));
    if (buffer.size < offset + needed) {
      throw new Error(
        `wrap: buffer has ${buffer.size} bytes, expected at least ${offset + needed} for ${dtype} shape [${shape.join(', ')}] at offset ${offset}`,
      );
    }
    if (!(buffer.usage & Usage.STORAGE)) {
      throw new Error(
        `wrap: the buffer needs GPUBufferUsage.STORAGE (and COPY_SRC to be read back), received usage ${usageNames(buffer.usage)}`,
      );
    }
    return new Tensor(
      ctx,
      buffer,
      Object.freeze([...shape]),
      dtype,
      false,
      Object.freeze([...strides]),
      undefined,
      offset,
    );
  }

  /** @internal the range of the buffer a kernel binds for this tensor (none of it when empty). */
  get binding(): GPUBufferBinding {
    if (this.byteOffset === 0 && this.size > 0) return { buffer: this.buffer };
    return {
      buffer: this.buffer,
      offset: this.byteOffset,
      size: align4(this.spanElements * bytesPerElement(this.dtype)),
    };
  }

  /**
   * @internal a view (no copy, never destroys the buffer) of the elements of `buffer` at
   * `strides` (one per dim, in elements; the last dim contiguous).
   */
  static view<D extends DType>(
    ctx: Context,
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: D,
    strides: readonly number[],
    owner?: ViewOwner,
  ): Tensor<D> {
    checkShape(shape, 'view');
    checkStrides('view', shape, strides);
    const needed = spanOf(shape, strides) * bytesPerElement(dtype);
    if (buffer.size < needed) {
      throw new Error(`view: buffer has ${buffer.size} bytes, expected at least ${needed}`);
    }
    return new Tensor(
      ctx,
      buffer,
      Object.freeze([...shape]),
      dtype,
      false,
      Object.freeze([...strides]),
      owner,
    );
  }

  /** True for a tensor on an app's buffer (`ctx.wrap`): the library cannot vouch for it. */
  get wrapped(): boolean {
    return !this.ownsBuffer && this.owner === undefined;
  }

  /** False for a view whose elements are not row-major and dense in the buffer. */
  get contiguous(): boolean {
    const dense = rowMajorStrides(this.shape);
    return this.strides.every((x, i) => x === dense[i]);
  }

  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }
  get destroyed(): boolean {
    return !this.live || this.owner?.destroyed === true;
  }

  /**
   * @internal throws when the tensor cannot be used by `what`; a strided view only where
   * `allowStrided` (ops that read their input through its strides), a tensor with a dim of 0 only
   * where `allowEmpty` (attention and its backward).
   */
  assertUsable(what: string, ctx: Context = this.ctx, allowStrided = false, allowEmpty = false): void {
    if (!this.live) throw new Error(`${what}: tensor [${this.shape.join(', ')}] was destroyed`);
    if (!allowEmpty && this.size === 0) {
      throw new Error(
        `${what}: tensor [${this.shape.join(', ')}] has no elements; of the ops, only attention and attentionBackward take tensors with a dim of 0`,
      );
    }
    if (this.owner?.destroyed) {
      throw new Error(
        `${what}: tensor [${this.shape.join(', ')}] is a view of a ${this.owner.kind} that was destroyed`,
      );
    }
    if (ctx !== this.ctx) throw new Error(`${what}: tensor belongs to another context`);
    if (!allowStrided && !this.contiguous) {
      throw new Error(
        `${what}: expected a contiguous tensor, received a view [${this.shape.join(', ')}] with strides [${this.strides.join(', ')}]`,
      );
    }
    this.ctx.assertAlive(what);
  }

  /**
   * Copy the contents back to the CPU. f32 and f16 tensors read as Float32Array, bool as Uint8Array
   * (see {@link ReadType}).
   */
  async read(): Promise<ReadType<D>> {
    this.assertUsable('read', this.ctx, true, true);
    if (!(this.buffer.usage & Usage.COPY_SRC)) {
      throw new Error(
        `read: the tensor's buffer needs GPUBufferUsage.COPY_SRC to be read back, received usage ${usageNames(this.buffer.usage)}`,
      );
    }
    if (this.size === 0)
      return (this.dtype === 'bool' ? new Uint8Array(0) : new Float32Array(0)) as ReadType<D>;
    const { device } = this.ctx;
    // A strided view reads its whole span, then gathers its elements.
    const size = this.spanElements * bytesPerElement(this.dtype);
    const staging = this.ctx.createBuffer(size, Usage.MAP_READ | Usage.COPY_DST, `read:${this.buffer.label}`);
    try {
      const encoder = device.createCommandEncoder({ label: 'read' });
      device.pushErrorScope('validation');
      encoder.copyBufferToBuffer(this.buffer, this.byteOffset, staging, 0, staging.size);
      device.queue.submit([encoder.finish()]);
      const error = await device.popErrorScope();
      if (error) throw new Error(`read: WebGPU error: ${error.message}`);
      await Promise.race([keepAliveUntil(staging.mapAsync(MAP_READ_MODE)), this.ctx.lost]);
      this.ctx.assertAlive('read');
      const bytes = staging.getMappedRange().slice(0, size);
      staging.unmap();
      const data: Float32Array | Uint8Array =
        this.dtype === 'f32'
          ? new Float32Array(bytes)
          : this.dtype === 'f16'
            ? f16ToFloat32(new Uint16Array(bytes))
            : new Uint8Array(bytes);
      return (this.contiguous ? data : this.gather(data)) as ReadType<D>;
    } catch (e) {
      // A mapAsync aborted by device loss can reject before ctx.lost resolves: give it a turn.
      await Promise.race([this.ctx.lost, new Promise((r) => setTimeout(r, 10))]);
      this.ctx.assertAlive('read');
      throw e;
    } finally {
      this.ctx.freeBuffer(staging);
    }
  }

  /** @internal elements of the buffer from the tensor's first element to its last. */
  get spanElements(): number {
    return this.contiguous ? this.size : spanOf(this.shape, this.strides);
  }

  /** The elements of a strided view's span, row-major. */
  private gather<T extends Float32Array | Uint8Array>(span: T): T {
    const out = new (span.constructor as new (n: number) => T)(this.size);
    const rank = this.rank;
    const cols = this.shape[rank - 1];
    const index = new Array<number>(rank).fill(0);
    for (let n = 0; n < this.size; n += cols) {
      const at = index.reduce((a, x, i) => a + x * this.strides[i], 0);
      out.set(span.subarray(at, at + cols), n);
      for (let i = rank - 2; i >= 0 && ++index[i] === this.shape[i]; i--) index[i] = 0;
    }
    return out;
  }

  /** Free the buffer (a wrapped buffer stays with its owner). Safe to call twice. */
  destroy(): void {
    if (!this.live) return;
    this.live = false;
    if (this.ownsBuffer) this.ctx.freeBuffer(this.buffer);
  }
}

/** Row-major element strides of `shape`. */
export function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

/** Throws unless `strides` are one non-negative integer per dim of `shape`, the last 1. */
function checkStrides(what: string, shape: readonly number[], strides: readonly number[]): void {
  if (
    !Array.isArray(strides) ||
    strides.length !== shape.length ||
    strides.some((x) => !Number.isInteger(x) || x < 0) ||
    strides.at(-1) !== 1
  ) {
    throw new Error(
      `${what}: strides must be ${shape.length} non-negative integers (one per dim of [${shape.join(', ')}]), the last 1, received ${Array.isArray(strides) ? `[${strides.join(', ')}]` : describeValue(strides)}`,
    );
  }
}

/** Elements from the first to the last element of a tensor of `shape` at `strides`, inclusive. */
function spanOf(shape: readonly number[], strides: readonly number[]): number {
  if (shape.includes(0)) return 0;
  return 1 + shape.reduce((a, n, i) => a + (n - 1) * strides[i], 0);
}

/** Validates a shape (dims of 0 allowed: an empty tensor) and returns its element count. */
function checkShape(shape: readonly number[], label: string): number {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`${label}: shape must be an array of non-negative integers, received [${String(shape)}]`);
  }
  return shape.reduce((a, b) => a * b, 1);
}

function encode(data: TensorData, dtype: DType): Uint8Array {
  if (dtype === 'f32') {
    const f = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>, Number);
    return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  }
  if (dtype === 'f16') {
    // A Uint16Array is taken as f16 bits already; anything else is converted from numbers.
    const h =
      data instanceof Uint16Array ? data : float32ToF16(Array.from(data as ArrayLike<number>, Number));
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  }
  return Uint8Array.from(data as ArrayLike<number | boolean>, (x) => (x ? 1 : 0));
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/** `usage` as the names of its GPUBufferUsage flags, e.g. 'STORAGE | COPY_DST'. */
function usageNames(usage: number): string {
  const names = Object.entries(Usage)
    .filter(([, flag]) => usage & flag)
    .map(([name]) => name);
  return names.length ? names.join(' | ') : 'none';
}

/** Throws unless `x` is a Tensor (a plain array or typed array must be uploaded first). */
export function expectTensor(what: string, x: unknown): asserts x is Tensor {
  if (!(x instanceof Tensor)) {
    throw new Error(
      `${what}: expected a Tensor (upload data with ctx.tensor(data, shape)), received ${describeValue(x)}`,
    );
  }
}

/** What a value is, for an error message. */
export function describeValue(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return `an array of length ${x.length}`;
  if (ArrayBuffer.isView(x)) return `a ${x.constructor.name}`;
  if (typeof x === 'object') return `an object (${x.constructor?.name ?? 'Object'})`;
  return typeof x;
}
