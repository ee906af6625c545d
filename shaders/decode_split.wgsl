// Split-K attention for few queries against many keys (flash-decoding), pass 1 for GPUs: workgroup
// memory. q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> partials, merged by
// decode_merge.wgsl into out [B, Hq, Lq, Dv] and lse [B, Hq, Lq]. q, k and v are read through
// their strides (uniforms q_b .. v_l), so [B, L, H, D] tensors and a KV cache are read in place.
// One workgroup per (key chunk, block of RQ rows, b * Hkv + kv head), in that order from the
// fastest. The rows of a block are (query head, query) pairs of the same kv head, so GQA heads
// share each K/V load. For each tile of WG keys, invocation t scores key t for every row; a tree
// reduction gives the tile max; then invocation (c, g) accumulates output columns 4c..4c+3 over the
// keys g, g + G, ... of the tile. Each key group g writes its own partial (m, l, o): l and o sum
// exp(s - m) and exp(s - m) v over that group's keys of the chunk, m is the running max.
// Constants: WG, RQ (rows per block), D4 = ceil(D / 4), DV4 = ceil(Dv / 4), G = WG / DV4 (key
// groups), MASK, DROPOUT (dropout.wgsl's factors weigh what o sums), and the element storage
// helpers of src/f16.ts; uniforms and the other bindings in decode_partials.wgsl, plus chunks (key
// chunks) and rowBlocks. Appended: decode_partials.wgsl, key_rules.wgsl, dropout.wgsl, masked.wgsl.
// Scores, softmax state and accumulators are f32.
@group(0) @binding(1) var<storage, read> q: array<Stored>;
@group(0) @binding(2) var<storage, read> k: array<Stored>;
@group(0) @binding(3) var<storage, read> v: array<Stored>;

var<workgroup> qs: array<vec4<f32>, RQ * D4>;
// [RQ, WG]: scores of the tile, then their exp(s - m) (with DROPOUT: negated where dropped, so
// that the denominator still sums them and the output does not)
var<workgroup> sc: array<f32, RQ * WG>;
// [RQ, WG]: scratch of the max reduction
var<workgroup> red: array<f32, RQ * WG>;

// Elements 4c .. 4c + 3 of the v row starting at element `base`, zero past Dv.
fn loadV4(base: u32, c: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let d = c * 4u + e;
    if (d < p.Dv) {
      x[e] = unpackAt(v[wordOf(base + d)], base + d);
    }
  }
  return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let w = workgroupIndex(wid);
  if (w >= p.workgroups) {
    return;
  }
  let chunk = w % p.chunks;
  let ri0 = (w / p.chunks) % p.rowBlocks * RQ;
  let bh = w / (p.chunks * p.rowBlocks);
  let b = bh / p.Hkv;
  let hk = bh % p.Hkv;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h;

  // Scaled q rows of the block, zero-padded to D4 * 4 (and for rows past the block's end).
  for (var e = t; e < RQ * D4 * 4u; e += WG) {
    let r = e / (D4 * 4u);
    let d = e % (D4 * 4u);
    let row = rowOf(b, hk, ri0, r);
    var x = 0.0;
    if (row.valid && d < p.D) {
      let qe = b * p.q_b + row.h * p.q_h + row.i * p.q_l + d;
      x = unpackAt(q[wordOf(qe)], qe) * p.scale;
    }
    qs[r * D4 + d / 4u][d % 4u] = x;
  }
  workgroupBarrier();

  let c = t % DV4;
  let g = t / DV4;
  var rows: array<Row, RQ>;
  var ranges: array<KeyRange, RQ>;
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
    // A tile whose keys lie in empty tiles of the block mask for every row is skipped whole
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
    // Scores of key j0 + t for every row. (Explicit zero initialisers: Dawn on SwiftShader was
    // seen not to re-zero an uninitialised `var` declared inside a loop.)
    let j = j0 + t;
    var s = array<f32, RQ>();
    var anyAllowed = false;
    for (var r = 0u; r < RQ; r++) {
      s[r] = keyBias(b, rows[r], ranges[r], j, jStop);
      anyAllowed = anyAllowed || s[r] > MASKED;
    }
    if (anyAllowed) {
      var dot = array<f32, RQ>();
      for (var d = 0u; d < p.D; d++) {
        let ke = kBase + j * p.k_l + d;
        let kd = unpackAt(k[wordOf(ke)], ke);
        for (var r = 0u; r < RQ; r++) {
          dot[r] += qs[r * D4 + d / 4u][d % 4u] * kd;
        }
      }
      for (var r = 0u; r < RQ; r++) {
        var score = dot[r];
        if (mods) {
          score = modScore(score, b, rows[r].h, rows[r].i, j);
        }
        s[r] = select(MASKED, s[r] + score, s[r] > MASKED);
      }
    }
    for (var r = 0u; r < RQ; r++) {
      sc[r * WG + t] = s[r];
      red[r * WG + t] = s[r];
    }
    workgroupBarrier();

    // Tile max of each row (WG is a power of two).
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
      if (t < stride) {
        for (var r = 0u; r < RQ; r++) {
          red[r * WG + t] = max(red[r * WG + t], red[r * WG + t + stride]);
        }
      }
      workgroupBarrier();
    }

    // New running max; rescale what was accumulated; probabilities of this invocation's key.
    for (var r = 0u; r < RQ; r++) {
      let mNew = max(m[r], red[r * WG]);
      let alpha = exp(m[r] - mNew);
      l[r] *= alpha;
      acc[r] *= alpha;
      m[r] = mNew;
      // A NaN or +Infinity score (from q or k) must turn its row NaN; tested by bits and written
      // as a NaN, because WGSL lets max and exp assume finite values.
      let bits = bitcast<u32>(s[r]);
      let poisoned = (bits & 0x7fffffffu) > 0x7f800000u || bits == 0x7f800000u;
      var pj = select(select(0.0, exp(s[r] - mNew), s[r] > MASKED), nan, poisoned);
      if (DROPOUT && dropFactor(dropKeys[r], j) == 0.0) {
        pj = -pj;
      }
      sc[r * WG + t] = pj;
    }
    workgroupBarrier();

    if (g < G) {
      for (var jj = g; jj < WG && j0 + jj < jStop; jj += G) {
        let vj = loadV4(vBase + (j0 + jj) * p.v_l, c);
        for (var r = 0u; r < RQ; r++) {
          let pj = sc[r * WG + jj];
          if (DROPOUT) {
            // negated: dropped (the denominator sums it, the output does not)
            l[r] += abs(pj);
            acc[r] += select(0.0, pj * p.drop_scale, pj > 0.0) * vj;
          } else {
            l[r] += pj;
            acc[r] += pj * vj;
          }
        }
      }
    }
    workgroupBarrier();
  }

  if (g < G) {
    for (var r = 0u; r < RQ; r++) {
      if (rows[r].valid) {
        let part = rows[r].index * p.P + chunk * G + g;
        partO[part * DV4 + c] = acc[r];
        if (c == 0u) {
          partML[part] = vec2<f32>(m[r], l[r]);
        }
      }
    }
  }
}

