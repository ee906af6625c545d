// Fused attention forward for GPUs, FlashAttention-2's blocking with register tiles: one workgroup
// of 128 invocations per (block of 64 query rows, head, batch).
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq]
// (q, k, v and out at any batch, head and row strides: the uniforms q_b .. o_h and q_l .. o_l).
// Calls with too few blocks to fill a GPU are split over keys (p.splits workgroups per block, of
// p.split_keys keys each, a multiple of BC): each writes its partial result (tiled_partials.wgsl)
// for decode_merge.wgsl to merge by log-sum-exp; unsplit calls write the rows (tiled_rows.wgsl).
// Invocation t = 8 * ty + tx (ty 0..15, tx 0..7) owns rows 4ty .. 4ty + 3 of the block: the 4 x 4
// tile of scores of those rows and keys tx, tx + 8, tx + 16, tx + 24 of each 32-key tile, and the
// output columns 4tx .. 4tx + 3 of every 32 (acc). Per key tile:
// 1. S = Q K^T over chunks of 16 dims staged in workgroup memory (q and k, vec4s, zero-padded):
//    each pair of vec4 reads feeds four dot products (16 FMA per 8 reads, twice the one-row form).
//    The k chunk is staged transposed ([dim slice][key], padded), so that the eight invocations of
//    a row group read eight consecutive vec4s: on GPUs, no two of them in the same memory banks;
// 2. the rules (keyRange, ruleBias, modScore) turn S into scores, MASKED where not allowed; each
//    invocation takes the maximum of its four keys, and the eight invocations of a row group
//    exchange theirs: by subgroup shuffles (row_group_subgroups.wgsl) for the butterfly steps their
//    subgroup allows (all three where subgroups hold 8 or more invocations in order), through `ps`
//    for the rest (row_group_plain.wgsl: all, without the feature);
// 3. P = exp(S - m) goes to `ps` (per row group and key, a vec4 over its four rows), and
//    O = alpha O + P V over chunks of 32 value dims staged in the same memory as q and k. Each
//    invocation sums its own keys' P (l); the row group adds its eight sums once, at the end.
//    A key of P 0 adds nothing to O even where its value is NaN or Infinity (a select per
//    product), except in tiles whose every key the four rows attend (one FMA per product).
// The products go through the Tile interface (tiled_products_f32.wgsl; with native f16 storage,
// tiled_products_f16.wgsl: q, k and v staged as f16, four-term dot products and P v in f16, summed
// in f32); q is staged pre-scaled (scale q), which keeps f16 products in range.
// Staging is double-buffered through registers: each invocation reads its share of the next q / k
// or v chunk from storage (Chunks where rows and strides are multiples of 4, V = 4, else
// elements) while the workgroup multiplies the current one, and stores it after the barrier.
// Workgroup memory: 6.1 KiB of staging (3 KiB in f16) + 8 KiB of P, whatever D and Dv (up to 256):
// within WebGPU's default 16 KiB (a second f32 staging buffer would not fit). The softmax is
// online, in f32; scores, P and accumulators are f32.
// With DROPOUT, the probabilities summed into O are dropout.wgsl's (l sums them before dropout).
// Constants (src/ops/flash_attention.ts): VCHUNKS = ceil(Dv / 32) (the only size the pipeline is
// specialised by: D is a uniform), MASK, LSE, MODS, BLOCKS, KEY_RULES, DROPOUT (ruleConstants), the
// element storage helpers of src/f16.ts (elementPrelude, chunkPrelude, inputPrelude: Input, V,
// inputIndex, inputAt, storeOut): q, k, v and out are f32 or f16 (packed or native), read by
// load4.wgsl. Uniforms: scoringUniforms and rowUniforms of src/ops/flash_attention.ts, splits and
// split_keys.

const WG = 128u;
// rows per workgroup, keys per tile, dims of q / k per staged chunk (in vec4s), of v (in vec4s)
const BR = 64u;
const BC = 32u;
const QC = 4u;
const VC = 8u;
// vec4s from one dim slice of the staged k chunk to the next (one of padding: see kSlot)
const KS = BC + 1u;
// vec4s of a q / k chunk and of a v chunk each invocation loads
const QK_SHARE = (BR + BC) * QC / WG;
const V_SHARE = BC * VC / WG;

@group(0) @binding(1) var<storage, read> q: array<Input>;
@group(0) @binding(2) var<storage, read> k: array<Input>;
@group(0) @binding(3) var<storage, read> v: array<Input>;
// bool: bytes packed four per word; additive: f32 bits
@group(0) @binding(4) var<storage, read> mask: array<u32>;
// (bindings 5 and 6: the outputs of finishRows)

