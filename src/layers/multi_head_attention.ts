import accumulateSource from '../../shaders/accumulate.wgsl?raw';
import { checkOptions } from '../checks';
import type { Context } from '../context';
import type { DropoutOptions } from '../dropout';
import { attention } from '../ops/attention';
import { type AttentionBackwardOptions, attentionBackward } from '../ops/attention_backward';
import { type AttentionOptions, SCORING_OPTION_KEYS, type ScoringOptionKey } from '../ops/attention_plan';
import { linear } from '../ops/linear';
import { linearBackward } from '../ops/linear_backward';
import { checkRopeTables, rope, ropeBackward } from '../ops/rope';
import { WG } from '../ops/train_common';
import { checkRopeSettings } from '../options';
import { Recording } from '../program';
import { expectRank, fmt } from '../shape';
import type { Tensor, TensorData } from '../tensor';
import { bytesPerElement, expectTensor } from '../tensor';

/** The layer's rope from tables: see `RopeTables` (positions come from the cache length). */
export interface LayerRopeTables {
  cos: Tensor;
  sin: Tensor;
  interleaved?: boolean;
}

export interface MultiHeadAttentionOptions {
  /** E: features of x and of the output. */
  embedDim: number;
  /** Query heads; divides embedDim (head dim Dh = embedDim / numHeads). */
  numHeads: number;
  /** Key/value heads (grouped-query attention; 1 = multi-query); divides numHeads. Default numHeads. */
  numKvHeads?: number;
  /** Features of the key input (the memory). Default embedDim. */
  kdim?: number;
  /** Features of the value input (the memory). Default embedDim. */
  vdim?: number;
  /** Projections have biases. Default true. */
  bias?: boolean;
  /**
   * Rotary position embedding of q and k after projection (see `rope`): settings, or caller-given
   * cos / sin tables [maxPositions, rotaryDim / 2] ('f32' tensors, kept by reference) read at each
   * row's position (the cache length plus the row).
   */
  rope?: { style: 'half' | 'interleaved'; base?: number; dims?: number } | LayerRopeTables;
  /** Storage of weights, activations and output: 'f16' halves memory traffic, sums stay f32. Default 'f32'. */
  dtype?: 'f32' | 'f16';
  /**
   * Dropout on the attention probabilities in train forwards only (nn.MultiheadAttention's
   * `dropout`, which applies in training mode): p in [0, 1), see `AttentionOptions.dropout`. The
   * backward regenerates each forward's mask. Default 0.
   */
  dropout?: number;
  label?: string;
}

/** The part of a KV cache the layer uses: see `KVCache`. */
export interface AttentionCache {
  /** Positions already cached. */
  readonly length: number;
  /** Appends k, v [B, Hkv, L, Dh]; returns every cached key and value [B, Hkv, length, Dh]. */
  append(k: Tensor, v: Tensor): Promise<{ k: Tensor; v: Tensor }> | { k: Tensor; v: Tensor };
}

/**
 * The sparse and programmable options of `attention` that the layer passes on to its attention
 * call (and, in training, to its backward): see {@link AttentionOptions} (`window`, `softcap`,
 * `alibiSlopes`, `sinks`, `scoreMod`, `maskMod`, `modData`, `cuSeqlensQ` / `cuSeqlensK`, `blockMask`),
 * `scoreModGrad` (the derivative of scoreMod) and `modDataGrad` (the gradients of modData's f32
 * entries, returned by `backward` as `dModData`), both used by the backward only. With a KV cache,
 * causal, window and ALiBi align to the cached keys' end, as in `attention`.
 */
export type MultiHeadAttentionScoring = Pick<AttentionOptions, ScoringOptionKey> &
  Pick<AttentionBackwardOptions, 'scoreModGrad' | 'modDataGrad'>;

const SCORING_KEYS = [...SCORING_OPTION_KEYS, 'scoreModGrad', 'modDataGrad'] as const;

