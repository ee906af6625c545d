// Fused attention forward for adapters that run compute on the CPU (SwiftShader): no workgroup
// memory and no barriers, which cost there what they save on a GPU.
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq].
// One invocation owns four consecutive query rows of one head and walks the keys four at a time,
// reading K and V straight from storage. Scores, probabilities and the output accumulator are
// 4 x 4 blocks held in mat4x4s whose columns are vec4s over the four rows (column = key for the
// scores, column = output dim for the accumulator), so each step is a 4 x 4 matrix product; the
// softmax is online, in f32. Same contract as flash_attention.wgsl, without the weights output.
// Prepended by the op (see src/ops/attention.ts): WG (invocations per workgroup), D4 = D / 4,
// DV4 = Dv / 4 (D and Dv must be multiples of 4), MASK (0 none, 1 bool, 2 additive), LSE, and
// the storage helpers of src/f16.ts: Chunk and unpackChunk (four elements per load), storeOut.

struct Params {
  B: u32, Hq: u32, Hkv: u32, Lq: u32,
  Lk: u32, D: u32, Dv: u32, causal: u32,
  // element strides of the mask broadcast to [B, Hq, Lq, Lk] (0 on broadcast dims)
  mask_b: u32, mask_h: u32, mask_i: u32, mask_j: u32,
  scale: f32,
  // the (row block, head, batch) grid is folded into x, y and z (see main)
  grid_x: u32, grid_y: u32,
  // rows from one kv head to the next in k and v: Lk, or a KV cache's capacity
  kStride: u32, vStride: u32,
  // causal: key j is allowed for row i iff j <= i + shift
  shift: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<Chunk>;
@group(0) @binding(2) var<storage, read> k: array<Chunk>;
@group(0) @binding(3) var<storage, read> v: array<Chunk>;
// bool: bytes packed four per word; additive: f32 bits
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;

// Finite stand-in for -Infinity: WGSL does not promise IEEE infinities in arithmetic.
const MASKED = -3.0e38;
const NEG_INF_BITS = 0xff800000u;

// Bias of key j for rows i0 .. i0 + rows - 1 (components): 0 or the additive mask value where
// the row may attend the key, MASKED where it may not (and for missing rows).
fn keyBias(b: u32, h: u32, i0: u32, rows: u32, j: u32) -> vec4<f32> {
  var bias = vec4<f32>(MASKED);
  if (j < p.Lk) {
    for (var r = 0u; r < rows; r++) {
      let i = i0 + r;
      if (p.causal == 0u || i32(j) <= i32(i) + p.shift) {
        bias[r] = maskBias(b * p.mask_b + h * p.mask_h + i * p.mask_i + j * p.mask_j);
      }
    }
  }
  return bias;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  // Folded so that no dispatch dimension exceeds maxComputeWorkgroupsPerDimension.
  let blocks = (p.Lq + 4u * WG - 1u) / (4u * WG);
  let flat = wid.x + (wid.y + wid.z * p.grid_y) * p.grid_x;
  if (flat >= blocks * p.Hq * p.B) {
    return;
  }
  let b = flat / (blocks * p.Hq);
  let h = (flat / blocks) % p.Hq;
  let i0 = (flat % blocks) * 4u * WG + 4u * t;
  if (i0 >= p.Lq) {
    return;
  }
  let rows = min(p.Lq - i0, 4u);
  let row0 = (b * p.Hq + h) * p.Lq + i0;
  let hk = h / (p.Hq / p.Hkv);
  // first chunk of the kv head's key 0
  let kBase = (b * p.Hkv + hk) * p.kStride * D4;
  let vBase = (b * p.Hkv + hk) * p.vStride * DV4;

  // qm[c]: column e holds dim 4c + e of the rows, scaled; missing rows are zero.
  var qm: array<mat4x4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    var byRow = mat4x4<f32>();
    for (var r = 0u; r < rows; r++) {
      byRow[r] = unpackChunk(q[(row0 + r) * D4 + c]) * p.scale;
    }
    qm[c] = transpose(byRow);
  }

  // Causal: keys past the last row's limit are masked for all four rows, so the loop stops there.
  var kEnd = p.Lk;
  if (p.causal != 0u) {
    kEnd = u32(clamp(i32(i0 + rows - 1u) + p.shift + 1, 0, i32(p.Lk)));
  }