// q chunk [BR][QC] then k chunk [QC][KS] (kSlot); or v chunk [BC][VC]
var<workgroup> stage: array<Tile, BR * QC + QC * KS>;
// scores, then probabilities: [row group][key], a vec4 over the group's four rows
var<workgroup> ps: array<vec4<f32>, (BR / 4u) * BC>;
// butterfly steps some invocation cannot take by subgroup (3 - rowGroupSteps, maximum over all)
var<workgroup> stepsMissing: atomic<u32>;
var<workgroup> stepsAll: u32;

// This invocation's share of the chunk of dims [4 c0, 4 (c0 + QC)) of the q rows [row0, row0 + BR)
// (row0's first element at `qBase`) and keys [j0, j0 + BC) (key 0's at `kBase`): vec4s
// i = t + WG u of the chunk, row i / QC (q rows, then keys), dims 4 (c0 + i % QC) .. + 3 (four
// invocations read a row's 64 contiguous bytes); zero outside the rows, keys and D.
fn fetchQK(qBase: u32, row0: u32, kBase: u32, j0: u32, c0: u32, t: u32) -> array<vec4<f32>, QK_SHARE> {
  var x: array<vec4<f32>, QK_SHARE>;
  for (var u = 0u; u < QK_SHARE; u++) {
    let i = t + WG * u;
    let n = i / QC;
    let d = 4u * (c0 + i % QC);
    if (d < p.D) {
      if (n < BR) {
        if (row0 + n < p.Lq) {
          x[u] = load4(0u, qBase + n * p.q_l + d, p.D - d) * p.scale;
        }
      } else if (j0 + n - BR < p.Lk) {
        x[u] = load4(1u, kBase + (j0 + n - BR) * p.k_l + d, p.D - d);
      }
    }
  }
  return x;
}

// Where slice c (dims 4 (c0 + c) .. + 3) of key jj of the k chunk is staged: after the q rows,
// transposed, [QC][KS]. The padding (KS = BC + 1) keeps the four slices of a key, stored by
// neighbouring invocations, apart in the memory banks.
fn kSlot(c: u32, jj: u32) -> u32 {
  return BR * QC + c * KS + jj;
}

// Where vec4 i of a q / k chunk (fetchQK's order: row i / QC, slice i % QC) is staged: q rows as
// they come, [BR][QC]; k at kSlot.
fn stageAt(i: u32) -> u32 {
  let n = i / QC;
  if (n < BR) {
    return i;
  }
  return kSlot(i % QC, n - BR);
}

// This invocation's share of the chunk of value dims [4 c0, 4 (c0 + VC)) of keys [j0, j0 + BC):
// vec4s i = t + WG u, key i / VC, dims 4 (c0 + i % VC) .. + 3; zero outside the keys and Dv.
fn fetchV(vBase: u32, j0: u32, c0: u32, t: u32) -> array<vec4<f32>, V_SHARE> {
  var x: array<vec4<f32>, V_SHARE>;
  for (var u = 0u; u < V_SHARE; u++) {
    let i = t + WG * u;
    let j = j0 + i / VC;
    let d = 4u * (c0 + i % VC);
    if (j < p.Lk && d < p.Dv) {
      x[u] = load4(2u, vBase + j * p.v_l + d, p.Dv - d);
    }
  }
  return x;
}

// The maximum of x over the eight invocations of row group ty (tx 0..7), for every one of them:
// `steps` butterfly steps by subgroup, then through `ps`, whose slots [ty][0..8) nobody reads.
// Uniform control flow (barriers).
fn rowGroupMax(x: vec4<f32>, ty: u32, tx: u32, steps: u32) -> vec4<f32> {
  var y = x;
  for (var s = 0u; s < steps; s++) {
    y = max(y, xorLanes(y, 1u << s));
  }
  if (steps < 3u) {
    ps[ty * BC + tx] = y;
    workgroupBarrier();
    // slot u holds the maximum over lanes u .. u + 2^steps - 1
    for (var u = 0u; u < 8u; u += 1u << steps) {
      y = max(y, ps[ty * BC + u]);
    }
    workgroupBarrier();
  }
  return y;
}

// The sum of x over the eight invocations of row group ty, as rowGroupMax; every read of `ps`
// must be done before the call.
fn rowGroupSum(x: vec4<f32>, ty: u32, tx: u32, steps: u32) -> vec4<f32> {
  var y = x;
  for (var s = 0u; s < steps; s++) {
    y += xorLanes(y, 1u << s);
  }
  if (steps < 3u) {
    workgroupBarrier();
    ps[ty * BC + tx] = y;
    workgroupBarrier();
    y = vec4<f32>(0.0);
    for (var u = 0u; u < 8u; u += 1u << steps) {
      y += ps[ty * BC + u];
    }
  }
  return y;
}

