// Which keys a query row may attend and what its scores become: shared by every kernel that
// scores keys (both flash kernels, both split passes of decode, the backward). Semantics (in this
// order, DESIGN.md): s = scale * q·k; softcap; score_mod; ALiBi; the additive mask; a key is
// allowed iff causal, window, documents, bool mask and mask_mod allow it.
// Uses the uniforms of scoringUniforms (src/ops/flash_attention.ts), the kernel's
// `mask: array<u32>` binding, its MASK constant (0 none, 1 bool: bytes packed four per word, 2
// additive: f32 bits), MASKED and NEG_INF_BITS (masked.wgsl), the functions score_mod and mask_mod
// (the caller's WGSL or the identities, see scoringSources), and declares the `rules` binding at
// RULES_BINDING (a constant the kernel's program sets: the last binding).
// Indices b, h, i, j are those of the call's own (sliced) tensors; the uniforms b0, h0, i0, j0 add
// the offset of the slice in the full problem (split calls), which score_mod, mask_mod, ALiBi,
// sinks and documents see.

// Per-call rule data, u32 words: ALiBi slopes and sinks (f32 bits, one per query head of the full
// problem; slopes per batch item too when alibi_b = Hq) from alibi_at and sinks_at, cumulative document starts (cuSeqlensQ, then cuSeqlensK,
// docs + 1 words each) from docs_q_at and docs_k_at, the keys in use (sequsedK, one per batch item
// or document; lk_full is the full problem's Lk) from used_at, the first key in use per batch item
// (cacheLeftpad) from leftpad_at, block-mask states from bm_at (blockState).
// modData from mod_at: per entry, the offset of its data from mod_at and its length, then the data
// (f32 or i32 bits). RULE_NONE marks an absent part.
@group(0) @binding(RULES_BINDING) var<storage, read> rules: array<u32>;

const RULE_NONE = 0xffffffffu;

// Where element `index` of modData entry e is in the rule data (past the end: its last element).
// The entries' WGSL functions (modDataSource, src/ops/attention_plan.ts) read through it.
fn modDataAt(e: u32, index: u32) -> u32 {
  return p.mod_at + rules[p.mod_at + 2u * e] + min(index, rules[p.mod_at + 2u * e + 1u] - 1u);
}

// Causal, bottom-right: key j is allowed for row i iff j <= i + shift (Lk - Lq, or a split
// call's own shift). Ignores windows and documents: use keyRange.
fn causalAllows(i: u32, j: u32) -> bool {
  return p.causal == 0u || i32(j) <= i32(i) + p.shift;
}

// Keys [0, causalEnd(i)) may be attended by rows up to i as far as causal goes (no windows or
// documents: use keyRange).
fn causalEnd(i: u32) -> u32 {
  if (p.causal == 0u) {
    return p.Lk;
  }
  return u32(clamp(i32(i) + p.shift + 1, 0, i32(p.Lk)));
}

// Keys [lo, hi) that causal, the window, the row's document and the keys in use (sequsedK,
// cacheLeftpad) allow row i of a batch item that uses keys [inUse.x, inUse.y) (keysInUse) (empty:
// lo == hi); `shift` is the row's bottom-right offset (its document's, with documents; from the
// keys in use, with sequsedK), so that key j lies i + shift - j below the row's diagonal.
struct KeyRange {
  lo: u32,
  hi: u32,
  shift: i32,
}

// The keys batch item b uses, [x, y) in key positions of the full problem: from cacheLeftpad[b]
// (0 without) to sequsedK[b] (lk_full without it, and with documents: keyRange reads their counts
// per document). Kernels read it once, at their start, for keyRange and blockKeys: read inside
// those (in key loops), it made SwiftShader compile the backward's kernels four times slower.
fn keysInUse(b: u32) -> vec2<i32> {
  var first = 0u;
  if (p.leftpad_at != RULE_NONE) {
    first = min(rules[p.leftpad_at + b + p.b0], p.lk_full);
  }
  if (p.docs != 0u || p.used_at == RULE_NONE) {
    return vec2<i32>(i32(first), i32(p.lk_full));
  }
  return vec2<i32>(i32(first), i32(min(rules[p.used_at + b + p.b0], p.lk_full)));
}

