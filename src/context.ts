import { checkOptions } from './checks';
import { keepAliveUntil } from './keep_alive';
import { ATTENTION_KERNELS, type AttentionKernel, SUBGROUP_MATRIX_FEATURE } from './kernel_forms';
import { type DType, Tensor, type TensorData } from './tensor';
import {
  AUTOTUNE_OPTION_KEYS,
  type AutotuneOptions,
  checkTuneOptions,
  type TuneOptions,
  type TuneResult,
  tuneAtFirstUse,
  tuneAttention,
} from './tune';
import { knownShapes, type TuneShape, type TuningShape } from './tune_table';
import { Usage } from './usage';

export { ATTENTION_KERNELS, type AttentionKernel, SUBGROUP_MATRIX_FEATURE };

export type LimitName = (typeof RAISED_LIMITS)[number] | 'maxComputeWorkgroupsPerDimension';
/** The limits the library sizes and splits its work by. */
export type Limits = Record<LimitName, number>;

const CONTEXT_OPTION_KEYS = [
  'gpu',
  'device',
  'adapter',
  'powerPreference',
  'disableFeatures',
  'limits',
  'label',
  'attentionKernel',
  'autotune',
];

/** Most bytes of scratch buffers a context keeps for reuse between calls. */
const SCRATCH_POOL_BYTES = 16 * 1024 * 1024;

/** Optional adapter features the library uses when they exist. */
const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** Limits raised to the adapter's maximum by default: the ones attention sizes depend on. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
] as const;

export interface ContextOptions {
  /** A `GPU` object: `navigator.gpu` (the default) or, in Node, `create([])` from the `webgpu` package. */
  gpu?: GPU;
  /** Wrap a device the app already has; the context then never destroys it. */
  device?: GPUDevice;
  /** Adapter to request the device from (instead of `gpu.requestAdapter()`). */
  adapter?: GPUAdapter;
  powerPreference?: GPUPowerPreference;
  /** Optional features not to request even if the adapter has them, e.g. `['subgroups']`. */
  disableFeatures?: GPUFeatureName[];
  /**
   * Limits the library keeps within, instead of the device's. Values above the device's are
   * clamped; lower values make the library split work as it would on a smaller device.
   */
  limits?: Partial<Limits>;
  /**
   * Tune attention's kernel form at first use (off by default): the first `attention` call of
   * each shape class not tuned yet (see `shapeClass`: dtype, causal, head dims, GQA group, B·Hq,
   * Lq, Lk) times the candidate forms on zero inputs of its shape, as {@link tuneAttention} does,
   * within `budgetMs` per class (default 500; compiles included), records the fastest, and then
   * runs with it; later calls of the class find the choice by a Map lookup and time nothing.
   * Concurrent first calls of a class wait for one tuning; tunings of one device run one at a
   * time. Where tuning cannot choose (no working clock, one candidate only, the budget spent
   * first, candidates failed, equal timings), the rule stays for the class, recorded so that it
   * is not timed again; `ctx.tune()` times such classes on request. Only the first call of a class
   * waits (its promise resolves later); `attention`'s signature is the same either way.
   * Choices restored with `importTuning` are not timed again.
   */
  autotune?: boolean | AutotuneOptions;
  label?: string;
  /**
   * The form of `attention`'s kernels (the flash kernel and the split-K decode pass):
   * `'workgroup'` stages K and V tiles in workgroup memory shared by the workgroup's rows (what
   * GPUs are fast at); `'registers'` holds several query rows or keys per invocation as 4 x 4
   * register blocks and reads K and V straight from storage, with no barriers (what adapters that
   * run compute on the CPU, such as SwiftShader, are fast at). Default: `'registers'` on a
   * fallback adapter (`adapter.info.isFallbackAdapter`, or SwiftShader), else `'workgroup'`.
   * `'registers'` needs head dims that are multiples of 4 and no `returnWeights`; other calls use
   * `'workgroup'` either way. `'tiled'` (for GPUs; chosen by `tuneAttention` where it
   * measures fastest, or on request) runs prefill with FlashAttention-2's register tiles: each
   * invocation owns a 4 x 4 tile of scores and four rows of the output, q, k and v staged in
   * workgroup memory in chunks (about 14 KiB whatever the head dims); without `returnWeights`; its
   * decode pass and backward are the `'workgroup'` ones. `'matrix'` (opt-in only; prefill) computes S =
   * Q K^T and O += P V as f16 x f16 -> f32 matrix tiles: with subgroup matrices where the device
   * has `chromium-experimental-subgroup-matrix`, shader-f16 and subgroups and the adapter reports
   * an f16 config, else through an emulation of them (a correctness reference, slow); f16
   * tolerance, also for f32 inputs (rounded to f16, so they must lie within f16's range); without
   * `returnWeights` or `dropout` (those calls, decode and backward run the `'workgroup'` form).
   */
  attentionKernel?: AttentionKernel;
}