// acc[r] (the value chunk's accumulators, see rotateChunks) += P V for the rows r of row group ty,
// the value chunk staged and keys j0 .. j0 + BC of the tile (P in `ps`). `guarded`: a key of P 0
// (not allowed, or dropped) adds nothing, even where its value is NaN or Infinity, at a select per
// product; callers pass a constant.
fn addValues(acc: ptr<function, array<vec4<f32>, VCHUNKS * 4u>>, ty: u32, tx: u32, j0: u32,
             dropKeys: vec4<u32>, guarded: bool) {
  for (var j = 0u; j < BC; j++) {
    var pj = ps[ty * BC + j];
    if (DROPOUT) {
      pj *= dropFactors(dropKeys, vec4<u32>(dropColumnKeys(j0 + j).x));
    }
    let vj = stage[j * VC + tx];
    for (var r = 0u; r < 4u; r++) {
      if (guarded) {
        (*acc)[r] += select(vec4<f32>(0.0), scaleTile(pj[r], vj), pj[r] != 0.0);
      } else {
        (*acc)[r] += scaleTile(pj[r], vj);
      }
    }
  }
}

// Moves the accumulators of the next value chunk to acc[0 .. 3] (and those of this one to the
// end): loops over the chunks hold barriers, so GPU compilers may not unroll them, and they keep
// an array that such a loop's counter indexes in memory (every access a load or store); so every
// chunk's accumulators pass through acc[0 .. 3], and every index of `acc` is a constant once the
// small loops are unrolled. (The scores `s` rotate the same way.)
// VCHUNKS calls restore the order: acc[4 n + r], row r, value dims 4 (VC n + tx) .. + 3.
fn rotateChunks(acc: ptr<function, array<vec4<f32>, VCHUNKS * 4u>>) {
  let first = array<vec4<f32>, 4>((*acc)[0], (*acc)[1], (*acc)[2], (*acc)[3]);
  for (var n = 4u; n < VCHUNKS * 4u; n++) {
    (*acc)[n - 4u] = (*acc)[n];
  }
  for (var r = 0u; r < 4u; r++) {
    (*acc)[VCHUNKS * 4u - 4u + r] = first[r];
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  // uniform: every invocation of a workgroup returns or none does
  if (flat >= p.workgroups) {
    return;
  }
  atomicMax(&stepsMissing, 3u - rowGroupSteps(t));
  workgroupBarrier();
  if (t == 0u) {
    stepsAll = 3u - atomicLoad(&stepsMissing);
  }
  // uniform: exchanges steps < `steps` by subgroup, the others through `ps`
  let steps = workgroupUniformLoad(&stepsAll);
  let ty = t / 8u;
  let tx = t % 8u;
  let blocks = (p.Lq + BR - 1u) / BR;
  let split = flat % p.splits;
  let block = flat / p.splits;
  let b = block / (blocks * p.Hq);
  let inUse = keysInUse(b);
  let h = (block / blocks) % p.Hq;
  let row0 = (block % blocks) * BR;
  let rowLast = min(row0 + BR, p.Lq) - 1u;
  let i0 = row0 + 4u * ty;
  let hk = h / (p.Hq / p.Hkv);
  let qBase = b * p.q_b + h * p.q_h + row0 * p.q_l;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h;

  // The workgroup's keys: split `split` of p.splits, p.split_keys keys each.
  let splitLo = split * p.split_keys;
  let splitHi = min(splitLo + p.split_keys, p.Lk);
  // Keys each of the four rows may attend (in the split); rows past Lq attend none.
  var lo = vec4<u32>(0u);
  var hi = vec4<u32>(0u);
  var shift = vec4<i32>(0);
  for (var r = 0u; r < 4u; r++) {
    if (i0 + r < p.Lq) {
      let kr = keyRange(inUse, i0 + r);
      lo[r] = max(kr.lo, splitLo);
      hi[r] = min(kr.hi, splitHi);
      shift[r] = kr.shift;
    }
  }
  // Keys some row of the block may attend in the split: the loop's bounds (uniform over the
  // workgroup).
  let keys = blockKeys(inUse, row0, rowLast);
  let kLo = max(keys.x, splitLo);
  let kHi = min(keys.y, splitHi);
  let mods = MODS;
  var dropKeys = vec4<u32>(0u);
  if (DROPOUT) {
    dropKeys = dropRowKeys(b, h, i0);
  }

  var m = vec4<f32>(MASKED);
  var l = vec4<f32>(0.0);
  let D4 = (p.D + 3u) / 4u;
  // acc[4 n + r]: row r, value dims 4 (VC n + tx) .. + 3 (VCHUNKS chunks of 32 dims), between key
  // tiles (rotateChunks)
  var acc: array<vec4<f32>, VCHUNKS * 4u>;
  for (var j0 = kLo; j0 < kHi; j0 += BC) {
    if (BLOCKS != 0u && !blockStates(b, h, row0, rowLast, j0, BC).x) {
      continue;
    }
    // 1. s[kk]: key 8 kk + tx of the tile for the four rows (components)
    var s = array<vec4<f32>, 4>();
    // chunk c0 + QC is read from storage while chunk c0 is multiplied
    var nextQK = fetchQK(qBase, row0, kBase, j0, 0u, t);
    for (var c0 = 0u; c0 < D4; c0 += QC) {
      workgroupBarrier();
      for (var u = 0u; u < QK_SHARE; u++) {
        stage[stageAt(t + WG * u)] = toTile(nextQK[u]);
      }
      workgroupBarrier();
      if (c0 + QC < D4) {
        nextQK = fetchQK(qBase, row0, kBase, j0, c0 + QC, t);
      }
      for (var c = 0u; c < QC; c++) {
        let q0 = stage[(4u * ty) * QC + c];
        let q1 = stage[(4u * ty + 1u) * QC + c];
        let q2 = stage[(4u * ty + 2u) * QC + c];
        let q3 = stage[(4u * ty + 3u) * QC + c];
        for (var kk = 0u; kk < 4u; kk++) {
          let kv = stage[kSlot(c, 8u * kk + tx)];
          s[kk] += vec4<f32>(dotTile(q0, kv), dotTile(q1, kv), dotTile(q2, kv), dotTile(q3, kv));
        }
      }
    }
    // the first value chunk is read while the scores are made
    var nextV = fetchV(vBase, j0, 0u, t);
    // 2. scores: the rules, MASKED where the row may not attend the key. Bit 4 kk + r of `allowed`:
    // row r may attend key kk, kept apart from the scores so that a NaN score is still summed (and
    // turns its row NaN) rather than taken for masked.
    // Key kk's scores are taken from s[0] and s rotated (constant indices, as in rotateChunks: the
    // rules make this loop's body large, and a GPU compiler that kept it rolled would keep s, and
    // with it the products above, in memory).
    var allowed = 0u;
    for (var kk = 0u; kk < 4u; kk++) {
      let j = j0 + 8u * kk + tx;
      var sc = s[0];
      for (var r = 0u; r < 4u; r++) {
        var bias = MASKED;
        if (j >= lo[r] && j < hi[r]) {
          bias = 0.0;
          if (perKeyRules()) {
            bias = ruleBias(b, h, i0 + r, j, shift[r]);
          }
        }
        if (mods) {
          sc[r] = modScore(sc[r], b, h, i0 + r, j);
        }
        sc[r] = select(MASKED, sc[r] + bias, bias > MASKED);
        allowed |= select(0u, 1u << (4u * kk + r), bias > MASKED);
      }
      s = array<vec4<f32>, 4>(s[1], s[2], s[3], sc);
    }
    let tileMax = rowGroupMax(max(max(s[0], s[1]), max(s[2], s[3])), ty, tx, steps);
    let mNew = max(m, tileMax);
    let alpha = exp(m - mNew);
    m = mNew;
    l *= alpha;
    for (var kk = 0u; kk < 4u; kk++) {
      let ok = (vec4<u32>(allowed) >> (4u * kk + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u);
      let pk = select(vec4<f32>(0.0), exp(s[0] - mNew), ok == vec4<u32>(1u));
      l += pk;
      ps[ty * BC + 8u * kk + tx] = pk;
      s = array<vec4<f32>, 4>(s[1], s[2], s[3], s[0]);
    }
    // 3. O = alpha O + P V, 32 value dims at a time (each chunk's accumulators in acc[0 .. 3]:
    // rotateChunks); unguarded where the four rows attend every key of the
    // tile (no per-key rule, each row's key range covers it) and none is dropped
    let plain = !DROPOUT && !perKeyRules() && all(lo <= vec4<u32>(j0)) && all(hi >= vec4<u32>(j0 + BC));
    for (var n = 0u; n < VCHUNKS; n++) {
      workgroupBarrier();
      for (var u = 0u; u < V_SHARE; u++) {
        stage[t + WG * u] = toTile(nextV[u]);
      }
      workgroupBarrier();
      if (n + 1u < VCHUNKS) {
        nextV = fetchV(vBase, j0, (n + 1u) * VC, t);
      }
      for (var r = 0u; r < 4u; r++) {
        acc[r] *= alpha[r];
      }
      if (plain) {
        addValues(&acc, ty, tx, j0, dropKeys, false);
      } else {
        addValues(&acc, ty, tx, j0, dropKeys, true);
      }
      rotateChunks(&acc);
    }
  }

  l = rowGroupSum(l, ty, tx, steps);
  finishRows(b, h, i0, tx, m, l, &acc, split);
}
