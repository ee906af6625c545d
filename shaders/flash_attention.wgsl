// Fused attention forward, flash-style: one workgroup per (query block, head, batch), or per
// (split of the keys, query block, head, batch) for calls with too few blocks to fill a GPU.
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq]
// and, when WEIGHTS, weights [B, Hq, Lq, Lk]. One invocation owns one query row: its scaled q and
// its output accumulator stay in registers; K and V tiles of BC keys are staged in workgroup
// memory; the softmax is online, in f32, so the Lq x Lk scores never reach memory.
// A call split over keys (p.splits workgroups per block, of p.split_keys keys each, a multiple of
// BC) ends with flash_partials.wgsl: each workgroup writes its rows' partial results, merged by
// decode_merge.wgsl; unsplit calls end with flash_rows.wgsl (WEIGHTS calls are never split).
// Constants (src/ops/flash_attention.ts): WG (rows per workgroup), BC (keys per tile),
// D4 = ceil(D / 4), DV4 = ceil(Dv / 4), MASK (0 none, 1 bool, 2 additive), LSE, WEIGHTS, DROPOUT
// (the probabilities summed into the output and written as weights are dropout.wgsl's), and the
// element storage helpers of src/f16.ts (elementPrelude, chunkPrelude, inputPrelude: Input, V,
// inputIndex, inputAt, storeOut): q, k, v and out are f32 or f16 (packed or native), read four
// elements at a time by load4.wgsl; scores, softmax state and accumulators are f32. Row strides:
// the uniforms q_l, k_l, v_l, o_l (see flash_common.wgsl); splits, split_keys.

// [B, Hq, Lq, Lk], written when WEIGHTS (the other bindings are in flash_common.wgsl)
@group(0) @binding(7) var<storage, read_write> weights: array<f32>;

var<workgroup> kt: array<vec4<f32>, BC * D4>;
var<workgroup> vt: array<vec4<f32>, BC * DV4>;
// Per-tile "some row may attend" flags, rotated over three slots so that a slot is reset only
// after every invocation has read it (needs no extra barrier).
var<workgroup> live: array<u32, 3>;

// ALiBi plus the additive mask value, or MASKED, for key j of query row i (keys `r` in range).
// Without KEY_RULES (no ALiBi, mask_mod or block mask) only the mask is read, as in the decode pass.
fn keyBias(b: u32, h: u32, i: u32, j: u32, r: KeyRange, rowValid: bool) -> f32 {
  if (!rowValid || j < r.lo || j >= r.hi) {
    return MASKED;
  }
  if (KEY_RULES) {
    return ruleBias(b, h, i, j, r.shift);
  }
  return maskBias(b * p.mask_b + h * p.mask_h + i * p.mask_i + j * p.mask_j);
}