export interface MultiHeadAttentionForwardOptions extends MultiHeadAttentionScoring {
  /**
   * Key and value input [B, S, kdim] (cross-attention), or separate key [B, S, kdim] and value
   * [B, S, vdim]. Default x (self-attention).
   */
  memory?: Tensor | { key: Tensor; value: Tensor };
  /** Bottom-right causal mask (query i attends key j iff j <= i + S - L). Default false, true with a cache. */
  causal?: boolean;
  /** `bool` (true = may attend) or additive `f32` mask, broadcastable to [B, numHeads, L, S]. */
  mask?: Tensor;
  /**
   * Self-attention decoding: this call's k and v are appended to the cache and q attends over
   * everything cached; RoPE positions continue from the cached length.
   */
  cache?: AttentionCache;
  /** Also return the per-head attention weights [B, numHeads, L, S] ('f32'). */
  returnWeights?: boolean;
  /** Added to the output, [B, L, E] (a transformer's skip connection, fused into the out projection). */
  residual?: Tensor;
  /**
   * Keep what {@link MultiHeadAttention.backward} needs (f32 layers, no cache): references to x,
   * the memory and the mask (do not destroy or overwrite them before backward), and new tensors
   * q [B, H, L, Dh], k and v [B, Hkv, S, Dh] (after rope), the attention output [B, H, L, Dh] and
   * its log-sum-exp [B, H, L]: about 4·B·L·E + B·H·L floats for self-attention. A later train
   * forward replaces them; backward frees them.
   */
  train?: boolean;
  /**
   * The seed (a u32) of this train forward's dropout mask, with a layer `dropout` > 0. Default: the
   * layer's own counter, 0 for its first train forward with dropout and one more for each after it.
   */
  dropoutSeed?: number;
}

/** What {@link MultiHeadAttention.backward} returns (f32). */
export interface MultiHeadAttentionInputGradients {
  /**
   * d loss / d x [B, L, E]: the query path, plus the key and value paths when memory was omitted
   * (self-attention). A residual's gradient is dOutput itself and is not included.
   */
  dx: Tensor;
  /**
   * With memory: d loss / d memory [B, S, kdim] (the key and value paths summed), or
   * `{ key, value }` for separate key and value tensors (summed into one when they are the same).
   */
  dMemory?: Tensor | { key: Tensor; value: Tensor };
  /** With `sinks` in the train forward: d loss / d sinks [numHeads] (f32; the layer does not own sinks). */
  dsinks?: Tensor;
  /**
   * With `modDataGrad` in the train forward: d loss / d each f32 entry of its modData, by name
   * (as attentionBackward's; the layer does not own modData).
   */
  dModData?: Record<string, Tensor<'f32'>>;
}

export interface MultiHeadAttentionResult {
  /** [B, L, E] */
  output: Tensor;
  /** [B, numHeads, L, S], when `returnWeights` */
  weights?: Tensor;
}

/** PyTorch's nn.MultiheadAttention state dict entries (batch_first; packed q/k/v). */
export interface PyTorchAttentionWeights {
  /** [3E, E], the q, k and v projection weights stacked */
  in_proj_weight: TensorData;
  /** [3E] */
  in_proj_bias?: TensorData;
  /** [E, E] */
  'out_proj.weight': TensorData;
  /** [E] */
  'out_proj.bias'?: TensorData;
}

/** Separate projections (PyTorch's names when kdim or vdim differ from E, or for GQA). */
export interface SeparateAttentionWeights {
  /** [E, E] */
  q_proj_weight: TensorData;
  /** [Hkv·Dh, kdim] */
  k_proj_weight: TensorData;
  /** [Hkv·Dh, vdim] */
  v_proj_weight: TensorData;
  /** [E + 2·Hkv·Dh], the q, k and v biases stacked (or give them separately below) */
  in_proj_bias?: TensorData;
  q_proj_bias?: TensorData;
  k_proj_bias?: TensorData;
  v_proj_bias?: TensorData;
  /** [E, E] */
  'out_proj.weight': TensorData;
  /** [E] */
  'out_proj.bias'?: TensorData;
}

const CONSTRUCTOR_KEYS = [
  'embedDim',
  'numHeads',
  'numKvHeads',
  'kdim',
  'vdim',
  'bias',
  'rope',
  'dtype',
  'dropout',
  'label',
];
const FORWARD_KEYS = [
  'memory',
  'causal',
  'mask',
  'cache',
  'returnWeights',
  'residual',
  'train',
  'dropoutSeed',
  ...SCORING_KEYS,
];

type Projection = 'q' | 'k' | 'v' | 'out';
const PROJECTIONS: readonly Projection[] = ['q', 'k', 'v', 'out'];

/** Where a projection's weight or bias lives: elements [start, start + size) of a parameter. */
interface ParamSlice {
  name: string;
  start: number;
}

/** What a train forward keeps for backward. */
interface TrainState {
  x: Tensor;
  key: Tensor;
  value: Tensor;
  self: boolean;
  /** attention's inputs (after rope), output and lse */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  attended: Tensor;
  lse: Tensor;
  causal: boolean;
  mask?: Tensor;
  dropout?: DropoutOptions;
  scoring: MultiHeadAttentionScoring;
}

