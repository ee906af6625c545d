// Split-K attention for few queries against many keys (flash-decoding), pass 1 for GPUs. q [B, Hq,
// Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> partials, merged by decode_merge.wgsl into out
// [B, Hq, Lq, Dv] and lse [B, Hq, Lq]. q, k and v are read through their strides (uniforms q_b ..
// v_l), so [B, L, H, D] tensors and a KV cache are read in place.
// One workgroup per (key chunk, block of RQ rows, b * Hkv + kv head), in that order from the
// fastest. The rows of a block are (query head, query) pairs of the same kv head, so GQA heads
// share each K/V load. Lanes lie along the head dims: invocation t is lane c = t % LK of key group
// g = t / LK; lane c holds elements 4c .. 4c + 3 of each row's scaled q, reads those of k and v
// rows (the LK lanes of a group read a row: coalesced, whole vec4 / packed-f16 chunks when VEC)
// and accumulates those output columns. A step scores KU keys per group, the KU * G consecutive
// keys j0 + jj + u * G + g (u < KU) per workgroup. The lanes' partial dot products are summed over
// their group by subgroup shuffles where whole groups lie in subgroups of consecutive lanes
// (checked at run time: any subgroup size, any layout), otherwise, or for the lanes past the
// subgroup, through workgroup memory (two barriers per step). Each key group keeps its own online
// softmax state (m, l, o) per row over keys g, g + G, ... of the chunk, in f32, and writes it as
// a partial: no reduction across groups, no barrier in the key loop when shuffles suffice.
// Constants: WG, RQ (rows per block), LK (lanes per key, a power of two >= D4 and DV4), G = WG / LK
// (key groups), KU (keys per group and step, <= LK), D4 = ceil(D / 4), DV4 = ceil(Dv / 4), VEC (D,
// Dv and the strides of k and v multiples of 4: k and v read as Chunks), MASK, DROPOUT
// (dropout.wgsl's factors weigh what o sums), MODS, BLOCKS, KEY_RULES (ruleConstants in
// src/ops/flash_attention.ts); the element storage helpers of src/f16.ts (elementPrelude,
// chunkPrelude, inputPrelude(VEC)); Lanes, laneWidth and laneSum of decode_lanes_subgroups.wgsl or
// decode_lanes.wgsl; uniforms and the other bindings in decode_partials.wgsl, plus chunks (key
// chunks) and rowBlocks. Appended: decode_partials.wgsl, key_rules.wgsl, dropout.wgsl, masked.wgsl.
@group(0) @binding(1) var<storage, read> q: array<Stored>;
@group(0) @binding(2) var<storage, read> k: array<Input>;
@group(0) @binding(3) var<storage, read> v: array<Input>;

// [RQ * KU, WG]: each lane's partial dot products, when lanes are summed in workgroup memory
var<workgroup> red: array<f32, RQ * KU * WG>;
// [RQ * KU, G]: their sums per key group
var<workgroup> sums: array<f32, RQ * KU * G>;
// LK minus the fewest lanes some invocation may sum by shuffles (laneWidth)
var<workgroup> narrowest: atomic<u32>;
var<workgroup> shortfall: u32;

// Elements 4c .. 4c + 3 (c < D4) of the k row starting at element `base`, zero past D.
fn kSlice(base: u32, c: u32) -> vec4<f32> {
  if (VEC) {
    return inputAt(k[base / 4u + c], 0u);
  }
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let d = base + c * 4u + e;
    if (c * 4u + e < p.D) {
      x[e] = inputAt(k[inputIndex(d)], d).x;
    }
  }
  return x;
}

