// Part of both forms of pass 1 of split-K decode (decode_split.wgsl, decode_split_registers.wgsl):
// the mask and partials bindings, the rows of a block and the bias of a key (or four) for a row. Uniforms
// (src/ops/decode_attention.ts): B, Hq, Hkv, Lq, Lk, D, Dv, causal, mask_b .. mask_j (element
// strides of the mask broadcast to [B, Hq, Lq, Lk]), scale, the batch and head strides q_b .. o_h
// (see flash_common.wgsl), group (Hq / Hkv), tilesPerChunk (key tiles per chunk: WG keys in `split`, 4
// in `split_registers`), P (partials per query row), shift and the sparse rules' uniforms (see
// key_rules.wgsl); the rule data binding comes last (RULES_BINDING = 7). Constants: MASK and
// KEY_RULES (ruleConstants in src/ops/flash_attention.ts).
// bool: bytes packed four per word; additive: f32 bits
@group(0) @binding(4) var<storage, read> mask: array<u32>;
// [B * Hq * Lq, P, DV4]: unnormalised output of each partial
@group(0) @binding(5) var<storage, read_write> partO: array<vec4<f32>>;
// [B * Hq * Lq, P]: (m, l) of each partial
@group(0) @binding(6) var<storage, read_write> partML: array<vec2<f32>>;

struct Row {
  valid: bool,
  h: u32,
  i: u32,
  // index of the row in [B, Hq, Lq]
  index: u32,
}

// Row r of the block: (query head, query) pair number ri0 + r of kv head hk.
fn rowOf(b: u32, hk: u32, ri0: u32, r: u32) -> Row {
  let ri = ri0 + r;
  let h = hk * p.group + ri / p.Lq;
  let i = ri % p.Lq;
  return Row(ri < p.group * p.Lq, h, i, (b * p.Hq + h) * p.Lq + i);
}

// ALiBi plus the additive mask value, or MASKED, for key j (< jStop) of a row whose keys in range
// are `r` (keyRange). Without KEY_RULES (no ALiBi, mask_mod or block mask) only the mask is read:
// the rule checks would cost SwiftShader speed in the key loop even where never taken.
fn keyBias(b: u32, row: Row, r: KeyRange, j: u32, jStop: u32) -> f32 {
  if (!row.valid || j >= jStop || j < r.lo || j >= r.hi) {
    return MASKED;
  }
  if (KEY_RULES) {
    return ruleBias(b, row.h, row.i, j, r.shift);
  }
  return maskBias(b * p.mask_b + row.h * p.mask_h + row.i * p.mask_i + j * p.mask_j);
}

// keyBias of the four keys js, with the range checks as vector operations (only a mask or key
// rules need the keys one by one).
fn keyBiases(b: u32, row: Row, r: KeyRange, js: vec4<u32>, jStop: u32) -> vec4<f32> {
  let inRange = (js < vec4<u32>(min(jStop, r.hi))) & (js >= vec4<u32>(r.lo));
  if (!row.valid || !any(inRange)) {
    return vec4<f32>(MASKED);
  }
  if (!KEY_RULES && MASK == 0u) {
    return select(vec4<f32>(MASKED), vec4<f32>(0.0), inRange);
  }
  var bias = vec4<f32>(MASKED);
  for (var u = 0u; u < 4u; u++) {
    bias[u] = keyBias(b, row, r, js[u], jStop);
  }
  return bias;
}