/**
 * Multi-head attention with input and output projections, like PyTorch's nn.MultiheadAttention
 * (batch_first), on the GPU end to end: projections with bias, head split and merge folded into
 * them, the fused attention kernel, optional grouped-query heads, rotary embeddings and KV-cache
 * decoding. Load weights with {@link loadPyTorch} or {@link loadSeparate} before `forward`.
 *
 * Training (f32): `forward(x, { train: true })` keeps what {@link backward} needs; `backward(dOutput)`
 * returns the input gradients and adds every parameter's gradient into {@link grads}, keyed like
 * {@link params} by PyTorch's state_dict names, until {@link zeroGrad}.
 *
 * @example
 * const mha = new MultiHeadAttention(ctx, { embedDim: 64, numHeads: 8 });
 * mha.loadPyTorch(stateDict); // in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias
 * const { output } = await mha.forward(x, { causal: true }); // x, output [B, L, 64]
 */
export class MultiHeadAttention {
  readonly embedDim: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly kdim: number;
  readonly vdim: number;
  readonly bias: boolean;
  readonly dtype: 'f32' | 'f16';
  /** Dropout probability of the attention probabilities in train forwards. */
  readonly dropout: number;
  readonly rope?: { style: 'half' | 'interleaved'; base: number; dims: number } | LayerRopeTables;
  readonly label: string;
  /** The tensors the projections read: parameters, views of packed ones, or copies of them. */
  private readonly weights = new Map<Projection, Tensor>();
  private readonly biases = new Map<Projection, Tensor>();
  private readonly parameters = new Map<string, Tensor>();
  private readonly gradients = new Map<string, Tensor>();
  /** Which parameter (and where in it) each projection's weight and bias is. */
  private readonly weightSlices = new Map<Projection, ParamSlice>();
  private readonly biasSlices = new Map<Projection, ParamSlice>();
  /** Views and copies of packed parameters (owned by the layer). */
  private readonly derived: Tensor[] = [];
  /** Copies refreshed from their packed parameter before every forward once the layer trains. */
  private readonly refreshed: { from: Tensor; byteOffset: number; to: Tensor }[] = [];
  private saved?: TrainState;
  /** The seed of the next train forward's dropout mask, when the caller gives none. */
  private nextDropoutSeed = 0;

  constructor(
    readonly ctx: Context,
    options: MultiHeadAttentionOptions,
  ) {
    const what = 'MultiHeadAttention';
    checkOptions(what, options, CONSTRUCTOR_KEYS);
    const { embedDim, numHeads } = options;
    const positive = (name: string, value: unknown) => {
      if (!Number.isInteger(value) || (value as number) < 1) {
        throw new Error(`${what}: ${name} must be a positive integer, received ${String(value)}`);
      }
    };
    positive('embedDim', embedDim);
    positive('numHeads', numHeads);
    if (embedDim % numHeads !== 0) {
      throw new Error(
        `${what}: embedDim (${embedDim}) must be a multiple of numHeads, received numHeads=${numHeads}`,
      );
    }
    this.numKvHeads = options.numKvHeads ?? numHeads;
    positive('numKvHeads', this.numKvHeads);
    if (numHeads % this.numKvHeads !== 0) {
      throw new Error(
        `${what}: numHeads (${numHeads}) must be a multiple of numKvHeads, received numKvHeads=${this.numKvHeads}`,
      );
    }
    this.kdim = options.kdim ?? embedDim;
    this.vdim = options.vdim ?? embedDim;
    positive('kdim', this.kdim);
    positive('vdim', this.vdim);
    this.dtype = options.dtype ?? 'f32';
    if (this.dtype !== 'f32' && this.dtype !== 'f16') {
      throw new Error(`${what}: dtype must be 'f32' or 'f16', received ${String(options.dtype)}`);
    }
    this.embedDim = embedDim;
    this.numHeads = numHeads;
    this.headDim = embedDim / numHeads;
    this.bias = options.bias ?? true;
    this.dropout = options.dropout ?? 0;
    if (typeof this.dropout !== 'number' || !(this.dropout >= 0 && this.dropout < 1)) {
      throw new Error(`${what}: dropout must be a number in [0, 1), received ${String(options.dropout)}`);
    }
    if (options.rope && 'cos' in options.rope) {
      const { cos, sin, interleaved } = options.rope;
      checkRopeTables(`${what}: rope`, ctx, [1, 1, 1, this.headDim], { cos, sin, interleaved });
      this.rope = { cos, sin, interleaved };
    } else if (options.rope) {
      this.rope = {
        style: options.rope.style,
        ...checkRopeSettings(`${what}: rope`, this.headDim, options.rope),
      };
    }
    this.label = options.label ?? 'mha';
  }