/** Facts about the adapter a context's device came from. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  description: string;
  /** A fallback adapter: one with major performance caveats, typically a CPU implementation. */
  isFallbackAdapter: boolean;
  /** The smallest subgroup size the adapter may use (undefined where the browser does not say). */
  subgroupMinSize?: number;
  /**
   * The subgroup-matrix shapes the adapter reports (`adapter.info.subgroupMatrixConfigs`; empty
   * where it has none or hides them, without `chromium-experimental-subgroup-matrix`).
   */
  subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
}

/**
 * A subgroup-matrix shape of the adapter: left M x K and right K x N matrices of `componentType`
 * multiplied into M x N of `resultComponentType` (WebGPU's experimental GPUSubgroupMatrixConfig).
 */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** Why a context stopped working. */
export interface ContextLostInfo {
  reason: 'destroyed' | 'unknown';
  message: string;
}

/** Raised for work on a context whose device is lost or destroyed. */
export class DeviceLostError extends Error {
  constructor(
    readonly info: ContextLostInfo,
    what: string,
  ) {
    super(
      `${what}: the GPU device is lost (${info.reason}: ${info.message || 'no message'}); create a new context`,
    );
    this.name = 'DeviceLostError';
  }
}

/** Raised for work on a context after its {@link Context.destroy}. */
export class ContextDestroyedError extends Error {
  constructor(what: string) {
    super(`${what}: the context was destroyed (ctx.destroy()); create a new context`);
    this.name = 'ContextDestroyedError';
  }
}

/**
 * The Tensors in what a scope's function returned: it, or those held by its arrays and objects at
 * any depth (typed arrays are not searched).
 */
function returnedTensors(result: unknown, found = new Set<unknown>()): Set<unknown> {
  if (result instanceof Tensor) found.add(result);
  else if (result && typeof result === 'object' && !ArrayBuffer.isView(result) && !found.has(result)) {
    found.add(result); // (also marks it seen)
    for (const x of Object.values(result)) returnedTensors(x, found);
  }
  return found;
}

/**
 * Owns one GPUDevice: its features and limits, a pipeline cache, buffer accounting and dispatch.
 * Create it with {@link createContext}.
 */
export class Context {
  /**
   * Resolves once the device is lost: destroyed (by anyone, including {@link destroy} of a context
   * that created its device) or lost by the browser or driver. {@link destroy} of a context that
   * wraps an app's device does not resolve it: the device lives on.
   */
  readonly lost: Promise<ContextLostInfo>;
  /** The device's limits, lowered where {@link ContextOptions.limits} asked. */
  readonly limits: Readonly<Limits>;
  /** The kernel form `attention` uses here (see {@link ContextOptions.attentionKernel}). */
  readonly attentionKernel: AttentionKernel;
  /** How first calls are tuned, or undefined where they are not (see {@link ContextOptions.autotune}). */
  readonly autotune: AutotuneOptions | undefined;
  private lostInfo: ContextLostInfo | undefined;
  private destroyed = false;
  private bytes = 0;
  private peak = 0;
  private readonly dummies = new Map<string | number, GPUBuffer>();
  private uniforms: GPUBuffer | undefined;
  /** Scratch buffers of submitted calls, by size, for later calls to reuse (see takeScratch). */
  private readonly scratchPool = new Map<number, GPUBuffer[]>();
  private pooled = 0;
  /** Tensors made inside each open {@link scope}, innermost last. */
  private readonly scopes: Set<Tensor>[] = [];

