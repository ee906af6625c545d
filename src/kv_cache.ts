// A KV cache for autoregressive decoding: keys and values of past positions stay on the GPU, each
// step's rows are written into place by a small kernel, and attention reads the first `length`
// rows through strided views (no copies, no re-upload).
import appendSource from '../shaders/kv_cache.wgsl?raw';
import { checkOptions } from './checks';
import type { Context } from './context';
import { elementPrelude, elementStorage } from './f16';
import type { AttentionLayout } from './ops/attention_plan';
import { RUN_OPTION_KEYS, type RunOptions } from './options';
import { Recording } from './program';
import { expectRank, fmt } from './shape';
import { bytesPerElement, expectTensor, Tensor } from './tensor';
import { Usage } from './usage';

export interface KVCacheOptions {
  /** Batch size B. */
  batch: number;
  /** Key/value heads Hkv (fewer than the query heads with grouped-query attention). */
  kvHeads: number;
  /** Key head dim D. */
  headDim: number;
  /** Value head dim Dv. Default `headDim`. */
  valueDim?: number;
  /** Most positions the cache holds. */
  capacity: number;
  /** Element type of keys and values (and of the k, v that `append` takes). Default 'f32'. */
  dtype?: 'f32' | 'f16';
  /**
   * The layout of what `append` takes and of the views: `'bhld'` (default) [B, Hkv, n, D], or
   * `'blhd'` [B, n, Hkv, D] (for `attention(..., { layout: 'blhd' })`).
   */
  layout?: AttentionLayout;
  label?: string;
}

const OPTION_KEYS = [
  'batch',
  'kvHeads',
  'headDim',
  'valueDim',
  'capacity',
  'dtype',
  'layout',
  'label',
] as const;

/** Invocations per workgroup of the append kernel. */
const WG = 64;

/**
 * Keys [B, Hkv, capacity, D] and values [B, Hkv, capacity, Dv] (with layout 'blhd': [B, capacity,
 * Hkv, D] and [B, capacity, Hkv, Dv]) in GPU buffers, of which the first `length` positions are
 * filled. `append` writes a step's keys and values after them, on the GPU;
 * `keys` and `values` are views of the filled part that `attention` reads in place.
 *
 * @example
 * const cache = new KVCache(ctx, { batch: 1, kvHeads: 8, headDim: 64, capacity: 2048 });
 * for (const step of steps) {
 *   const { k, v } = await cache.append(step.k, step.v); // [1, 8, n, 64] each
 *   const { output } = await attention(step.q, k, v, { causal: true });
 * }
 */
export class KVCache {
  readonly batch: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly valueDim: number;
  readonly capacity: number;
  readonly dtype: 'f32' | 'f16';
  readonly layout: AttentionLayout;
  private keyBuffer: GPUBuffer | undefined;
  private valueBuffer: GPUBuffer | undefined;
  private filled = 0;

  constructor(
    readonly ctx: Context,
    options: KVCacheOptions,
  ) {
    checkOptions('KVCache', options, OPTION_KEYS);
    const { batch, kvHeads, headDim, capacity } = options;
    const valueDim = options.valueDim ?? headDim;
    for (const [name, value] of Object.entries({ batch, kvHeads, headDim, valueDim, capacity })) {
      if (!Number.isInteger(value) || value < 1) {
        throw new Error(`KVCache: options.${name} must be a positive integer, received ${String(value)}`);
      }
    }
    const dtype = options.dtype ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16') {
      throw new Error(`KVCache: options.dtype must be 'f32' or 'f16', received '${String(dtype)}'`);
    }
    const layout = options.layout ?? 'bhld';
    if (layout !== 'bhld' && layout !== 'blhd') {
      throw new Error(`KVCache: options.layout must be 'bhld' or 'blhd', received '${String(layout)}'`);
    }
    this.layout = layout;
    this.batch = batch;
    this.kvHeads = kvHeads;
    this.headDim = headDim;
    this.valueDim = valueDim;
    this.capacity = capacity;
    this.dtype = dtype;