  /**
   * Loads nn.MultiheadAttention's state dict (batch_first=True, kdim = vdim = E, no GQA): q, k and
   * v weights are the row blocks of in_proj_weight [3E, E]. Replaces weights loaded before. The
   * layer's {@link params} are then `in_proj_weight`, `in_proj_bias`, `out_proj.weight` and
   * `out_proj.bias`; the projections read views of the packed tensors where their offsets are
   * multiples of the device's minStorageBufferOffsetAlignment (f32: E a multiple of 8 for the
   * weights, of 64 for the biases), and otherwise copies, refreshed at the start of every forward
   * once the layer has gradients (after a train forward or {@link zeroGrad}).
   */
  loadPyTorch(state: PyTorchAttentionWeights): this {
    const E = this.embedDim;
    if (this.numKvHeads !== this.numHeads || this.kdim !== E || this.vdim !== E) {
      throw new Error(
        `MultiHeadAttention.loadPyTorch: packed in_proj_weight needs numKvHeads = numHeads and kdim = vdim = embedDim, received numKvHeads=${this.numKvHeads}, kdim=${this.kdim}, vdim=${this.vdim} (use loadSeparate)`,
      );
    }
    const w = state.in_proj_weight;
    expectLength('in_proj_weight', w, 3 * E * E, `[${3 * E}, ${E}]`);
    return this.load(
      {
        q_proj_weight: rows(w, 0, E * E),
        k_proj_weight: rows(w, E * E, 2 * E * E),
        v_proj_weight: rows(w, 2 * E * E, 3 * E * E),
        in_proj_bias: state.in_proj_bias,
        'out_proj.weight': state['out_proj.weight'],
        'out_proj.bias': state['out_proj.bias'],
      },
      w,
    );
  }

  /**
   * Loads separate q, k and v projection weights (PyTorch's Linear layout [out, in]). The layer's
   * {@link params} carry the names given here: `q_proj_weight`, `k_proj_weight`, `v_proj_weight`,
   * the biases as `in_proj_bias` (stacked) or `q_proj_bias`, `k_proj_bias`, `v_proj_bias`, and
   * `out_proj.weight`, `out_proj.bias`.
   */
  loadSeparate(state: SeparateAttentionWeights): this {
    return this.load(state);
  }

  /**
   * The parameters by PyTorch's state_dict names (see {@link loadPyTorch} and {@link loadSeparate}):
   * the tensors forward reads, which an optimizer may update in place (f32 layers), e.g.
   * `new AdamW([...mha.params.values()])`.
   */
  get params(): ReadonlyMap<string, Tensor> {
    return this.parameters;
  }

  /**
   * d loss / d parameter (f32, each its parameter's shape), by the names of {@link params}, summed
   * over every {@link backward} since the first train forward or the last {@link zeroGrad}. Empty
   * before the first train forward.
   */
  get grads(): ReadonlyMap<string, Tensor> {
    return this.gradients;
  }