  /** @internal use {@link createContext}. */
  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: AdapterDescription,
    private readonly ownsDevice: boolean,
    options: Pick<ContextOptions, 'limits' | 'attentionKernel' | 'autotune'> = {},
    /**
     * The GPU object and adapter the device came from, held as long as the context: Dawn in Node
     * crashes when they are garbage-collected while their device is alive.
     */
    readonly origin: { gpu?: GPU; adapter?: GPUAdapter } = {},
  ) {
    const names: LimitName[] = [...RAISED_LIMITS, 'maxComputeWorkgroupsPerDimension'];
    this.limits = Object.fromEntries(
      names.map((n) => [n, Math.min(device.limits[n], options.limits?.[n] ?? Number.POSITIVE_INFINITY)]),
    ) as Limits;
    this.attentionKernel =
      options.attentionKernel ?? (adapterInfo.isFallbackAdapter ? 'registers' : 'workgroup');
    this.autotune = options.autotune === true ? {} : options.autotune || undefined;
    this.lost = device.lost.then((info) => {
      this.lostInfo ??= {
        reason: info.reason === 'destroyed' ? 'destroyed' : 'unknown',
        message: info.message,
      };
      return this.lostInfo;
    });
  }

  /** Features the device was created with. */
  get features(): ReadonlySet<string> {
    return this.device.features;
  }
  get hasF16(): boolean {
    return this.device.features.has('shader-f16');
  }
  get hasSubgroups(): boolean {
    return this.device.features.has('subgroups');
  }
  get hasTimestamps(): boolean {
    return this.device.features.has('timestamp-query');
  }
  /** True once the device is lost or the context destroyed: it can do no more work. */
  get isLost(): boolean {
    return this.lostInfo !== undefined || this.destroyed;
  }
  /** Bytes of GPU buffers this context has allocated and not yet freed. */
  get liveBytes(): number {
    return this.bytes;
  }
  /** Largest {@link liveBytes} seen since the last {@link resetPeak}. */
  get peakBytes(): number {
    return this.peak;
  }
  resetPeak(): void {
    this.peak = this.bytes;
  }

  /** Throws a {@link DeviceLostError} if the context can no longer do work. */
  assertAlive(what: string): void {
    if (this.destroyed) throw new ContextDestroyedError(what);
    if (this.lostInfo) throw new DeviceLostError(this.lostInfo, what);
  }

  /** Upload `data` into a new tensor of `shape` (row-major). */
  tensor<D extends DType = 'f32'>(
    data: TensorData,
    shape: readonly number[],
    options: { dtype?: D; label?: string } = {},
  ): Tensor<D> {
    return Tensor.fromData(this, data, shape, options.dtype ?? ('f32' as D), options.label);
  }

  /**
   * A zero-filled tensor of `shape`. The dtype is given as for {@link tensor} (`{ dtype }`), or
   * directly: `zeros([2, 3], 'f16')`.
   */
  zeros<D extends DType = 'f32'>(
    shape: readonly number[],
    options: D | { dtype?: D; label?: string } = {},
    label?: string,
  ): Tensor<D> {
    const o = typeof options === 'string' ? { dtype: options, label } : options;
    return Tensor.empty(this, shape, o.dtype ?? ('f32' as D), o.label);
  }

  /**
   * Wraps a buffer the app already has, or the range of it from `offset` bytes on (a multiple of
   * the device's minStorageBufferOffsetAlignment, usually 256), without a copy; the tensor never
   * destroys it. The buffer needs GPUBufferUsage.STORAGE, and COPY_SRC to be read back. The dtype
   * is given as for {@link tensor}, or directly: `wrap(buffer, shape, 'f16')`. `strides` (elements
   * from one index of each dim to the next, the last 1; default row-major) wraps a strided view,
   * e.g. q, k or v of a packed QKV projection: `attention` reads q, k and v through their strides;
   * ops that need contiguous tensors refuse such a view.
   *
   * @example
   * // the k part of a packed [3, B, H, L, D] qkv buffer
   * const k = ctx.wrap(qkv, [B, H, L, D], { offset: B * H * L * D * 4 });
   * // k of a packed [B, L, 3, H, D] buffer, as [B, L, H, D] (attention's layout 'blhd')
   * const k2 = ctx.wrap(qkv2, [B, L, H, D], { offset: H * D * 4, strides: [L * 3 * H * D, 3 * H * D, D, 1] });
   */
  wrap<D extends DType = 'f32'>(
    buffer: GPUBuffer,
    shape: readonly number[],
    options: D | { dtype?: D; offset?: number; strides?: readonly number[] } = {},
  ): Tensor<D> {
    const o = typeof options === 'string' ? { dtype: options } : options;
    return Tensor.wrap(this, buffer, shape, o.dtype ?? ('f32' as D), o.offset ?? 0, o.strides);
  }

  /**
   * Runs `fn` and then destroys every tensor created while it ran, except the tensors it returns
   * (a Tensor, or arrays and objects holding Tensors at any depth, e.g. `{ grads: { dq, dk } }`).
   * Scopes nest; run them one after another, not interleaved across concurrent async work.
   *
   * @example
   * const out = await ctx.scope(async () => {
   *   const q = ctx.tensor(data, shape); // freed when the scope ends
   *   return (await attention(q, q, q)).output; // kept
   * });
   */
  async scope<T>(fn: () => Promise<T> | T): Promise<T> {
    const made = new Set<Tensor>();
    this.scopes.push(made);
    let result: T | undefined;
    try {
      result = await fn();
      return result;
    } finally {
      this.scopes.splice(this.scopes.lastIndexOf(made), 1);
      const kept = returnedTensors(result);
      for (const t of made) {
        if (kept.has(t))
          this.scopes.at(-1)?.add(t); // hand it to the enclosing scope
        else t.destroy();
      }
    }
  }

  /** @internal called by every new Tensor. */
  track(t: Tensor): void {
    this.scopes.at(-1)?.add(t);
  }

  /** @internal allocate a counted buffer; free it with {@link freeBuffer}. */
  createBuffer(size: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    this.assertAlive(label);
    const buffer = this.device.createBuffer({ size: Math.max(4, align4(size)), usage, label });
    this.bytes += buffer.size;
    this.peak = Math.max(this.peak, this.bytes);
    return buffer;
  }

  /** @internal */
  freeBuffer(buffer: GPUBuffer): void {
    this.bytes -= buffer.size;
    buffer.destroy();
  }

  /**
   * @internal a scratch buffer of exactly `size` bytes (rounded to 4) for one call: a pooled one
   * when a submitted call returned one of that size, else a new one. Its bytes count as live until
   * {@link returnScratch}. Reuse is safe without waiting for the GPU: later submits run after
   * earlier ones, and no scratch buffer is written from the CPU after its call.
   */
  takeScratch(size: number, label: string): GPUBuffer {
    const bytes = Math.max(4, align4(size));
    const buffer = this.scratchPool.get(bytes)?.pop();
    if (!buffer) return this.createBuffer(bytes, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, label);
    this.pooled -= buffer.size;
    this.bytes += buffer.size;
    this.peak = Math.max(this.peak, this.bytes);
    return buffer;
  }

  /**
   * @internal hands a submitted call's scratch buffer back: kept for reuse while the pool holds
   * less than SCRATCH_POOL_BYTES, else destroyed. Pooled bytes are not live (see pooledBytes).
   */
  returnScratch(buffer: GPUBuffer): void {
    this.bytes -= buffer.size;
    if (this.destroyed || this.pooled + buffer.size > SCRATCH_POOL_BYTES) {
      buffer.destroy();
      return;
    }
    const list = this.scratchPool.get(buffer.size) ?? [];
    list.push(buffer);
    this.scratchPool.set(buffer.size, list);
    this.pooled += buffer.size;
  }

  /** Bytes of scratch buffers kept for reuse by later calls (not part of {@link liveBytes}). */
  get pooledBytes(): number {
    return this.pooled;
  }

  /** @internal stop counting a buffer without destroying it (left to the garbage collector). */
  forgetBuffer(buffer: GPUBuffer): void {
    this.bytes -= buffer.size;
  }

  /**
   * @internal A small placeholder bound where a kernel's optional buffer is unused. One per `slot`
   * (a name, or a binding number) so that two writable placeholders never alias in one dispatch.
   */
  dummy(slot: string | number): GPUBuffer {
    let buffer = this.dummies.get(slot);
    if (!buffer) {
      const label = `dummy:${typeof slot === 'number' ? `binding${slot}` : slot}`;
      buffer = this.device.createBuffer({ size: 16, usage: Usage.STORAGE, label });
      this.dummies.set(slot, buffer);
    }
    return buffer;
  }

  /**
   * @internal the buffer a submit's uniforms are written to, grown to at least `size` bytes. One
   * per context: each submit writes its uniforms just before submitting, so calls in flight never
   * see each other's values.
   */
  uniformStorage(size: number): GPUBuffer {
    if (!this.uniforms || this.uniforms.size < size) {
      this.uniforms?.destroy(); // work already submitted keeps it alive until it finishes
      this.uniforms = this.device.createBuffer({
        size: Math.max(4096, 2 ** Math.ceil(Math.log2(size))),
        usage: Usage.UNIFORM | Usage.COPY_DST,
        label: 'uniforms',
      });
    }
    return this.uniforms;
  }

  /**
   * Times attention's kernel forms for these shapes' classes and keeps the fastest for this
   * context: {@link tuneAttention}`(ctx, shapes, options)`. Without shapes, the classes this
   * context has met: those tuned, and those first-use tuning ({@link ContextOptions.autotune})
   * left to the rule (for example when its budget was spent), each timed again.
   *
   * @example
   * const ctx = await createContext({ autotune: { budgetMs: 0 } }); // records each class, times none
   * // ... run the app's calls once, then, when there is time:
   * const { choices } = await ctx.tune(undefined, { budgetMs: 10_000 });
   */
  tune(shapes?: readonly TuneShape[], options?: TuneOptions): Promise<TuneResult> {
    return tuneAttention(this, shapes ?? knownShapes(this), options);
  }

  /**
   * @internal attention's first-use tuning: undefined when `autotune` is off or the call's class
   * is settled (no wait), else the promise of its class's tuning.
   */
  tuneFirstUse(shape: TuningShape, dtype: string, causal: boolean): Promise<void> | undefined {
    return this.autotune && tuneAtFirstUse(this, shape, dtype, causal, this.autotune);
  }

  /**
   * @internal a context on the same device (which it does not own) whose `attention` runs in
   * `form`: the tuner times each form through one.
   */
  withAttentionKernel(form: AttentionKernel): Context {
    const { device, adapterInfo, limits, origin } = this;
    return new Context(device, adapterInfo, false, { limits, attentionKernel: form }, origin);
  }

  /** Resolves when all work submitted so far has finished on the GPU. */
  async sync(): Promise<void> {
    this.assertAlive('sync');
    await keepAliveUntil(this.device.queue.onSubmittedWorkDone());
  }

  /**
   * Ends the context: later work throws {@link ContextDestroyedError}. Destroys the device when
   * the context created it; a wrapped app device lives on (and {@link lost} does not resolve).
   */
  destroy(): void {
    for (const b of this.dummies.values()) b.destroy();
    this.dummies.clear();
    this.uniforms?.destroy();
    this.uniforms = undefined;
    for (const list of this.scratchPool.values()) for (const b of list) b.destroy();
    this.scratchPool.clear();
    this.pooled = 0;
    this.destroyed = true;
    if (this.ownsDevice) this.device.destroy();
  }
}