// Stage keys [j0, j0 + BC) of one kv head in kt (and vt when withV), zero-padded: four elements
// per read and store (one Chunk read where rows and strides allow, load4.wgsl).
fn loadTiles(kBase: u32, vBase: u32, j0: u32, t: u32, withV: bool) {
  for (var e = t; e < BC * D4; e += WG) {
    let jj = e / D4;
    let d = e % D4 * 4u;
    var x = vec4<f32>(0.0);
    if (j0 + jj < p.Lk) {
      x = load4(1u, kBase + (j0 + jj) * p.k_l + d, p.D - d);
    }
    kt[e] = x;
  }
  if (withV) {
    for (var e = t; e < BC * DV4; e += WG) {
      let jj = e / DV4;
      let d = e % DV4 * 4u;
      var x = vec4<f32>(0.0);
      if (j0 + jj < p.Lk) {
        x = load4(2u, vBase + (j0 + jj) * p.v_l + d, p.Dv - d);
      }
      vt[e] = x;
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let split = flat % p.splits;
  let block = flat / p.splits;
  let blocks = (p.Lq + WG - 1u) / WG;
  let b = block / (blocks * p.Hq);
  let inUse = keysInUse(b);
  let h = (block / blocks) % p.Hq;
  let row0 = (block % blocks) * WG;
  let i = row0 + t;
  let rowValid = i < p.Lq;
  let hk = h / (p.Hq / p.Hkv);
  // row i in lse [B, Hq, Lq] and weights [B, Hq, Lq, Lk]
  let row = (b * p.Hq + h) * p.Lq + i;
  // first element of row i in q, of the kv head's key 0 in k and v
  let qAt = b * p.q_b + h * p.q_h + i * p.q_l;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h;

  var qr: array<vec4<f32>, D4>;
  if (rowValid) {
    for (var c = 0u; c < D4; c++) {
      qr[c] = load4(0u, qAt + c * 4u, p.D - c * 4u) * p.scale;
    }
  }

  // Keys some row of the block may attend in the split, [kLo, kHi): the loop's bounds (causal,
  // window and documents skip whole tiles). Uniform: every invocation computes it from the same
  // rows. The row's own range is cut to the split too (tiles may cross the split's end).
  let splitLo = split * p.split_keys;
  let splitHi = min(splitLo + p.split_keys, p.Lk);
  let keys = blockKeys(inUse, row0, min(row0 + WG, p.Lq) - 1u);
  let kLo = max(keys.x, splitLo);
  let kHi = min(keys.y, splitHi);
  var range = keyRange(inUse, i);
  range.lo = max(range.lo, splitLo);
  range.hi = max(range.lo, min(range.hi, splitHi));
  let mods = MODS;
  var dropKey = 0u;
  if (DROPOUT) {
    dropKey = dropRowKeys(b, h, i).x;
  }

  var m = MASKED;
  var l = 0.0;
  var acc: array<vec4<f32>, DV4>;
  var s: array<f32, BC>;
  var slot = 0u;
  for (var j0 = kLo; j0 < kHi; j0 += BC) {
    // Keys in empty tiles of the block mask are skipped whole, before any per-key work (uniform:
    // the union over the rows of the block, which may span several query blocks).
    if (BLOCKS != 0u && !blockStates(b, h, row0, min(row0 + WG, p.Lq) - 1u, j0, BC).x) {
      j0 = emptyKeysEnd(j0, BC) - BC;
      continue;
    }
    // Bit jj: key j0 + jj may be attended. Kept apart from the scores so that a NaN score (from
    // NaN in q or k) is still summed, and turns its row NaN instead of vanishing.
    var allowed = 0u;
    for (var jj = 0u; jj < BC; jj++) {
      s[jj] = keyBias(b, h, i, j0 + jj, range, rowValid);
      allowed |= select(0u, 1u << jj, s[jj] > MASKED);
    }
    if (perKeyRules()) {
      // Skip tiles that the mask, mask_mod or ALiBi's range empty for every row of the block.
      if (allowed != 0u) {
        live[slot] = 1u;
      }
      if (t == 0u) {
        live[(slot + 1u) % 3u] = 0u;
      }
      let tileLive = workgroupUniformLoad(&live[slot]);
      slot = (slot + 1u) % 3u;
      if (tileLive == 0u) {
        continue;
      }
    }
    loadTiles(kBase, vBase, j0, t, true);

    var tileMax = MASKED;
    for (var jj = 0u; jj < BC; jj++) {
      if ((allowed & (1u << jj)) != 0u) {
        var dot4 = vec4<f32>(0.0);
        for (var c = 0u; c < D4; c++) {
          dot4 += qr[c] * kt[jj * D4 + c];
        }
        var score = dot4.x + dot4.y + dot4.z + dot4.w;
        if (mods) {
          score = modScore(score, b, h, i, j0 + jj);
        }
        s[jj] += score;
        tileMax = max(tileMax, s[jj]);
      }
    }
    let mNew = max(m, tileMax);
    if (allowed != 0u) {
      let alpha = exp(m - mNew);
      l *= alpha;
      for (var c = 0u; c < DV4; c++) {
        acc[c] *= alpha;
      }
      for (var jj = 0u; jj < BC; jj++) {
        if ((allowed & (1u << jj)) != 0u) {
          let pj = exp(s[jj] - mNew);
          l += pj;
          // dropout changes what the output sums, not the softmax's denominator
          var pv = pj;
          if (DROPOUT) {
            pv *= dropFactor(dropKey, j0 + jj);
          }
          for (var c = 0u; c < DV4; c++) {
            acc[c] += pv * vt[jj * DV4 + c];
          }
        }
      }
      m = mNew;
    }
    workgroupBarrier();
  }

  // The sink joins the denominator (in the merge when the keys are split).
  if (p.splits == 1u) {
    let sink = sinkLogit(h);
    let mAll = max(m, sink);
    let alpha = exp(m - mAll);
    l = l * alpha + select(0.0, exp(sink - mAll), p.sinks_at != RULE_NONE);
    m = mAll;
    for (var c = 0u; c < DV4; c++) {
      acc[c] *= alpha;
    }
  }
  if (rowValid) {
    finishRow(b, h, i, m, l, &acc, split);
  }

  if (WEIGHTS) {
    // Second sweep: recompute each score and write exp(score - lse). Skipped keys stay 0.
    let rowLse = m + log(max(l, 1e-30));
    for (var j0 = keys.x; j0 < keys.y; j0 += BC) {
      loadTiles(kBase, vBase, j0, t, false);
      for (var jj = 0u; jj < BC; jj++) {
        let bias = keyBias(b, h, i, j0 + jj, range, rowValid);
        if (bias > MASKED && l > 0.0) {
          var dot4 = vec4<f32>(0.0);
          for (var c = 0u; c < D4; c++) {
            dot4 += qr[c] * kt[jj * D4 + c];
          }
          var score = dot4.x + dot4.y + dot4.z + dot4.w;
          if (mods) {
            score = modScore(score, b, h, i, j0 + jj);
          }
          score += bias;
          var w = exp(score - rowLse);
          if (DROPOUT) {
            w *= dropFactor(dropKey, j0 + jj);
          }
          weights[row * p.Lk + j0 + jj] = w;
        }
      }
      workgroupBarrier();
    }
  }
}
