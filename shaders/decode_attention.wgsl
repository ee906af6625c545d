// Split-K attention for few queries against many keys (flash-decoding), in two passes that share
// the parameters below; src/ops/decode_attention.ts compiles each pass from this file's common
// part plus that pass's section (split at the `// ====` lines). Pass 1 comes in two forms,
// for the context's two attention kernels (see ContextOptions.attentionKernel): `split`, with
// workgroup memory, for GPUs, and `split_registers`, without, for adapters that run on the CPU.
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq].
// k and v rows of one kv head are contiguous; kv heads are kStride (vStride) rows apart, so a
// KV cache of capacity rows is read in place.
// Pass 1 (split): one workgroup per (key chunk, block of RQ rows, b * Hkv + kv head). The rows of a
// block are (query head, query) pairs of the same kv head, so GQA heads share each K/V load.
// For each tile of WG keys, invocation t scores key t for every row; a tree reduction gives the
// tile max; then invocation (c, g) accumulates output columns 4c..4c+3 over the keys g, g + G, ...
// of the tile. Each key group g writes its own partial (m, l, o): l and o sum exp(s - m) and
// exp(s - m) v over that group's keys of the chunk, m is the running max of the chunk.
// Pass 2 (merge): one workgroup per query row combines the P partials of the row by their
// log-sum-exp into out and lse.
// Prepended by the op: WG, RQ (rows per block), D4 = ceil(D / 4), DV4 = ceil(Dv / 4),
// G = WG / DV4 (key groups), MASK (0 none, 1 bool, 2 additive), LSE, and the element storage
// helpers of src/f16.ts. Scores, softmax state and accumulators are f32 whatever the storage.

struct Params {
  B: u32, Hq: u32, Hkv: u32, Lq: u32,
  Lk: u32, D: u32, Dv: u32, causal: u32,
  // element strides of the mask broadcast to [B, Hq, Lq, Lk] (0 on broadcast dims)
  mask_b: u32, mask_h: u32, mask_i: u32, mask_j: u32,
  scale: f32, kStride: u32, vStride: u32, group: u32,
  // tiles of keys per chunk (WG keys in `split`, 4 in `split_registers`); partials per query row
  tilesPerChunk: u32, P: u32,
  // causal: key j is allowed for row i iff j <= i + shift (Lk - Lq, or a split call's own shift)
  shift: i32,
  // split_registers: its (chunk group, row) grid folded into x, y and z
  grid_x: u32, grid_y: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Finite stand-in for -Infinity: WGSL does not promise IEEE infinities in arithmetic.
const MASKED = -3.0e38;
const NEG_INF_BITS = 0xff800000u;

// ==== part of both forms of pass 1 ====

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

// 0, the additive mask value, or MASKED for key j (< jStop) of a row. Causal is bottom-right (shift).
fn keyBias(b: u32, row: Row, j: u32, jStop: u32) -> f32 {
  if (!row.valid || j >= jStop || (p.causal != 0u && i32(j) > i32(row.i) + p.shift)) {
    return MASKED;
  }
  return maskBias(b * p.mask_b + row.h * p.mask_h + row.i * p.mask_i + j * p.mask_j);
}

// ==== pass 1: split ====

@group(0) @binding(1) var<storage, read> q: array<Stored>;
@group(0) @binding(2) var<storage, read> k: array<Stored>;
@group(0) @binding(3) var<storage, read> v: array<Stored>;

var<workgroup> qs: array<vec4<f32>, RQ * D4>;
// [RQ, WG]: scores of the tile, then their exp(s - m)
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
  let chunk = wid.x;
  let ri0 = wid.y * RQ;
  let b = wid.z / p.Hkv;
  let hk = wid.z % p.Hkv;
  let kBase = (b * p.Hkv + hk) * p.kStride * p.D;
  let vBase = (b * p.Hkv + hk) * p.vStride * p.Dv;

  // Scaled q rows of the block, zero-padded to D4 * 4 (and for rows past the block's end).
  for (var e = t; e < RQ * D4 * 4u; e += WG) {
    let r = e / (D4 * 4u);
    let d = e % (D4 * 4u);
    let row = rowOf(b, hk, ri0, r);
    var x = 0.0;
    if (row.valid && d < p.D) {
      let qe = row.index * p.D + d;
      x = unpackAt(q[wordOf(qe)], qe) * p.scale;
    }
    qs[r * D4 + d / 4u][d % 4u] = x;
  }
  workgroupBarrier();