/**
 * Create a context: get a device from `options.device`, or from an adapter of `options.gpu`
 * (default `navigator.gpu`), with the optional features that exist and the adapter's larger limits.
 */
export async function createContext(options: ContextOptions = {}): Promise<Context> {
  checkOptions('createContext', options, CONTEXT_OPTION_KEYS);
  const limitNames: readonly string[] = [...RAISED_LIMITS, 'maxComputeWorkgroupsPerDimension'];
  for (const [name, value] of Object.entries(options.limits ?? {})) {
    if (!limitNames.includes(name)) {
      throw new Error(`createContext: unknown limit '${name}', expected one of ${limitNames.join(', ')}`);
    }
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`createContext: limits.${name} must be a positive integer, received ${value}`);
    }
  }
  if (
    options.attentionKernel !== undefined &&
    !(ATTENTION_KERNELS as readonly string[]).includes(options.attentionKernel)
  ) {
    throw new Error(
      `createContext: options.attentionKernel must be one of ${ATTENTION_KERNELS.map((k) => `'${k}'`).join(', ')}, received ${JSON.stringify(options.attentionKernel)}`,
    );
  }
  const { autotune } = options;
  if (autotune !== undefined && typeof autotune !== 'boolean') {
    if (autotune === null || typeof autotune !== 'object') {
      throw new Error(
        `createContext: options.autotune must be a boolean or { budgetMs?, candidates?, repeats?, progress? }, received ${autotune === null ? 'null' : typeof autotune}`,
      );
    }
    checkTuneOptions('createContext', 'options.autotune', autotune, AUTOTUNE_OPTION_KEYS);
  }
  if (options.device) {
    // the adapter the device came from, where given, describes it (with its matrix configs)
    const info = options.adapter?.info ?? options.device.adapterInfo;
    if (options.adapter) warnMissing(options.device, options.adapter);
    return new Context(options.device, describe(info), false, options);
  }
  let adapter = options.adapter;
  const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!adapter) {
    if (!gpu) {
      throw new Error(
        'createContext: no WebGPU found: options.gpu is not set and navigator.gpu is undefined ' +
          "(in Node pass { gpu: create([]) } from the 'webgpu' package; in a browser serve the page from a secure origin)",
      );
    }
    adapter = (await gpu.requestAdapter({ powerPreference: options.powerPreference })) ?? undefined;
    if (!adapter) {
      throw new Error(
        'createContext: requestAdapter() returned null: no WebGPU adapter on this machine ' +
          '(in Node without a GPU, set VK_ICD_FILENAMES to a Vulkan driver such as SwiftShader)',
      );
    }
  }
  const device = await adapter.requestDevice({
    label: options.label ?? 'webgpu-attention',
    ...deviceRequirements(adapter, options.disableFeatures, options.attentionKernel),
  });
  return new Context(device, describe(adapter.info), true, options, { gpu, adapter });
}