    const rows = batch * kvHeads * capacity;
    const bpe = bytesPerElement(dtype);
    const limit = ctx.limits.maxStorageBufferBindingSize;
    const largest = rows * Math.max(headDim, valueDim) * bpe;
    if (largest > limit) {
      throw new Error(
        `KVCache: ${batch} x ${kvHeads} x ${capacity} rows of ${Math.max(headDim, valueDim)} ${dtype} need ${largest} bytes, more than maxStorageBufferBindingSize ${limit}; lower the capacity`,
      );
    }
    const label = options.label ?? 'kv_cache';
    const usage = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;
    this.keyBuffer = ctx.createBuffer(rows * headDim * bpe, usage, `${label}:keys`);
    this.valueBuffer = ctx.createBuffer(rows * valueDim * bpe, usage, `${label}:values`);
  }

  /** Positions filled so far. */
  get length(): number {
    return this.filled;
  }

  /**
   * The filled keys [B, Hkv, length, D] ([B, length, Hkv, D] with layout 'blhd'): a strided view
   * valid until `reset` or `destroy`.
   */
  get keys(): Tensor {
    return this.view('keys', this.buffers('keys')[0], this.headDim);
  }

  /** The filled values [B, Hkv, length, Dv]: a view like {@link keys}. */
  get values(): Tensor {
    return this.view('values', this.buffers('values')[1], this.valueDim);
  }

  /**
   * Writes k [B, Hkv, n, D] and v [B, Hkv, n, Dv] ([B, n, Hkv, D] and [B, n, Hkv, Dv] with layout
   * 'blhd'; the cache's dtype) at positions [length, length + n) on the GPU and returns the views
   * of everything cached. With `encoder` the writes are recorded into the app's encoder: `length`
   * and the views count the step at once, and the app submits the encoder before work that reads
   * them.
   */
  async append(k: Tensor, v: Tensor, options: RunOptions = {}): Promise<{ k: Tensor; v: Tensor }> {
    const [keyBuffer, valueBuffer] = this.buffers('append');
    checkOptions('KVCache.append', options, RUN_OPTION_KEYS);
    const { ctx, batch: B, kvHeads: Hkv } = this;
    expectTensor('KVCache.append: k', k);
    k.assertUsable('KVCache.append: k', ctx);
    expectTensor('KVCache.append: v', v);
    v.assertUsable('KVCache.append: v', ctx);
    const blhd = this.layout === 'blhd';
    expectRank('KVCache.append: k', k.shape, 4, blhd ? 'B, n, Hkv, D' : 'B, Hkv, n, D');
    expectRank('KVCache.append: v', v.shape, 4, blhd ? 'B, n, Hkv, Dv' : 'B, Hkv, n, Dv');
    const n = k.shape[blhd ? 1 : 2];
    const shape = (cols: number) => (blhd ? [B, n, Hkv, cols] : [B, Hkv, n, cols]);
    const expected: [string, Tensor, number[]][] = [
      ['k', k, shape(this.headDim)],
      ['v', v, shape(this.valueDim)],
    ];
    for (const [name, t, shape] of expected) {
      if (t.shape.some((d, i) => d !== shape[i])) {
        throw new Error(
          `KVCache.append: ${name} must have shape ${fmt(shape)}${blhd ? " (layout 'blhd')" : ''}, received ${fmt(t.shape)}`,
        );
      }
      if (t.dtype !== this.dtype) {
        throw new Error(`KVCache.append: ${name} must have dtype '${this.dtype}', received '${t.dtype}'`);
      }
    }
    if (this.filled + n > this.capacity) {
      throw new Error(
        `KVCache.append: a step of ${n} positions at length ${this.filled} would exceed the capacity ${this.capacity}`,
      );
    }

    const storage = elementStorage(ctx, this.dtype);
    const rec = new Recording(ctx, 'kv_cache_append');
    rec.watch(k, v);
    // blhd: each batch item's positions are rows of Hkv heads
    const [slices, heads] = blhd ? [B, Hkv] : [B * Hkv, 1];
    for (const [src, dst, dim] of [
      [k, keyBuffer, this.headDim],
      [v, valueBuffer, this.valueDim],
    ] as const) {
      const cols = heads * dim;
      const total = slices * n * cols;
      rec.dispatch({
        name: 'kv_cache_append',
        sources: [elementPrelude(storage, true), appendSource],
        constants: { WG },
        uniforms: { total, n, cols, capacity: this.capacity, length: this.filled },
        bindings: [src.binding, dst],
        workgroups: Math.ceil(total / WG),
      });
    }
    const submitted = rec.submit(options.encoder);
    this.filled += n;
    await submitted;
    return { k: this.keys, v: this.values };
  }

  /** Empties the cache (and zeroes its buffers) for a new sequence. */
  reset(): void {
    const buffers = this.buffers('reset');
    const encoder = this.ctx.device.createCommandEncoder({ label: 'kv_cache:reset' });
    for (const b of buffers) encoder.clearBuffer(b);
    this.ctx.device.queue.submit([encoder.finish()]);
    this.filled = 0;
  }

  /** @internal for its views (see Tensor.view) */
  readonly kind = 'KVCache';
  /** True once {@link destroy} has run: its views are then unusable too. */
  get destroyed(): boolean {
    return !this.keyBuffer;
  }

  /** Frees the GPU buffers (its views become unusable). Safe to call twice. */
  destroy(): void {
    for (const b of [this.keyBuffer, this.valueBuffer]) if (b) this.ctx.freeBuffer(b);
    this.keyBuffer = undefined;
    this.valueBuffer = undefined;
    this.filled = 0;
  }

  private buffers(what: string): [GPUBuffer, GPUBuffer] {
    if (!this.keyBuffer || !this.valueBuffer) throw new Error(`KVCache.${what}: the cache was destroyed`);
    this.ctx.assertAlive(`KVCache.${what}`);
    return [this.keyBuffer, this.valueBuffer];
  }

  private view(what: string, buffer: GPUBuffer, cols: number): Tensor {
    if (this.filled === 0) throw new Error(`KVCache.${what}: the cache is empty; append first`);
    const { batch: B, kvHeads: H, capacity, filled } = this;
    const [shape, strides] =
      this.layout === 'blhd'
        ? [
            [B, filled, H, cols],
            [capacity * H * cols, H * cols, cols, 1],
          ]
        : [
            [B, H, filled, cols],
            [H * capacity * cols, capacity * cols, cols, 1],
          ];
    return Tensor.view(this.ctx, buffer, shape, this.dtype, strides, this);
  }
}