  private load(state: SeparateAttentionWeights, packedWeight?: TensorData): this {
    const E = this.embedDim;
    const Ekv = this.numKvHeads * this.headDim;
    const shapes: Record<Projection, [number, number]> = {
      q: [E, E],
      k: [Ekv, this.kdim],
      v: [Ekv, this.vdim],
      out: [E, E],
    };
    const given: Record<Projection, [string, TensorData | undefined, string, TensorData | undefined]> = {
      q: ['q_proj_weight', state.q_proj_weight, 'q_proj_bias', state.q_proj_bias],
      k: ['k_proj_weight', state.k_proj_weight, 'k_proj_bias', state.k_proj_bias],
      v: ['v_proj_weight', state.v_proj_weight, 'v_proj_bias', state.v_proj_bias],
      out: ['out_proj.weight', state['out_proj.weight'], 'out_proj.bias', state['out_proj.bias']],
    };
    const packedBias = state.in_proj_bias;
    if (packedBias !== undefined) {
      expectLength('in_proj_bias', packedBias, E + 2 * Ekv, `[${E + 2 * Ekv}]`);
      for (const p of ['q', 'k', 'v'] as const) {
        if (given[p][3] !== undefined) {
          throw new Error(
            `MultiHeadAttention.loadSeparate: received both in_proj_bias and ${given[p][2]} (give the biases one way)`,
          );
        }
      }
      given.q[3] = rows(packedBias, 0, E);
      given.k[3] = rows(packedBias, E, E + Ekv);
      given.v[3] = rows(packedBias, E + Ekv, E + 2 * Ekv);
    }
    // Check everything before replacing anything.
    for (const p of PROJECTIONS) {
      const [wName, w, bName, b] = given[p];
      const [n, k] = shapes[p];
      if (w === undefined) throw new Error(`MultiHeadAttention.loadSeparate: ${wName} is missing`);
      expectLength(wName, w, n * k, `[${n}, ${k}]`);
      if (this.bias) {
        if (b === undefined) {
          throw new Error(`MultiHeadAttention.loadSeparate: ${bName} is missing (the layer has bias: true)`);
        }
        expectLength(bName, b, n, `[${n}]`);
      } else if (b !== undefined) {
        throw new Error(`MultiHeadAttention.loadSeparate: ${bName} given to a layer with bias: false`);
      }
    }
    this.releaseWeights();
    const opts = (name: string) => ({ dtype: this.dtype, label: `${this.label}:${name}` });
    const param = (name: string, data: TensorData, shape: number[]) =>
      this.parameters.set(name, this.ctx.tensor(data, shape, opts(name)));
    // parameters, in PyTorch's state_dict order
    if (packedWeight) param('in_proj_weight', packedWeight, [3 * E, E]);
    else for (const p of ['q', 'k', 'v'] as const) param(given[p][0], given[p][1]!, shapes[p]);
    if (this.bias) {
      if (packedBias) param('in_proj_bias', packedBias, [E + 2 * Ekv]);
      else for (const p of ['q', 'k', 'v'] as const) param(given[p][2], given[p][3]!, [shapes[p][0]]);
    }
    param('out_proj.weight', given.out[1]!, shapes.out);
    if (this.bias) param('out_proj.bias', given.out[3]!, [E]);
    // where each projection's weight and bias lives
    const qkvStart: Record<Projection, number> = { q: 0, k: E, v: E + Ekv, out: 0 };
    for (const p of PROJECTIONS) {
      const [n, k] = shapes[p];
      const packedW = packedWeight && p !== 'out';
      this.weightSlices.set(p, { name: packedW ? 'in_proj_weight' : given[p][0], start: qkvStart[p] * k });
      this.weights.set(p, this.sliceOf(this.weightSlices.get(p)!, [n, k], given[p][1]!));
      if (!this.bias) continue;
      const packedB = packedBias !== undefined && p !== 'out';
      this.biasSlices.set(p, {
        name: packedB ? 'in_proj_bias' : given[p][2],
        start: packedB ? qkvStart[p] : 0,
      });
      this.biases.set(p, this.sliceOf(this.biasSlices.get(p)!, [n], given[p][3]!));
    }
    return this;
  }

  /**
   * The tensor a projection reads for elements [start, start + size) of a parameter: the parameter
   * itself, a view of it (aligned offset), or a copy of `data` made now, refreshed from the
   * parameter before every forward once the layer has gradients (offsets that are multiples of 4
   * bytes; the rest, f16 with odd sizes, cannot train). Inference-only layers pay no copies.
   */
  private sliceOf(slice: ParamSlice, shape: number[], data: TensorData): Tensor {
    const parent = this.parameters.get(slice.name)!;
    const size = shape.reduce((a, b) => a * b, 1);
    if (parent.size === size) return parent;
    const bytes = bytesPerElement(this.dtype);
    const byteOffset = slice.start * bytes;
    let t: Tensor;
    if (byteOffset % this.ctx.device.limits.minStorageBufferOffsetAlignment === 0) {
      t = this.ctx.wrap(parent.buffer, shape, { dtype: this.dtype, offset: byteOffset });
    } else {
      t = this.ctx.tensor(data, shape, {
        dtype: this.dtype,
        label: `${this.label}:${slice.name}@${slice.start}`,
      });
      if (byteOffset % 4 === 0 && (size * bytes) % 4 === 0)
        this.refreshed.push({ from: parent, byteOffset, to: t });
    }
    this.derived.push(t);
    return t;
  }