/**
 * What to request for a device the library will use at its best on `adapter`: the optional
 * features it uses that the adapter has (shader-f16, subgroups, timestamp-query; and the
 * experimental chromium-experimental-subgroup-matrix only for `attentionKernel` 'matrix', the one
 * form that uses it) and the
 * adapter's maxima of the limits attention sizes its work by. Merge it into your own
 * `requestDevice` descriptor when the app creates the device and passes it to
 * `createContext({ device })`.
 *
 * @example
 * const { requiredFeatures, requiredLimits } = deviceRequirements(adapter);
 * const device = await adapter.requestDevice({
 *   requiredFeatures: [...requiredFeatures, ...myFeatures],
 *   requiredLimits: { ...requiredLimits, ...myLimits },
 * });
 * const ctx = await createContext({ device, adapter });
 */
export function deviceRequirements(
  adapter: GPUAdapter,
  disableFeatures: readonly GPUFeatureName[] = [],
  attentionKernel?: AttentionKernel,
): { requiredFeatures: GPUFeatureName[]; requiredLimits: Record<string, number> } {
  const wanted =
    attentionKernel === 'matrix' ? [...OPTIONAL_FEATURES, SUBGROUP_MATRIX_FEATURE] : OPTIONAL_FEATURES;
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f) && !disableFeatures.includes(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  return { requiredFeatures, requiredLimits };
}