  var m = vec4<f32>(MASKED);
  var l = vec4<f32>(0.0);
  // acc[c]: column e holds output dim 4c + e of the rows, unnormalised.
  var acc: array<mat4x4<f32>, DV4>;
  for (var j0 = 0u; j0 < kEnd; j0 += 4u) {
    // A full tile: all four rows may attend all four keys, with no mask values to add.
    let full = MASK == 0u && rows == 4u && j0 + 4u <= p.Lk &&
      (p.causal == 0u || i32(j0) + 3 <= i32(i0) + p.shift);
    // bias[c]: of key j0 + c for the rows
    var bias = mat4x4<f32>();
    if (!full) {
      for (var c = 0u; c < 4u; c++) {
        bias[c] = keyBias(b, h, i0, rows, j0 + c);
      }
      if (all(max(max(bias[0], bias[1]), max(bias[2], bias[3])) == vec4<f32>(MASKED))) {
        continue;
      }
    }

    // s[c]: scores of key j0 + c for the rows. Keys past Lk read whatever the buffer holds there
    // (WGSL keeps loads in bounds); their scores are replaced below.
    var s = bias;
    let kt = kBase + j0 * D4;
    for (var c = 0u; c < D4; c++) {
      let qc = qm[c];
      s[0] += qc * unpackChunk(k[kt + c]);
      s[1] += qc * unpackChunk(k[kt + D4 + c]);
      s[2] += qc * unpackChunk(k[kt + 2u * D4 + c]);
      s[3] += qc * unpackChunk(k[kt + 3u * D4 + c]);
    }
    if (!full) {
      // Masked pairs are dropped by select, not arithmetic, so a NaN or Infinity in a key or
      // value that a row may not attend never reaches that row.
      for (var c = 0u; c < 4u; c++) {
        s[c] = select(vec4<f32>(MASKED), s[c], bias[c] > vec4<f32>(MASKED));
      }
    }
    let mNew = max(m, max(max(s[0], s[1]), max(s[2], s[3])));
    let alpha = exp(m - mNew);
    m = mNew;
    var pm = mat4x4<f32>(exp(s[0] - mNew), exp(s[1] - mNew), exp(s[2] - mNew), exp(s[3] - mNew));
    if (!full) {
      for (var c = 0u; c < 4u; c++) {
        pm[c] = select(vec4<f32>(0.0), pm[c], bias[c] > vec4<f32>(MASKED));
      }
    }
    l = l * alpha + pm[0] + pm[1] + pm[2] + pm[3];

    let vt = vBase + j0 * DV4;
    for (var c = 0u; c < DV4; c++) {
      // keys of the tile by row: byKey[j] holds dims 4c .. 4c + 3 of key j0 + j
      let byKey = mat4x4<f32>(
        unpackChunk(v[vt + c]),
        unpackChunk(v[vt + DV4 + c]),
        unpackChunk(v[vt + 2u * DV4 + c]),
        unpackChunk(v[vt + 3u * DV4 + c]),
      );
      var add: mat4x4<f32>;
      if (full) {
        add = pm * transpose(byKey);
      } else {
        add = mat4x4<f32>();
        for (var j = 0u; j < 4u; j++) {
          let ok = bias[j] > vec4<f32>(MASKED);
          for (var e = 0u; e < 4u; e++) {
            add[e] += select(vec4<f32>(0.0), pm[j] * byKey[j][e], ok);
          }
        }
      }
      let a = acc[c];
      acc[c] = mat4x4<f32>(a[0] * alpha, a[1] * alpha, a[2] * alpha, a[3] * alpha) + add;
    }
  }

  // A row that may attend no key: zeros and lse = -Infinity. (l == 0 rather than l > 0, so that
  // a NaN sum stays NaN.)
  let inv = select(1.0 / l, vec4<f32>(0.0), l == vec4<f32>(0.0));
  for (var c = 0u; c < DV4; c++) {
    let byRow = transpose(acc[c]);
    for (var r = 0u; r < rows; r++) {
      let o = byRow[r] * inv[r];
      let e = ((row0 + r) * DV4 + c) * 4u;
      storeOut(e, o.x);
      storeOut(e + 1u, o.y);
      storeOut(e + 2u, o.z);
      storeOut(e + 3u, o.w);
    }
  }
  if (LSE) {
    for (var r = 0u; r < rows; r++) {
      lse[row0 + r] = select(bitcast<u32>(m[r] + log(l[r])), NEG_INF_BITS, l[r] == 0.0);
    }
  }
}