fn keyRange(inUse: vec2<i32>, i: u32) -> KeyRange {
  // the batch item's diagonal ends at its last key in use
  var shift = p.shift + inUse.y - i32(p.lk_full);
  var lo = inUse.x - i32(p.j0);
  var hi = inUse.y - i32(p.j0);
  if (p.docs != 0u) {
    // the document d with cuQ[d] <= row < cuQ[d + 1] (the last start <= row skips empty ones)
    let gi = i + p.i0;
    var first = 0u;
    var count = p.docs;
    while (count > 0u) {
      let half = count / 2u;
      if (rules[p.docs_q_at + first + half + 1u] <= gi) {
        first += half + 1u;
        count -= half + 1u;
      } else {
        count = half;
      }
    }
    let d = min(first, p.docs - 1u);
    let qEnd = i32(rules[p.docs_q_at + d + 1u]);
    let kStart = i32(rules[p.docs_k_at + d]);
    var kEnd = i32(rules[p.docs_k_at + d + 1u]);
    if (p.used_at != RULE_NONE) {
      // document d uses its first sequsedK[d] keys
      kEnd = min(kEnd, kStart + i32(min(rules[p.used_at + d], p.lk_full)));
    }
    shift = kEnd - qEnd + i32(p.i0) - i32(p.j0);
    lo = kStart - i32(p.j0);
    hi = kEnd - i32(p.j0);
  }
  let diag = i32(i) + shift;
  var right = p.win_right;
  if (p.causal != 0u) {
    right = min(right, 0);
  }
  lo = clamp(max(lo, diag - p.win_left), 0, i32(p.Lk));
  hi = clamp(min(hi, diag + right + 1), 0, i32(p.Lk));
  return KeyRange(u32(lo), u32(max(lo, hi)), shift);
}

// Keys of rows [ia, ib] as far as keyRange goes: x, y = the keys some row may attend ([x, y), the
// bounds of a block's key loop); z, w = the keys every row may attend ([z, w), maybe empty).
fn blockKeys(inUse: vec2<i32>, ia: u32, ib: u32) -> vec4<u32> {
  var lo = p.Lk;
  var hi = 0u;
  var loAll = 0u;
  var hiAll = p.Lk;
  for (var i = ia; i <= ib; i++) {
    let r = keyRange(inUse, i);
    if (r.lo < r.hi) {
      lo = min(lo, r.lo);
      hi = max(hi, r.hi);
    }
    loAll = max(loAll, r.lo);
    hiAll = min(hiAll, r.hi);
  }
  return vec4<u32>(lo, max(lo, hi), loAll, max(loAll, hiAll));
}

// Whether keys in range need a per-key rule (bool or additive mask, mask_mod, ALiBi): without one,
// a tile of keys every row of a block may attend is scored without bias.
fn perKeyRules() -> bool {
  return MASK != 0u || p.mask_mod != 0u || p.alibi_at != RULE_NONE || p.bm_at != RULE_NONE;
}

// Whether keys in range need a bias (a mask or ALiBi): without one, a tile every row may attend and
// whose block-mask tiles are full (blockStates) is scored without bias.
fn perKeyBias() -> bool {
  return MASK != 0u || p.alibi_at != RULE_NONE;
}

// The block mask's state of the tile holding (row i, key j) of head h, batch b: 0 empty, 1 partial,
// 2 full (1 without a block mask: the other rules decide). States are f32 values in the rule data from bm_at, laid out
// [bm_b, bm_h, bm_nq, bm_nk] (bm_b, bm_h of 1 broadcast), tiles of bm_bq rows x bm_bk keys.
fn blockState(b: u32, h: u32, i: u32, j: u32) -> u32 {
  if (p.bm_at == RULE_NONE) {
    return 1u;
  }
  let bb = select(b + p.b0, 0u, p.bm_b == 1u);
  let hh = select(h + p.h0, 0u, p.bm_h == 1u);
  let tile = ((bb * p.bm_h + hh) * p.bm_nq + (i + p.i0) / p.bm_bq) * p.bm_nk + (j + p.j0) / p.bm_bk;
  return u32(bitcast<f32>(rules[p.bm_at + tile]));
}

// Over rows [ia, ib] and keys [j0, j0 + n) (n > 0) of head h, batch b: x = some pair lies in a
// non-empty tile of the block mask (else the keys can be skipped), y = every pair needs no
// mask_mod (no mask_mod, or all their tiles are full). No block mask: (true, no mask_mod).
fn blockStates(b: u32, h: u32, ia: u32, ib: u32, j0: u32, n: u32) -> vec2<bool> {
  if (p.bm_at == RULE_NONE) {
    return vec2<bool>(true, p.mask_mod == 0u);
  }
  var any = false;
  var allFull = true;
  let jb = min(j0 + n, p.Lk) - 1u;
  for (var qb = (ia + p.i0) / p.bm_bq; qb <= (ib + p.i0) / p.bm_bq; qb++) {
    for (var kb = (j0 + p.j0) / p.bm_bk; kb <= (jb + p.j0) / p.bm_bk; kb++) {
      let st = blockState(b, h, max(qb * p.bm_bq, p.i0) - p.i0, max(kb * p.bm_bk, p.j0) - p.j0);
      any = any || st != 0u;
      allFull = allFull && st == 2u;
    }
  }
  return vec2<bool>(any, allFull || p.mask_mod == 0u);
}