  /**
   * Attention of x [B, L, E] over the memory [B, S, kdim] (default x itself) -> output [B, L, E]
   * (and per-head weights [B, numHeads, L, S]). With a cache, S is the cached length after this
   * call's keys are appended. With `train`, keeps what {@link backward} needs.
   */
  async forward(
    x: Tensor,
    options: MultiHeadAttentionForwardOptions = {},
  ): Promise<MultiHeadAttentionResult> {
    const what = 'MultiHeadAttention.forward';
    checkOptions(what, options, FORWARD_KEYS);
    if (this.weights.size === 0)
      throw new Error(`${what}: no weights loaded (call loadPyTorch or loadSeparate)`);
    expectTensor(`${what}: x`, x);
    x.assertUsable(`${what}: x`, this.ctx);
    expectRank(`${what}: x`, x.shape, 3, 'B, L, E');
    if (x.shape[2] !== this.embedDim || x.dtype !== this.dtype) {
      throw new Error(
        `${what}: x must be ${this.dtype} [B, L, ${this.embedDim}], received ${x.dtype} ${fmt(x.shape)}`,
      );
    }
    const { memory, cache } = options;
    if (memory && cache) {
      throw new Error(`${what}: cache is for self-attention decoding; received both memory and cache`);
    }
    const train = options.train ?? false;
    if (typeof train !== 'boolean') {
      throw new Error(`${what}: train must be a boolean, received ${String(train)}`);
    }
    if (train && cache) {
      throw new Error(
        `${what}: train does not support a KV cache (decoding has no backward); received both train: true and cache`,
      );
    }
    if (train && this.dtype !== 'f32') {
      throw new Error(
        `${what}: train needs an f32 layer (the gradients of linear are f32 only), received dtype '${this.dtype}'`,
      );
    }
    const [key, value] = !memory ? [x, x] : 'key' in memory ? [memory.key, memory.value] : [memory, memory];
    const [B] = x.shape;
    for (const [name, t, dim] of [
      ['key', key, this.kdim],
      ['value', value, this.vdim],
    ] as const) {
      if (t === x) continue;
      expectTensor(`${what}: memory ${name}`, t);
      t.assertUsable(`${what}: memory ${name}`, this.ctx);
      if (t.rank !== 3 || t.shape[0] !== B || t.shape[2] !== dim || t.dtype !== this.dtype) {
        throw new Error(
          `${what}: memory ${name} must be ${this.dtype} [${B}, S, ${dim}], received ${t.dtype} ${fmt(t.shape)}`,
        );
      }
    }
    if (key.shape[1] !== value.shape[1]) {
      throw new Error(
        `${what}: memory key and value must have the same length S, received ${fmt(key.shape)} and ${fmt(value.shape)}`,
      );
    }
    const offset = cache ? cache.length : 0;
    const seed = options.dropoutSeed;
    if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)) {
      throw new Error(
        `${what}: dropoutSeed must be an integer in [0, 4294967295] (a u32), received ${String(seed)}`,
      );
    }
    let dropout: DropoutOptions | undefined;
    if (train && this.dropout > 0) {
      dropout = { p: this.dropout, seed: seed ?? this.nextDropoutSeed };
      if (seed === undefined) this.nextDropoutSeed = (this.nextDropoutSeed + 1) % 2 ** 32;
    }
    // copies of packed parameters follow them once the layer trains (an optimizer may have stepped)
    if (this.refreshed.length > 0 && (train || this.gradients.size > 0)) {
      const rec = new Recording(this.ctx, `${what}:refresh`);
      for (const r of this.refreshed) {
        rec.copy(r.from.buffer, r.byteOffset, r.to.buffer, 0, r.to.size * bytesPerElement(this.dtype));
      }
      await rec.submit();
    }
    if (train) this.releaseSaved(); // one pending train forward at a time

    const temporaries: Tensor[] = [];
    const temp = (t: Tensor) => {
      temporaries.push(t);
      return t;
    };
    try {
      let q = temp(
        await linear(x, this.weights.get('q')!, { bias: this.biases.get('q'), heads: this.numHeads }),
      );
      let k = temp(
        await linear(key, this.weights.get('k')!, { bias: this.biases.get('k'), heads: this.numKvHeads }),
      );
      let v = temp(
        await linear(value, this.weights.get('v')!, { bias: this.biases.get('v'), heads: this.numKvHeads }),
      );
      if (this.rope) {
        q = temp(await rope(q, { ...this.rope, offset }));
        k = temp(await rope(k, { ...this.rope, offset }));
      }
      if (cache) ({ k, v } = await cache.append(k, v));
      const causal = options.causal ?? cache !== undefined;
      const scoring: MultiHeadAttentionScoring = {};
      for (const key of SCORING_KEYS)
        if (options[key] !== undefined) Object.assign(scoring, { [key]: options[key] });
      const { scoreModGrad: _, modDataGrad: __, ...forwardScoring } = scoring;
      const result = await attention(q, k, v, {
        ...forwardScoring,
        causal,
        mask: options.mask,
        returnWeights: options.returnWeights,
        returnLse: train,
        dropout,
      });
      temp(result.output);
      if (result.lse) temp(result.lse);
      const output = await linear(result.output, this.weights.get('out')!, {
        bias: this.biases.get('out'),
        residual: options.residual,
      });
      if (train) {
        this.saved = {
          x,
          key,
          value,
          self: !memory,
          q,
          k,
          v,
          attended: result.output,
          lse: result.lse!,
          causal,
          mask: options.mask,
          dropout,
          scoring,
        };
        const kept = new Set([q, k, v, result.output, result.lse]);
        temporaries.splice(0, temporaries.length, ...temporaries.filter((t) => !kept.has(t)));
        this.ensureGrads();
      }
      return { output, weights: result.weights };
    } finally {
      for (const t of temporaries) t.destroy(); // submitted work keeps the buffers alive until it ends
    }
  }

  /**
   * Backward of the last train forward for dOutput = d loss / d output [B, L, E] (f32): returns
   * d loss / d x (and / d memory) and adds the gradient of every parameter into {@link grads}. Each
   * train forward allows one backward, which frees what it kept (a second backward throws). Uses
   * the parameters as they are now: update them after backward, not between forward and backward.
   *
   * @example
   * const { output } = await mha.forward(x, { causal: true, train: true });
   * const { dx } = await mha.backward(dOutput); // mha.grads.get('in_proj_weight'), ...
   */
  async backward(dOutput: Tensor): Promise<MultiHeadAttentionInputGradients> {
    const what = 'MultiHeadAttention.backward';
    const s = this.saved;
    if (!s) {
      throw new Error(
        `${what}: no train forward to go back through: call forward(x, { train: true }) first (each backward consumes one train forward)`,
      );
    }
    expectTensor(`${what}: dOutput`, dOutput);
    dOutput.assertUsable(`${what}: dOutput`, this.ctx);
    const [B, L] = s.x.shape;
    const shape = [B, L, this.embedDim];
    if (dOutput.dtype !== 'f32' || fmt(dOutput.shape) !== fmt(shape)) {
      throw new Error(
        `${what}: dOutput must be f32 ${fmt(shape)} (the output's shape), received ${dOutput.dtype} ${fmt(dOutput.shape)}`,
      );
    }
    for (const [name, t] of [
      ['x', s.x],
      ['memory key', s.key],
      ['memory value', s.value],
      ['mask', s.mask],
    ] as const) {
      t?.assertUsable(`${what}: the forward's ${name}`, this.ctx);
    }
    for (const t of [s.q, s.k, s.v, s.attended, s.lse]) {
      if (t.destroyed) {
        throw new Error(
          `${what}: what the train forward kept was freed (did it run inside a ctx.scope that ended before backward?); run forward and backward in the same scope`,
        );
      }
    }
    for (const [name, g] of this.gradients) {
      if (g.destroyed) {
        throw new Error(
          `${what}: grads '${name}' was destroyed (the first train forward ran inside a ctx.scope, which freed it): call zeroGrad() outside any scope before training`,
        );
      }
    }
    this.saved = undefined;
    try {
      return await this.ctx.scope(() => this.backwardOf(s, dOutput));
    } finally {
      for (const t of [s.q, s.k, s.v, s.attended, s.lse]) t.destroy();
    }
  }

  private async backwardOf(s: TrainState, dOutput: Tensor): Promise<MultiHeadAttentionInputGradients> {
    const paramGrads: { slice: ParamSlice; grad: Tensor }[] = [];
    const project = async (p: Projection, input: Tensor, dy: Tensor, heads?: number) => {
      const bias = this.biases.get(p);
      const g = await linearBackward(input, this.weights.get(p)!, dy, { bias, heads });
      paramGrads.push({ slice: this.weightSlices.get(p)!, grad: g.dweight });
      if (g.dbias) paramGrads.push({ slice: this.biasSlices.get(p)!, grad: g.dbias });
      return g.dx;
    };
    // out projection: its input is the attention output in heads [B, H, L, Dh], merged on read
    const dAttended = await project('out', s.attended, dOutput);
    let { dq, dk, dv, dsinks, dModData } = await attentionBackward(s.q, s.k, s.v, s.attended, dAttended, {
      ...s.scoring,
      causal: s.causal,
      mask: s.mask,
      dropout: s.dropout,
      lse: s.lse,
    });
    if (this.rope) {
      dq = await ropeBackward(dq, this.rope);
      dk = await ropeBackward(dk, this.rope);
    }
    const dx = await project('q', s.x, dq, this.numHeads);
    const dKey = await project('k', s.key, dk, this.numKvHeads);
    const dValue = await project('v', s.value, dv, this.numKvHeads);
    const rec = new Recording(this.ctx, 'MultiHeadAttention.backward');
    let dMemory: MultiHeadAttentionInputGradients['dMemory'];
    if (s.self) {
      recordAdd(rec, dx, dKey);
      recordAdd(rec, dx, dValue);
    } else if (s.key === s.value) {
      recordAdd(rec, dKey, dValue);
      dMemory = dKey;
    } else {
      dMemory = { key: dKey, value: dValue };
    }
    // parameter gradients: packed ones are assembled in a scratch buffer, then added
    const byName = new Map<string, { start: number; grad: Tensor }[]>();
    for (const { slice, grad } of paramGrads) {
      byName.set(slice.name, [...(byName.get(slice.name) ?? []), { start: slice.start, grad }]);
    }
    for (const [name, parts] of byName) {
      const target = this.gradients.get(name)!;
      if (parts.length === 1 && parts[0].grad.size === target.size) {
        recordAdd(rec, target, parts[0].grad);
        continue;
      }
      const scratch = rec.buffer(target.size * 4, `${this.label}:grad:${name}`);
      for (const { start, grad } of parts) rec.copy(grad.buffer, 0, scratch, start * 4, grad.size * 4);
      recordAdd(rec, target, { buffer: scratch });
    }
    await rec.submit();
    return {
      dx,
      ...(dMemory ? { dMemory } : {}),
      ...(dsinks ? { dsinks } : {}),
      ...(dModData ? { dModData } : {}),
    };
  }

  /**
   * Sets every gradient in {@link grads} to zero, allocating those missing. The gradients belong to
   * the layer; when training steps run inside `ctx.scope`, call this once outside it first (else
   * the first train forward allocates them inside the scope, which frees them when it ends).
   */
  async zeroGrad(): Promise<void> {
    this.ctx.assertAlive('MultiHeadAttention.zeroGrad');
    if (this.parameters.size === 0) {
      throw new Error('MultiHeadAttention.zeroGrad: no weights loaded (call loadPyTorch or loadSeparate)');
    }
    for (const [name, g] of this.gradients) if (g.destroyed) this.gradients.delete(name);
    this.ensureGrads();
    const rec = new Recording(this.ctx, 'MultiHeadAttention.zeroGrad');
    for (const g of this.gradients.values()) rec.clear(g.binding);
    await rec.submit();
  }

  /** Frees the parameters, gradients and what a train forward kept. */
  destroy(): void {
    this.releaseWeights();
  }

  /** Zero gradients for the parameters that have none yet. */
  private ensureGrads(): void {
    for (const [name, p] of this.parameters) {
      if (!this.gradients.has(name)) {
        this.gradients.set(name, this.ctx.zeros(p.shape, 'f32', `${this.label}:grad:${name}`));
      }
    }
  }

  private releaseSaved(): void {
    const s = this.saved;
    this.saved = undefined;
    if (s) for (const t of [s.q, s.k, s.v, s.attended, s.lse]) t.destroy();
  }

  private releaseWeights(): void {
    this.releaseSaved();
    for (const t of [...this.derived, ...this.parameters.values(), ...this.gradients.values()]) t.destroy();
    for (const m of [
      this.weights,
      this.biases,
      this.parameters,
      this.gradients,
      this.weightSlices,
      this.biasSlices,
    ])
      m.clear();
    this.derived.length = 0;
    this.refreshed.length = 0;
  }
}

/** Records acc += x, elementwise over acc (f32). */
function recordAdd(rec: Recording, acc: Tensor, x: Tensor | { buffer: GPUBuffer }): void {
  rec.dispatch({
    name: 'accumulate',
    sources: [accumulateSource],
    constants: { WG },
    uniforms: { total: acc.size },
    bindings: [acc.binding, 'binding' in x ? x.binding : x.buffer],
    workgroups: Math.ceil(acc.size / WG),
  });
}

function expectLength(name: string, data: TensorData, n: number, shape: string): void {
  if (data.length !== n) {
    throw new Error(
      `MultiHeadAttention: ${name} must have ${n} elements (${shape}), received ${data.length}`,
    );
  }
}

/** Elements [from, to) of a flat array, as numbers. */
function rows(data: TensorData, from: number, to: number): TensorData {
  return ArrayBuffer.isView(data) ? data.subarray(from, to) : data.slice(from, to);
}