// The same of the v row starting at element `base` (c < DV4), zero past Dv.
fn vSlice(base: u32, c: u32) -> vec4<f32> {
  if (VEC) {
    return inputAt(v[base / 4u + c], 0u);
  }
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let d = base + c * 4u + e;
    if (c * 4u + e < p.Dv) {
      x[e] = inputAt(v[inputIndex(d)], d).x;
    }
  }
  return x;
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
  lanes: Lanes,
) {
  let w = workgroupIndex(wid);
  if (w >= p.workgroups) {
    return;
  }
  // Lanes of a group summed by shuffles: the same for the whole workgroup (uniform).
  atomicMax(&narrowest, LK - laneWidth(lanes, t, LK));
  workgroupBarrier();
  if (t == 0u) {
    shortfall = atomicLoad(&narrowest);
  }
  let width = LK - workgroupUniformLoad(&shortfall);

  let chunk = w % p.chunks;
  let ri0 = (w / p.chunks) % p.rowBlocks * RQ;
  let bh = w / (p.chunks * p.rowBlocks);
  let b = bh / p.Hkv;
  let hk = bh % p.Hkv;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h;
  let c = t % LK;
  let g = t / LK;

  var rows: array<Row, RQ>;
  var ranges: array<KeyRange, RQ>;
  // this lane's elements of each row's scaled q (zero past D and for rows past the block's end)
  var qc: array<vec4<f32>, RQ>;
  var m: array<f32, RQ>;
  var l: array<f32, RQ>;
  var acc: array<vec4<f32>, RQ>;
  // Keys some row of the block may attend: the chunk's loop runs over those only (uniform: every
  // invocation computes it from the same rows).
  var kLo = p.Lk;
  var kHi = 0u;
  for (var r = 0u; r < RQ; r++) {
    rows[r] = rowOf(b, hk, ri0, r);
    m[r] = MASKED;
    if (rows[r].valid) {
      ranges[r] = keyRange(rows[r].i);
      if (ranges[r].lo < ranges[r].hi) {
        kLo = min(kLo, ranges[r].lo);
        kHi = max(kHi, ranges[r].hi);
      }
      let qAt = b * p.q_b + rows[r].h * p.q_h + rows[r].i * p.q_l;
      for (var e = 0u; e < 4u; e++) {
        let d = c * 4u + e;
        if (d < p.D) {
          qc[r][e] = unpackAt(q[wordOf(qAt + d)], qAt + d) * p.scale;
        }
      }
    }
  }
  let mods = MODS;
  // with DROPOUT: each row's key of the keep decisions (dropout.wgsl)
  var dropKeys: array<u32, RQ>;
  if (DROPOUT) {
    for (var r = 0u; r < RQ; r++) {
      dropKeys[r] = dropRowKeys(b, rows[r].h, rows[r].i).x;
    }
  }

  var nanBits = 0x7fc00000u; // a var, so that the NaN is made at run time, not in a constant
  let nan = bitcast<f32>(nanBits);
  let jStart = max(chunk * p.tilesPerChunk * WG, kLo);
  let jStop = min(chunk * p.tilesPerChunk * WG + p.tilesPerChunk * WG, kHi);
  for (var j0 = jStart; j0 < jStop; j0 += WG) {
    // A tile of WG keys that lie in empty tiles of the block mask for every row is skipped whole
    // (uniform: every invocation tests the same rows).
    if (BLOCKS != 0u) {
      var live = false;
      for (var r = 0u; r < RQ; r++) {
        live = live || (rows[r].valid && blockStates(b, rows[r].h, rows[r].i, rows[r].i, j0, WG).x);
      }
      if (!live) {
        continue;
      }
    }
    let keys = min(WG, jStop - j0);
    for (var jj = 0u; jj < keys; jj += G * KU) {
      // s[r * KU + u]: the bias of row r for key j0 + jj + u * G + g (MASKED: not allowed), then its
      // score; x: the lane's part of q·k, then the sum over the group
      var s = array<f32, RQ * KU>();
      var x = array<f32, RQ * KU>();
      var ks = array<vec4<f32>, KU>();
      var allowed = array<bool, KU>();
      for (var u = 0u; u < KU; u++) {
        let j = j0 + jj + u * G + g;
        for (var r = 0u; r < RQ; r++) {
          s[r * KU + u] = keyBias(b, rows[r], ranges[r], j, jStop);
          allowed[u] = allowed[u] || s[r * KU + u] > MASKED;
        }
        // (loads first, all of them: several in flight per lane)
        if (allowed[u] && c < D4) {
          ks[u] = kSlice(kBase + j * p.k_l, c);
        }
      }
      for (var u = 0u; u < KU; u++) {
        for (var r = 0u; r < RQ; r++) {
          x[r * KU + u] = laneSum(dot(qc[r], ks[u]), width);
        }
      }
      if (width < LK) {
        // the rest of the sum: lane c adds up values c, c + LK, ... over the group's segments
        for (var n = 0u; n < RQ * KU; n++) {
          red[n * WG + t] = x[n];
        }
        workgroupBarrier();
        for (var n = c; n < RQ * KU; n += LK) {
          var sum = 0.0;
          for (var e = 0u; e < LK; e += width) {
            sum += red[n * WG + g * LK + e];
          }
          sums[n * G + g] = sum;
        }
        workgroupBarrier();
        for (var n = 0u; n < RQ * KU; n++) {
          x[n] = sums[n * G + g];
        }
      }

      // Scores; new running max of each row; rescale what was accumulated; probabilities (in x).
      var vs = array<vec4<f32>, KU>();
      for (var r = 0u; r < RQ; r++) {
        var mNew = m[r];
        for (var u = 0u; u < KU; u++) {
          let n = r * KU + u;
          var score = x[n];
          if (mods) {
            score = modScore(score, b, rows[r].h, rows[r].i, j0 + jj + u * G + g);
          }
          s[n] = select(MASKED, s[n] + score, s[n] > MASKED);
          mNew = max(mNew, s[n]);
        }
        let alpha = exp(m[r] - mNew);
        l[r] *= alpha;
        acc[r] *= alpha;
        m[r] = mNew;
        for (var u = 0u; u < KU; u++) {
          let n = r * KU + u;
          // A NaN or +Infinity score (from q or k) must turn its row NaN; tested by bits and
          // written as a NaN, because WGSL lets max and exp assume finite values.
          let bits = bitcast<u32>(s[n]);
          let poisoned = (bits & 0x7fffffffu) > 0x7f800000u || bits == 0x7f800000u;
          let pj = select(select(0.0, exp(s[n] - mNew), s[n] > MASKED), nan, poisoned);
          l[r] += pj;
          // what o sums: with DROPOUT, weighed by the keep factor (l sums the undropped)
          x[n] = pj;
          if (DROPOUT) {
            x[n] = pj * dropFactor(dropKeys[r], j0 + jj + u * G + g);
          }
        }
      }
      // Values: lane c's elements of the rows of keys some row weighs (loads first, as above).
      for (var u = 0u; u < KU; u++) {
        var used = false;
        for (var r = 0u; r < RQ; r++) {
          used = used || x[r * KU + u] != 0.0;
        }
        if (used && c < DV4) {
          vs[u] = vSlice(vBase + (j0 + jj + u * G + g) * p.v_l, c);
        }
      }
      for (var u = 0u; u < KU; u++) {
        for (var r = 0u; r < RQ; r++) {
          acc[r] += x[r * KU + u] * vs[u];
        }
      }
    }
  }

  for (var r = 0u; r < RQ; r++) {
    if (rows[r].valid) {
      let part = rows[r].index * p.P + chunk * G + g;
      if (c < DV4) {
        partO[part * DV4 + c] = acc[r];
      }
      if (c == 0u) {
        partML[part] = vec2<f32>(m[r], l[r]);
      }
    }
  }
}