  let c = t % DV4;
  let g = t / DV4;
  var rows: array<Row, RQ>;
  var m: array<f32, RQ>;
  var l: array<f32, RQ>;
  var acc: array<vec4<f32>, RQ>;
  for (var r = 0u; r < RQ; r++) {
    rows[r] = rowOf(b, hk, ri0, r);
    m[r] = MASKED;
  }

  var nanBits = 0x7fc00000u; // a var, so that the NaN is made at run time, not in a constant
  let nan = bitcast<f32>(nanBits);
  let jStart = chunk * p.tilesPerChunk * WG;
  let jStop = min(jStart + p.tilesPerChunk * WG, p.Lk);
  for (var j0 = jStart; j0 < jStop; j0 += WG) {
    // Scores of key j0 + t for every row. (Explicit zero initialisers: Dawn on SwiftShader was
    // seen not to re-zero an uninitialised `var` declared inside a loop.)
    let j = j0 + t;
    var s = array<f32, RQ>();
    var anyAllowed = false;
    for (var r = 0u; r < RQ; r++) {
      s[r] = keyBias(b, rows[r], j, jStop);
      anyAllowed = anyAllowed || s[r] > MASKED;
    }
    if (anyAllowed) {
      var dot = array<f32, RQ>();
      for (var d = 0u; d < p.D; d++) {
        let ke = kBase + j * p.D + d;
        let kd = unpackAt(k[wordOf(ke)], ke);
        for (var r = 0u; r < RQ; r++) {
          dot[r] += qs[r * D4 + d / 4u][d % 4u] * kd;
        }
      }
      for (var r = 0u; r < RQ; r++) {
        s[r] = select(MASKED, s[r] + dot[r], s[r] > MASKED);
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
      sc[r * WG + t] = select(select(0.0, exp(s[r] - mNew), s[r] > MASKED), nan, poisoned);
    }
    workgroupBarrier();

    if (g < G) {
      for (var jj = g; jj < WG && j0 + jj < jStop; jj += G) {
        let vj = loadV4(vBase + (j0 + jj) * p.Dv, c);
        for (var r = 0u; r < RQ; r++) {
          let pj = sc[r * WG + jj];
          l[r] += pj;
          acc[r] += pj * vj;
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

// ==== pass 1: split_registers ====

// One invocation per (key chunk, query row), no workgroup memory: it walks its chunk four keys at
// a time, their scores a vec4 and their rows 4 x 4 blocks, and writes one partial (m, l, o) of the
// row. Needs D and Dv multiples of 4 (D4 and DV4 exact): q, k and v are read a Chunk at a time.
@group(0) @binding(1) var<storage, read> q: array<Chunk>;
@group(0) @binding(2) var<storage, read> k: array<Chunk>;
@group(0) @binding(3) var<storage, read> v: array<Chunk>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = wid.x + (wid.y + wid.z * p.grid_y) * p.grid_x;
  let groups = (p.P + WG - 1u) / WG;
  let row = flat / groups;
  let chunk = (flat % groups) * WG + t;
  if (row >= p.B * p.Hq * p.Lq || chunk >= p.P) {
    return;
  }
  let i = row % p.Lq;
  let h = (row / p.Lq) % p.Hq;
  let b = row / (p.Lq * p.Hq);
  let hk = h / p.group;
  // first chunk of the kv head's key 0
  let kBase = (b * p.Hkv + hk) * p.kStride * D4;
  let vBase = (b * p.Hkv + hk) * p.vStride * DV4;

  var qr: array<vec4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    qr[c] = unpackChunk(q[row * D4 + c]) * p.scale;
  }
  let jStart = chunk * p.tilesPerChunk * 4u;
  var jStop = min(jStart + p.tilesPerChunk * 4u, p.Lk);
  if (p.causal != 0u) {
    jStop = min(jStop, u32(clamp(i32(i) + p.shift + 1, 0, i32(p.Lk))));
  }

  var m = MASKED;
  var l = 0.0;
  var acc: array<vec4<f32>, DV4>;
  for (var j0 = jStart; j0 < jStop; j0 += 4u) {
    // A full tile: four keys that the row may attend, with no mask values to add.
    let full = MASK == 0u && j0 + 4u <= jStop;
    // bias[e]: of key j0 + e
    var bias = vec4<f32>();
    if (!full) {
      // written out: a vector indexed by a loop variable lives in memory on SwiftShader
      let r = Row(true, h, i, row);
      bias = vec4<f32>(
        keyBias(b, r, j0, jStop),
        keyBias(b, r, j0 + 1u, jStop),
        keyBias(b, r, j0 + 2u, jStop),
        keyBias(b, r, j0 + 3u, jStop),
      );
      if (all(bias == vec4<f32>(MASKED))) {
        continue;
      }
    }
    let ok = bias > vec4<f32>(MASKED);

    // Keys past jStop read whatever the buffer holds there; their scores are replaced below.
    var s = bias;
    let kt = kBase + j0 * D4;
    for (var c = 0u; c < D4; c++) {
      let qc = qr[c];
      s += vec4<f32>(
        dot(unpackChunk(k[kt + c]), qc),
        dot(unpackChunk(k[kt + D4 + c]), qc),
        dot(unpackChunk(k[kt + 2u * D4 + c]), qc),
        dot(unpackChunk(k[kt + 3u * D4 + c]), qc),
      );
    }
    if (!full) {
      // by select, so that a NaN or Infinity in a key the row may not attend stays out
      s = select(vec4<f32>(MASKED), s, ok);
    }
    let mNew = max(m, max(max(s.x, s.y), max(s.z, s.w)));
    let alpha = exp(m - mNew);
    m = mNew;
    var pr = exp(s - mNew);
    if (!full) {
      pr = select(vec4<f32>(0.0), pr, ok);
    }
    l = l * alpha + pr.x + pr.y + pr.z + pr.w;

    // The same product on both paths, written out for each: a branch inside the loop costs
    // SwiftShader much of its speed.
    let vt = vBase + j0 * DV4;
    if (full) {
      for (var c = 0u; c < DV4; c++) {
        acc[c] = acc[c] * alpha + keyChunks(vt, c) * pr;
      }
    } else {
      for (var c = 0u; c < DV4; c++) {
        // column e of byKey: dims 4c .. 4c + 3 of key j0 + e
        let byKey = keyChunks(vt, c);
        let z = vec4<f32>(0.0);
        acc[c] = acc[c] * alpha + select(z, pr.x * byKey[0], ok.x) + select(z, pr.y * byKey[1], ok.y) +
          select(z, pr.z * byKey[2], ok.z) + select(z, pr.w * byKey[3], ok.w);
      }
    }
  }

  let part = row * p.P + chunk;
  for (var c = 0u; c < DV4; c++) {
    partO[part * DV4 + c] = acc[c];
  }
  partML[part] = vec2<f32>(m, l);
}

// ==== pass 2: merge ====

// [B * Hq * Lq, P, DV4] and [B * Hq * Lq, P], written by the split pass
@group(0) @binding(1) var<storage, read> partO: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> partML: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(4) var<storage, read_write> lse: array<u32>;

// One workgroup per row (x: query, y: head, z: batch); invocation c owns output columns 4c..4c+3.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) c: u32) {
  let row = (wid.z * p.Hq + wid.y) * p.Lq + wid.x;
  var mMax = MASKED;
  for (var i = 0u; i < p.P; i++) {
    mMax = max(mMax, partML[row * p.P + i].x);
  }
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var i = 0u; i < p.P; i++) {
    let ml = partML[row * p.P + i];
    let w = exp(ml.x - mMax);
    l += w * ml.y;
    if (c < DV4) {
      o += w * partO[(row * p.P + i) * DV4 + c];
    }
  }
  // A row that may attend no key: zeros and lse = -Infinity (a NaN sum stays NaN).
  let inv = select(1.0 / l, 0.0, l == 0.0);
  if (c < DV4) {
    for (var e = 0u; e < 4u; e++) {
      let d = c * 4u + e;
      if (d < p.Dv) {
        storeOut(row * p.Dv + d, o[e] * inv);
      }
    }
  }
  if (LSE && c == 0u) {
    lse[row] = select(bitcast<u32>(mMax + log(l)), NEG_INF_BITS, l == 0.0);
  }
}
