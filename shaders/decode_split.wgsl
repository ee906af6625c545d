// Split-K attention for few queries against many keys (flash-decoding), pass 1 for GPUs. q [B, Hq,
// Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> partials, merged by decode_merge.wgsl into out
// [B, Hq, Lq, Dv] and lse [B, Hq, Lq]. q, k and v are read through their strides (uniforms q_b ..
// v_l), so [B, L, H, D] tensors and a KV cache are read in place.
// One workgroup per (key chunk, block of RQ rows, b * Hkv + kv head), in that order from the
// fastest. The rows of a block are (query head, query) pairs of the same kv head, so GQA heads
// share each K/V load. Lanes lie along the head dims: invocation t is lane c = t % LK of key group
// g = t / LK; lane c owns the slices c, c + LK, ... (SK of k, SV of v) of four elements of a row:
// it holds those of each row's scaled q, reads those of k and v rows (the LK lanes of a group read
// LK consecutive slices of a row at a time: coalesced, whole vec4 / packed-f16 chunks when VEC)
// and accumulates those output columns. A step scores four keys per group, jg + u * G for u < 4
// (jg = j0 + jj + g: the 4 * G consecutive keys from j0 + jj per workgroup), as the components of
// a vec4 per row. The lanes' partial dot products are summed over their group by subgroup shuffles
// where whole groups lie in subgroups of consecutive lanes (checked at run time: any subgroup
// size, any layout), otherwise, or for the lanes past the subgroup, through workgroup memory (two
// barriers per step). Each key group keeps its own online softmax state (m, l, o) per row over
// keys g, g + G, ... of the chunk, in f32 (no barrier in the key loop where shuffles suffice);
// after the loop, with FOLD, the groups' states are folded into one partial per row and chunk, so
// that the merge reads G times fewer partials and a call may have G times more chunks in flight;
// without it each group writes its own partial.
// Register arrays (qc, acc, vs, m, l) are indexed only in loops of constant trip count, with no
// barrier inside (bounds tested in the body): GPU compilers keep an array that some loop indexes
// otherwise in memory.
// Constants: WG, RQ (rows per block), LK (lanes per key, a power of two >= 4), G = WG / LK (key
// groups), FOLD, RED = max(RQ * WG, G / 2 * DV4 with FOLD), D4 = ceil(D / 4), DV4 = ceil(Dv / 4), SK = ceil(D4 / LK), SV = ceil(DV4 / LK), VEC (D,
// Dv and the strides of k and v multiples of 4: k and v read as Chunks), MASK, DROPOUT
// (dropout.wgsl's factors weigh what o sums), MODS, BLOCKS, KEY_RULES (ruleConstants in
// src/ops/flash_attention.ts); the element storage helpers of src/f16.ts (elementPrelude,
// chunkPrelude, inputPrelude(VEC)); Lanes, laneWidth and laneSum of decode_lanes_subgroups.wgsl or
// decode_lanes.wgsl; uniforms and the other bindings in decode_partials.wgsl, plus chunks (key
// chunks) and rowBlocks. Appended: decode_partials.wgsl, key_rules.wgsl, dropout.wgsl, masked.wgsl.
@group(0) @binding(1) var<storage, read> q: array<Stored>;
@group(0) @binding(2) var<storage, read> k: array<Input>;
@group(0) @binding(3) var<storage, read> v: array<Input>;

// [RQ, WG]: each lane's partial dot products of its four keys, when summed in workgroup memory;
// at the end [G / 2, DV4]: accumulators of key groups being folded (RED: the larger of the two)
var<workgroup> red: array<vec4<f32>, RED>;
// [RQ, G]: their sums per key group; at the end each group's (m, l) per row
var<workgroup> sums: array<vec4<f32>, RQ * G>;
// LK minus the fewest lanes some invocation may sum by shuffles (laneWidth)
var<workgroup> narrowest: atomic<u32>;
var<workgroup> shortfall: u32;

// Chunk or element i of k, or of v when `fromV` (a constant at every call).
fn kvAt(fromV: bool, i: u32) -> Input {
  if (fromV) {
    return v[i];
  }
  return k[i];
}

