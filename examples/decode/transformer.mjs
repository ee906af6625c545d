// A small decoder-only transformer with random weights, generating tokens with a KV cache per
// layer: each block is h = x + attention(x) (RoPE, causal over the cache) and
// y = h + W2 gelu(W1 h + b1) + b2. The library is passed in (`lib`), so that the same code runs
// from the built package (Node example), from the sources (browser page) and in the benchmark.
// Without a vocabulary, each step's output vector is fed back as the next input: the GPU work
// per token is that of a real decoder's blocks; sampling and embedding lookups are left out.

/**
 * @typedef {object} DecodeOptions
 * @property {number} [steps] tokens generated after the prompt (default 32)
 * @property {'f32' | 'f16'} [dtype] storage of weights, activations and caches (default 'f32')
 * @property {number} [layers] transformer blocks (default 2)
 * @property {number} [embedDim] E (default 256)
 * @property {number} [numHeads] query heads (default 8)
 * @property {number} [numKvHeads] key/value heads (default 2: grouped-query)
 * @property {number} [prompt] positions prefilled in one call before decoding (default 16)
 * @property {number} [seed] seed of the random weights (default 1)
 */

/**
 * @typedef {object} DecodeResult
 * @property {number} tokensPerSecond tokens generated per second (after the prompt), 1000 / msPerToken
 * @property {number} msPerToken milliseconds per generated token, all layers: the median over the
 *   steps, so that one stall (a late shader compile in the driver, a garbage collection) does not
 *   skew it
 * @property {number} msPerLayer milliseconds per generated token and layer (msPerToken / layers)
 * @property {number} prefillMs milliseconds of the prompt's forward pass
 * @property {number} steps
 * @property {number} layers
 * @property {'f32' | 'f16'} dtype
 * @property {number[]} last the first 4 features of the last output, for a sanity check
 */

/**
 * Builds the model, prefills a prompt, generates one untimed token (pipeline compiles), then times
 * `steps` tokens generated one at a time, waiting for the GPU after each (as a sampler would), and
 * reports the median step.
 * Frees everything it made.
 * @param {typeof import('../../src/index')} lib the library: `import * as lib from 'webgpu-attention'`
 * @param {import('../../src/index').Context} ctx
 * @param {DecodeOptions} [options]
 * @returns {Promise<DecodeResult>}
 */
export async function runDecode(lib, ctx, options = {}) {
  const steps = options.steps ?? 32;
  const dtype = options.dtype ?? 'f32';
  const layers = options.layers ?? 2;
  const E = options.embedDim ?? 256;
  const numHeads = options.numHeads ?? 8;
  const numKvHeads = options.numKvHeads ?? 2;
  const prompt = options.prompt ?? 16;
  const random = lib.seededRandom(options.seed ?? 1);
  // Uniform in ±gain/sqrt(fan in): small enough that the fed-back hidden state stays in f16 range.
  const uniform = (n, fanIn, gain = 0.5) =>
    Float32Array.from({ length: n }, () => ((random() * 2 - 1) * gain) / Math.sqrt(fanIn));
  const Dh = E / numHeads;
  const Ekv = numKvHeads * Dh;

  const made = [];
  const keep = (t) => {
    made.push(t);
    return t;
  };
  const blocks = [];
  for (let i = 0; i < layers; i++) {
    const attention = new lib.MultiHeadAttention(ctx, {
      embedDim: E,
      numHeads,
      numKvHeads,
      rope: { style: 'half' },
      dtype,
      label: `layer${i}:attention`,
    }).loadSeparate({
      q_proj_weight: uniform(E * E, E),
      k_proj_weight: uniform(Ekv * E, E),
      v_proj_weight: uniform(Ekv * E, E),
      in_proj_bias: uniform(E + 2 * Ekv, 1, 0.1),
      'out_proj.weight': uniform(E * E, E),
      'out_proj.bias': uniform(E, 1, 0.1),
    });
    const cache = new lib.KVCache(ctx, {
      batch: 1,
      kvHeads: numKvHeads,
      headDim: Dh,
      capacity: prompt + 1 + steps,
      dtype,
      label: `layer${i}:cache`,
    });
    const tensor = (data, shape) => keep(ctx.tensor(data, shape, { dtype }));
    blocks.push({
      attention,
      cache,
      w1: tensor(uniform(4 * E * E, E), [4 * E, E]),
      b1: tensor(uniform(4 * E, 1, 0.1), [4 * E]),
      w2: tensor(uniform(4 * E * E, 4 * E), [E, 4 * E]),
      b2: tensor(uniform(E, 1, 0.1), [E]),
    });
  }

  /** One pass of every block over x [1, n, E]; returns the last block's output. */
  const forward = async (x) => {
    for (const block of blocks) {
      const { output: h } = await block.attention.forward(x, { cache: block.cache, residual: x });
      const hidden = await lib.linear(h, block.w1, { bias: block.b1, activation: 'gelu' });
      const y = await lib.linear(hidden, block.w2, { bias: block.b2, residual: h });
      for (const t of [h, hidden]) t.destroy(); // the GPU finishes queued work first
      if (x !== input) x.destroy();
      x = y;
    }
    return x;
  };

  let input = ctx.tensor(uniform(prompt * E, 1, 1), [1, prompt, E], { dtype });
  let start = performance.now();
  const prefilled = await forward(input);
  // The next input: the last position's output [1, 1, E].
  const row = (await prefilled.read()).slice((prompt - 1) * E);
  const prefillMs = performance.now() - start;
  input.destroy();
  prefilled.destroy();

  input = ctx.tensor(row, [1, 1, E], { dtype });
  // One untimed step compiles the decode-sized pipelines.
  const warm = await forward(input);
  input.destroy();
  input = warm;
  const stepMs = [];
  for (let s = 0; s < steps; s++) {
    start = performance.now();
    const next = await forward(input);
    await ctx.sync();
    stepMs.push(performance.now() - start);
    input.destroy();
    input = next;
  }
  stepMs.sort((a, b) => a - b);
  const half = stepMs.length >> 1;
  const ms = stepMs.length % 2 ? stepMs[half] : (stepMs[half - 1] + stepMs[half]) / 2;
  const last = Array.from((await input.read()).slice(0, 4));
  input.destroy();
  for (const block of blocks) {
    block.attention.destroy();
    block.cache.destroy();
  }
  for (const t of made) t.destroy();
  return {
    tokensPerSecond: 1000 / ms,
    msPerToken: ms,
    msPerLayer: ms / layers,
    prefillMs,
    steps,
    layers,
    dtype,
    last,
  };
}
