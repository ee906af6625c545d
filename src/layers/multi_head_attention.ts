import { checkOptions } from '../checks';
import type { Context } from '../context';
import { attention } from '../ops/attention';
import { linear } from '../ops/linear';
import { checkRopeTables, rope } from '../ops/rope';
import { checkRopeSettings } from '../reference/rope';
import { expectRank, fmt } from '../shape';
import type { Tensor, TensorData } from '../tensor';
import { expectTensor } from '../tensor';

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
  label?: string;
}

/** The part of a KV cache the layer uses: see `KVCache`. */
export interface AttentionCache {
  /** Positions already cached. */
  readonly length: number;
  /** Appends k, v [B, Hkv, L, Dh]; returns every cached key and value [B, Hkv, length, Dh]. */
  append(k: Tensor, v: Tensor): Promise<{ k: Tensor; v: Tensor }> | { k: Tensor; v: Tensor };
}

export interface MultiHeadAttentionForwardOptions {
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
  'label',
];
const FORWARD_KEYS = ['memory', 'causal', 'mask', 'cache', 'returnWeights', 'residual'];

type Projection = 'q' | 'k' | 'v' | 'out';

/**
 * Multi-head attention with input and output projections, like PyTorch's nn.MultiheadAttention
 * (batch_first), on the GPU end to end: projections with bias, head split and merge folded into
 * them, the fused attention kernel, optional grouped-query heads, rotary embeddings and KV-cache
 * decoding. Load weights with {@link loadPyTorch} or {@link loadSeparate} before `forward`.
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
  readonly rope?: { style: 'half' | 'interleaved'; base: number; dims: number } | LayerRopeTables;
  readonly label: string;
  private readonly weights = new Map<Projection, Tensor>();
  private readonly biases = new Map<Projection, Tensor>();

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
   * v weights are the row blocks of in_proj_weight [3E, E]. Replaces weights loaded before.
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
    return this.loadSeparate({
      q_proj_weight: rows(w, 0, E * E),
      k_proj_weight: rows(w, E * E, 2 * E * E),
      v_proj_weight: rows(w, 2 * E * E, 3 * E * E),
      in_proj_bias: state.in_proj_bias,
      'out_proj.weight': state['out_proj.weight'],
      'out_proj.bias': state['out_proj.bias'],
    });
  }

  /** Loads separate q, k and v projection weights (PyTorch's Linear layout [out, in]). */
  loadSeparate(state: SeparateAttentionWeights): this {
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
    const packed = state.in_proj_bias;
    if (packed !== undefined) {
      expectLength('in_proj_bias', packed, E + 2 * Ekv, `[${E + 2 * Ekv}]`);
      given.q[3] = rows(packed, 0, E);
      given.k[3] = rows(packed, E, E + Ekv);
      given.v[3] = rows(packed, E + Ekv, E + 2 * Ekv);
    }
    // Check everything before replacing anything.
    for (const p of Object.keys(shapes) as Projection[]) {
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
    for (const p of Object.keys(shapes) as Projection[]) {
      const [, w, , b] = given[p];
      const opts = { dtype: this.dtype, label: `${this.label}:${p}` };
      this.weights.set(p, this.ctx.tensor(w!, shapes[p], opts));
      if (b !== undefined) this.biases.set(p, this.ctx.tensor(b, [shapes[p][0]], opts));
    }
    return this;
  }

  /**
   * Attention of x [B, L, E] over the memory [B, S, kdim] (default x itself) -> output [B, L, E]
   * (and per-head weights [B, numHeads, L, S]). With a cache, S is the cached length after this
   * call's keys are appended.
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
      const result = await attention(q, k, v, {
        causal: options.causal ?? cache !== undefined,
        mask: options.mask,
        returnWeights: options.returnWeights,
      });
      temp(result.output);
      const output = await linear(result.output, this.weights.get('out')!, {
        bias: this.biases.get('out'),
        residual: options.residual,
      });
      return { output, weights: result.weights };
    } finally {
      for (const t of temporaries) t.destroy(); // submitted work keeps the buffers alive until it ends
    }
  }

  /** Frees the weights. */
  destroy(): void {
    this.releaseWeights();
  }

  private releaseWeights(): void {
    for (const t of [...this.weights.values(), ...this.biases.values()]) t.destroy();
    this.weights.clear();
    this.biases.clear();
  }
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