// Elements 4c .. 4c + 3 (slice c) of the k row (v row when `fromV`) starting at element `base`,
// zero past D (Dv).
fn rowSlice(fromV: bool, base: u32, c: u32) -> vec4<f32> {
  if (VEC) {
    return inputAt(kvAt(fromV, base / 4u + c), 0u);
  }
  let n = select(p.D, p.Dv, fromV);
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) {
    let d = base + c * 4u + e;
    if (c * 4u + e < n) {
      x[e] = inputAt(kvAt(fromV, inputIndex(d)), d).x;
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
  let inUse = keysInUse(b);
  let hk = bh % p.Hkv;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h;
  let c = t % LK;
  let g = t / LK;

  var rows: array<Row, RQ>;
  var ranges: array<KeyRange, RQ>;
  // [RQ, SK]: this lane's slices of each row's scaled q (zero past D and for rows past the block)
  var qc: array<vec4<f32>, RQ * SK>;
  var m: array<f32, RQ>;
  var l: array<f32, RQ>;
  // [RQ, SV]
  var acc: array<vec4<f32>, RQ * SV>;
  // Keys some row of the block may attend: the chunk's loop runs over those only (uniform: every
  // invocation computes it from the same rows).
  var kLo = p.Lk;
  var kHi = 0u;
  for (var r = 0u; r < RQ; r++) {
    rows[r] = rowOf(b, hk, ri0, r);
    m[r] = MASKED;
    if (rows[r].valid) {
      ranges[r] = keyRange(inUse, rows[r].i);
      if (ranges[r].lo < ranges[r].hi) {
        kLo = min(kLo, ranges[r].lo);
        kHi = max(kHi, ranges[r].hi);
      }
      let qAt = b * p.q_b + rows[r].h * p.q_h + rows[r].i * p.q_l;
      for (var i = 0u; i < SK; i++) {
        for (var e = 0u; e < 4u; e++) {
          let d = (c + i * LK) * 4u + e;
          if (d < p.D) {
            qc[r * SK + i][e] = unpackAt(q[wordOf(qAt + d)], qAt + d) * p.scale;
          }
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
  let nan = vec4<f32>(bitcast<f32>(nanBits));
  let z = vec4<f32>(0.0);
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
    for (var jj = 0u; jj < keys; jj += 4u * G) {
      // the group's four keys, and the rows they are read from: keys past jStop (masked) read row
      // jStop - 1, so that every load stays in the tensor
      let js = vec4<u32>(j0 + jj + g) + vec4<u32>(0u, G, 2u * G, 3u * G);
      let jr = min(js, vec4<u32>(jStop - 1u));
      // s[r]: row r's bias of each key (MASKED: not allowed), then its score. (Explicit zero
      // initialisers: Dawn on SwiftShader was seen not to re-zero an uninitialised `var` declared
      // inside a loop.)
      var s = array<vec4<f32>, RQ>();
      var anyAllowed = false;
      for (var r = 0u; r < RQ; r++) {
        s[r] = keyBiases(b, rows[r], ranges[r], js, jStop);
        anyAllowed = anyAllowed || any(s[r] > vec4<f32>(MASKED));
      }
      // x[r]: the lane's part of q·k of the four keys, then the sum over the group. vs: the lane's
      // slices of the keys' v rows, read here with k's (not after the scores, which would wait on
      // a second round trip to memory per step)
      var x = array<vec4<f32>, RQ>();
      var vs = array<mat4x4<f32>, SV>();
      if (anyAllowed) {
        let at = kBase + jr * p.k_l;
        for (var i = 0u; i < SK; i++) {
          if (c + i * LK < D4) {
            let e = c + i * LK;
            var ks: mat4x4<f32>;
            for (var u = 0u; u < 4u; u++) {
              ks[u] = rowSlice(false, at[u], e);
            }
            for (var r = 0u; r < RQ; r++) {
              x[r] += qc[r * SK + i] * ks;
            }
          }
        }
        let atV = vBase + jr * p.v_l;
        for (var i = 0u; i < SV; i++) {
          if (c + i * LK < DV4) {
            for (var u = 0u; u < 4u; u++) {
              vs[i][u] = rowSlice(true, atV[u], c + i * LK);
            }
          }
        }
      }
      for (var r = 0u; r < RQ; r++) {
        x[r] = laneSum(x[r], width);
      }
      if (width < LK) {
        // the rest of the sum: lane c adds up rows c, c + LK, ... over the group's segments
        for (var r = 0u; r < RQ; r++) {
          red[r * WG + t] = x[r];
        }
        workgroupBarrier();
        for (var r = c; r < RQ; r += LK) {
          var sum = vec4<f32>(0.0);
          for (var e = 0u; e < LK; e += width) {
            sum += red[r * WG + g * LK + e];
          }
          sums[r * G + g] = sum;
        }
        workgroupBarrier();
        for (var r = 0u; r < RQ; r++) {
          x[r] = sums[r * G + g];
        }
      }

      // Scores; new running max of each row; the keys' weights (in x); then what was accumulated
      // rescaled (alphas), in a loop of its own: this one's body is large (with score_mod, four
      // modScore calls per row), a GPU compiler may keep it rolled, and acc indexed there would
      // live in memory.
      var used = false;
      var alphas: array<f32, RQ>;
      for (var r = 0u; r < RQ; r++) {
        var score = x[r];
        if (mods) {
          let row = rows[r];
          score = vec4<f32>(
            modScore(score.x, b, row.h, row.i, js.x),
            modScore(score.y, b, row.h, row.i, js.y),
            modScore(score.z, b, row.h, row.i, js.z),
            modScore(score.w, b, row.h, row.i, js.w),
          );
        }
        let ok = s[r] > vec4<f32>(MASKED);
        score = select(vec4<f32>(MASKED), s[r] + score, ok);
        let mNew = max(m[r], max(max(score.x, score.y), max(score.z, score.w)));
        let alpha = exp(m[r] - mNew);
        m[r] = mNew;
        alphas[r] = alpha;
        // A NaN or +Infinity score (from q or k) must turn its row NaN; tested by bits and
        // written as a NaN, because WGSL lets max and exp assume finite values.
        let bits = bitcast<vec4<u32>>(score);
        let poisoned = ((bits & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u)) |
          (bits == vec4<u32>(0x7f800000u));
        var pr = select(select(z, exp(score - mNew), ok), nan, poisoned);
        l[r] = l[r] * alpha + pr.x + pr.y + pr.z + pr.w;
        if (DROPOUT) {
          // dropout changes what o sums, not l
          pr *= dropFactors(vec4<u32>(dropKeys[r]), dropColumnKeysOf(js));
        }
        x[r] = pr;
        used = used || any(pr != z);
      }
      for (var r = 0u; r < RQ; r++) {
        for (var i = 0u; i < SV; i++) {
          acc[r * SV + i] *= alphas[r];
        }
      }
      // Values: lane c's slices of the keys' rows, weighed (by select: a key no row weighs adds
      // nothing, even where its v holds an Infinity or NaN).
      if (used) {
        for (var i = 0u; i < SV; i++) {
          if (c + i * LK < DV4) {
            for (var r = 0u; r < RQ; r++) {
              let pr = x[r];
              for (var u = 0u; u < 4u; u++) {
                acc[r * SV + i] += select(z, pr[u] * vs[i][u], pr[u] != 0.0);
              }
            }
          }
        }
      }
    }
  }

  if (!FOLD) {
    // one partial per row, chunk and key group
    for (var r = 0u; r < RQ; r++) {
      if (rows[r].valid) {
        let part = rows[r].index * p.P + chunk * G + g;
        for (var i = 0u; i < SV; i++) {
          if (c + i * LK < DV4) {
            partO[part * DV4 + c + i * LK] = acc[r * SV + i];
          }
        }
        if (c == 0u) {
          partML[part] = vec2<f32>(m[r], l[r]);
        }
      }
    }
    return;
  }
  // One partial per row and chunk: the key groups' states folded together, their maxima and sums
  // through `sums` (after a barrier: the key loop's last step may still read it), their
  // accumulators by halves through `red`.
  workgroupBarrier();
  for (var r = 0u; r < RQ; r++) {
    if (c == 0u) {
      sums[r * G + g] = vec4<f32>(m[r], l[r], 0.0, 0.0);
    }
  }
  workgroupBarrier();
  // every group's accumulators to the rows' common maximum
  for (var r = 0u; r < RQ; r++) {
    let alpha = exp(m[r] - foldedState(r).x);
    for (var i = 0u; i < SV; i++) {
      acc[r * SV + i] *= alpha;
    }
  }
  // Row by row, each row's accumulators in acc[0 .. SV) (rotateRows): this loop holds barriers, so
  // GPU compilers may not unroll it, and an array indexed by its counter would live in memory.
  for (var r = 0u; r < RQ; r++) {
    for (var half = G / 2u; half > 0u; half /= 2u) {
      if (g >= half && g < 2u * half) {
        for (var i = 0u; i < SV; i++) {
          if (c + i * LK < DV4) {
            red[(g - half) * DV4 + c + i * LK] = acc[i];
          }
        }
      }
      workgroupBarrier();
      if (g < half) {
        for (var i = 0u; i < SV; i++) {
          if (c + i * LK < DV4) {
            acc[i] += red[g * DV4 + c + i * LK];
          }
        }
      }
      workgroupBarrier();
    }
    let row = rowOf(b, hk, ri0, r);
    if (g == 0u && row.valid) {
      let part = row.index * p.P + chunk;
      for (var i = 0u; i < SV; i++) {
        if (c + i * LK < DV4) {
          partO[part * DV4 + c + i * LK] = acc[i];
        }
      }
      if (c == 0u) {
        partML[part] = foldedState(r);
      }
    }
    rotateRows(&acc);
  }
}

// Row r's (m, l) folded over the key groups' states in `sums` (MASKED, 0 where no group's key was
// allowed).
fn foldedState(r: u32) -> vec2<f32> {
  var mAll = MASKED;
  for (var e = 0u; e < G; e++) {
    mAll = max(mAll, sums[r * G + e].x);
  }
  var lAll = 0.0;
  for (var e = 0u; e < G; e++) {
    lAll += exp(sums[r * G + e].x - mAll) * sums[r * G + e].y;
  }
  return vec2<f32>(mAll, lAll);
}

// Moves the next row's accumulators to acc[0 .. SV) (and this row's to the end).
fn rotateRows(acc: ptr<function, array<vec4<f32>, RQ * SV>>) {
  var first: array<vec4<f32>, SV>;
  for (var i = 0u; i < SV; i++) {
    first[i] = (*acc)[i];
  }
  for (var n = SV; n < RQ * SV; n++) {
    (*acc)[n - SV] = (*acc)[n];
  }
  for (var i = 0u; i < SV; i++) {
    (*acc)[RQ * SV - SV + i] = first[i];
  }
}