const warned = new WeakSet<GPUDevice>();

/** Warns once per device about features and limits its adapter has that the device lacks. */
function warnMissing(device: GPUDevice, adapter: GPUAdapter): void {
  if (warned.has(device)) return;
  warned.add(device);
  const { requiredFeatures, requiredLimits } = deviceRequirements(adapter);
  const missing = [
    ...requiredFeatures.filter((f) => !device.features.has(f)),
    ...Object.entries(requiredLimits)
      .filter(([name, value]) => (device.limits as unknown as Record<string, number>)[name] < value)
      .map(([name]) => name),
  ];
  if (missing.length) {
    console.warn(
      `webgpu-attention: the device was created without ${missing.join(', ')}, which its adapter has and the library would use; request them with deviceRequirements(adapter)`,
    );
  }
}

function describe(info: GPUAdapterInfo | undefined): AdapterDescription {
  const architecture = info?.architecture ?? '';
  // not in @webgpu/types yet: Dawn and Chromium list it on GPUAdapterInfo
  const configs = (info as { subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] } | undefined)
    ?.subgroupMatrixConfigs;
  return {
    subgroupMatrixConfigs: Array.from(configs ?? [], (c) => ({
      componentType: c.componentType,
      resultComponentType: c.resultComponentType,
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
    })),
    vendor: info?.vendor ?? '',
    architecture,
    description: info?.description ?? '',
    // older browsers lack the flag; SwiftShader is the CPU adapter they ship
    isFallbackAdapter: info?.isFallbackAdapter === true || architecture === 'swiftshader',
    subgroupMinSize: info?.subgroupMinSize,
  };
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}
