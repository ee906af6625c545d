// The demo model's configuration, parameter names and deterministic initial weights, shared by
// the GPU model (src/train/transformer.ts) and its float64 reference (src/reference/transformer.ts).

/** A decoder-only transformer: pre-LayerNorm blocks, learned positions, GELU MLP, causal attention. */
export interface TransformerConfig {
  /** Token ids are in [0, vocab). */
  vocab: number;
  /** Width E (a multiple of heads). */
  dModel: number;
  heads: number;
  layers: number;
  /** Hidden width of the MLP. */
  ffn: number;
  /** Longest sequence (rows of the position embedding). */
  maxLen: number;
}

/** Parameter names (PyTorch state_dict style) and shapes, in a fixed order. */
export function transformerParamShapes(c: TransformerConfig): [string, number[]][] {
  const E = c.dModel;
  const out: [string, number[]][] = [
    ['tok_emb.weight', [c.vocab, E]],
    ['pos_emb.weight', [c.maxLen, E]],
  ];
  for (let i = 0; i < c.layers; i++) {
    const p = `layers.${i}.`;
    out.push(
      [`${p}ln1.weight`, [E]],
      [`${p}ln1.bias`, [E]],
      [`${p}attn.q_proj.weight`, [E, E]],
      [`${p}attn.q_proj.bias`, [E]],
      [`${p}attn.k_proj.weight`, [E, E]],
      [`${p}attn.k_proj.bias`, [E]],
      [`${p}attn.v_proj.weight`, [E, E]],
      [`${p}attn.v_proj.bias`, [E]],
      [`${p}attn.out_proj.weight`, [E, E]],
      [`${p}attn.out_proj.bias`, [E]],
      [`${p}ln2.weight`, [E]],
      [`${p}ln2.bias`, [E]],
      [`${p}mlp.fc1.weight`, [c.ffn, E]],
      [`${p}mlp.fc1.bias`, [c.ffn]],
      [`${p}mlp.fc2.weight`, [E, c.ffn]],
      [`${p}mlp.fc2.bias`, [E]],
    );
  }
  out.push(['ln_f.weight', [E]], ['ln_f.bias', [E]], ['head.weight', [c.vocab, E]]);
  return out;
}

/** Throws unless the configuration is usable. */
export function checkTransformerConfig(what: string, c: TransformerConfig): void {
  for (const key of ['vocab', 'dModel', 'heads', 'layers', 'ffn', 'maxLen'] as const) {
    if (!Number.isInteger(c?.[key]) || c[key] < 1) {
      throw new Error(`${what}: config.${key} must be a positive integer, received ${String(c?.[key])}`);
    }
  }
  if (c.dModel % c.heads !== 0) {
    throw new Error(`${what}: config.heads must divide dModel=${c.dModel}, received ${c.heads}`);
  }
}

/**
 * Initial weights from `seed` (mulberry32): LayerNorm weights 1 and biases 0, embeddings uniform
 * in ±1, linear weights and biases uniform in ±1/sqrt(fan_in) (PyTorch's Linear default).
 */
export function initTransformerWeights(c: TransformerConfig, seed: number): Record<string, Float32Array> {
  checkTransformerConfig('initTransformerWeights', c);
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of transformerParamShapes(c)) {
    const n = shape.reduce((x, y) => x * y, 1);
    const data = new Float32Array(n);
    if (/ln\d?\.weight$|ln_f\.weight$/.test(name)) data.fill(1);
    else if (/ln\d?\.bias$|ln_f\.bias$/.test(name)) data.fill(0);
    else {
      const fanIn = name.endsWith('emb.weight')
        ? 1
        : name.endsWith('.bias')
          ? out[name.replace(/bias$/, 'weight')].length / n
          : shape[1];
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < n; i++) data[i] = (random() * 2 - 1) * bound;
    }
    out[name] = data;
  }
  return out;
}

/**
 * The digit-reversal task: n random digits, a separator (token 10), then the digits reversed.
 * Inputs are the first 2n tokens, targets the next token at each position, with -1 (ignored)
 * where the next token is one of the random input digits: only the reversal is learned.
 * Returns ids and targets [batch, 2n]; vocab 11, sequence length 2n.
 */
export function reverseDigitsBatch(
  random: () => number,
  batch: number,
  n: number,
): { ids: Int32Array; targets: Int32Array; length: number } {
  const L = 2 * n;
  const ids = new Int32Array(batch * L);
  const targets = new Int32Array(batch * L);
  for (let b = 0; b < batch; b++) {
    const digits = Array.from({ length: n }, () => Math.floor(random() * 10));
    const seq = [...digits, 10, ...digits.slice().reverse()];
    for (let i = 0; i < L; i++) {
      ids[b * L + i] = seq[i];
      targets[b * L + i] = i >= n ? seq[i + 1] : -1;
    }
  }
  return { ids, targets, length: L };
}