// Index of the first state of the block-mask row of tiles holding row i of head h, batch b.
fn blockRow(b: u32, h: u32, i: u32) -> u32 {
  let bb = select(b + p.b0, 0u, p.bm_b == 1u);
  let hh = select(h + p.h0, 0u, p.bm_h == 1u);
  return p.bm_at + ((bb * p.bm_h + hh) * p.bm_nq + (i + p.i0) / p.bm_bq) * p.bm_nk;
}

// blockStates of keys [j0, j0 + n) for the rows of two block-mask rows of tiles (blockRow): the
// same result without loops, for kernels whose few rows span at most two query blocks.
fn blockStates2(rowA: u32, rowB: u32, j0: u32, n: u32) -> vec2<bool> {
  let kbA = (j0 + p.j0) / p.bm_bk;
  let kbB = (min(j0 + n, p.Lk) - 1u + p.j0) / p.bm_bk;
  let s = vec4<f32>(
    bitcast<f32>(rules[rowA + kbA]),
    bitcast<f32>(rules[rowA + kbB]),
    bitcast<f32>(rules[rowB + kbA]),
    bitcast<f32>(rules[rowB + kbB]),
  );
  return vec2<bool>(any(s != vec4<f32>(0.0)), all(s == vec4<f32>(2.0)) || p.mask_mod == 0u);
}

// After blockStates found keys [j0, j0 + n) empty: the end of the block-mask key block holding key
// j0 + n - 1, where a key loop can resume.
fn emptyKeysEnd(j0: u32, n: u32) -> u32 {
  return min(((j0 + n - 1u + p.j0) / p.bm_bk + 1u) * p.bm_bk - p.j0, p.Lk);
}

// 0 or MASKED for a bool mask, else the additive value (MASKED for -Infinity), of element e of the
// mask broadcast to [B, Hq, Lq, Lk].
fn maskBias(e: u32) -> f32 {
  if (MASK == 0u) {
    return 0.0;
  }
  if (MASK == 1u) {
    let byte = (mask[e / 4u] >> ((e % 4u) * 8u)) & 0xffu;
    return select(MASKED, 0.0, byte != 0u);
  }
  let bits = mask[e];
  if (bits == NEG_INF_BITS) {
    return MASKED;
  }
  return max(bitcast<f32>(bits), MASKED);
}

// What is added to the modified score of key j for row i (ALiBi and the additive mask), or MASKED
// where the bool mask or mask_mod disallow it. The key range (keyRange) is not checked here.
fn ruleBias(b: u32, h: u32, i: u32, j: u32, shift: i32) -> f32 {
  let bias = maskBias(b * p.mask_b + h * p.mask_h + i * p.mask_i + j * p.mask_j);
  // empty tiles of the block mask allow nothing; on full ones mask_mod is not evaluated
  let tile = blockState(b, h, i, j);
  if (bias <= MASKED || tile == 0u) {
    return MASKED;
  }
  if (p.mask_mod != 0u && tile != 2u && !mask_mod(b + p.b0, h + p.h0, i + p.i0, j + p.j0)) {
    return MASKED;
  }
  if (p.alibi_at == RULE_NONE) {
    return bias;
  }
  let slope = bitcast<f32>(rules[p.alibi_at + (b + p.b0) * p.alibi_b + h + p.h0]);
  return bias - slope * f32(abs(i32(i) + shift - i32(j)));
}

// The softcap of s = scale * q·k (s itself without one): score_mod's input.
fn capScore(s: f32) -> f32 {
  if (p.softcap > 0.0) {
    // clamped: tanh of a large argument may be computed as inf / inf
    return p.softcap * tanh(clamp(s / p.softcap, -16.0, 16.0));
  }
  return s;
}

// softcap, then score_mod, of s = scale * q·k (the parts of the modification that are not a
// constant added).
fn modScore(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {
  let x = capScore(s);
  if (p.score_mod != 0u) {
    return score_mod(x, b + p.b0, h + p.h0, i + p.i0, j + p.j0);
  }
  return x;
}

// Whether scores need modScore (softcap or score_mod): kernels skip the call otherwise.
fn scoresModified() -> bool {
  return p.softcap > 0.0 || p.score_mod != 0u;
}

// The sink logit of head h, MASKED without sinks.
fn sinkLogit(h: u32) -> f32 {
  if (p.sinks_at == RULE_NONE) {
    return MASKED;
  }
  return bitcast<f32>(rules[p.sinks_at + h + p.h0]);
}

// The score of key j for query row i of head h, batch b, from s = scale * q·k: the modifications
// and the additive mask applied, or MASKED where the row may not attend the key; `r` is the row's
// keyRange(b, i), which callers compute once per row. Kernels that need no tile-level shortcuts
// (the backward) score through this one function, so that an option added here reaches them all.
fn keyScore(s: f32, b: u32, h: u32, i: u32, j: u32, r: KeyRange) -> f32 {
  if (j < r.lo || j >= r.hi) {
    return MASKED;
  }
  let bias = ruleBias(b, h, i, j, r.shift);
  return select(MASKED, modScore(s, b, h, i, j) + bias, bias > MASKED);
}
