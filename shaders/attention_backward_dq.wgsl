// Attention backward, dQ, for GPUs. One workgroup owns WG consecutive query rows of one head, one
// row per invocation, and walks the keys of its kv head (up to the causal end of its last row) in
// tiles of BC keys staged in workgroup memory, recomputing P = exp(keyScore(scale * q·k) - lse):
//   dP = dO Vᵀ,  dS = P (dP - delta) keyScoreGrad,  dQ = scale dS K, accumulated in registers.
// Any D and Dv: rows are read element by element into vec4s padded with zeros.
// With DROPOUT, Z = dropout.wgsl's factors: dS = P (dP Z - delta) keyScoreGrad. With DATA_GRAD,
// P (dP - delta) of each attended key also goes to modDataGrad (modData's gradients).
// Constants (src/ops/attention_backward.ts): WG, BC, D4 = ceil(D / 4), DV4 = ceil(Dv / 4), MASK,
// DROPOUT, DATA_GRAD; row strides: the uniforms q_l, k_l, v_l, o_l;
// Stored, wordOf and unpackAt from src/f16.ts; storeDq (generated).

alias Input = Stored;

var<workgroup> kTile: array<vec4<f32>, BC * D4>;
var<workgroup> vTile: array<vec4<f32>, BC * DV4>;


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let blocks = (p.Lq + WG - 1u) / WG;
  let b = flat / (blocks * p.Hq);
  let inUse = keysInUse(b);
  let h = (flat / blocks) % p.Hq;
  let iFirst = (flat % blocks) * WG;
  let i = iFirst + t;
  let live = i < p.Lq;
  // the row in the stats [B, Hq, Lq]; its first element in q and dq, in dO
  let ic = min(i, p.Lq - 1u);
  let row = (b * p.Hq + h) * p.Lq + ic;
  let qRow = b * p.q_b + h * p.q_h + ic * p.q_l;
  let oRow = b * p.o_b + h * p.o_h + ic * p.o_l;
  let hk = h / (p.Hq / p.Hkv);
  // the kv head's key 0 in k and v
  let kRow0 = b * p.k_b + hk * p.k_h;
  let vRow0 = b * p.v_b + hk * p.v_h;

  var qr: array<vec4<f32>, D4>;
  var dOr: array<vec4<f32>, DV4>;
  for (var c = 0u; c < D4; c++) {
    qr[c] = qAt(qRow, c) * p.scale;
  }
  for (var c = 0u; c < DV4; c++) {
    dOr[c] = dOAt(oRow, c);
  }
  let st = stat(row);
  let range = keyRange(inUse, i);
  var dq: array<vec4<f32>, D4>;
  var dropKey = 0u;
  if (DROPOUT) {
    dropKey = dropRowKeys(b, h, i).x;
  }

  // uniform: the causal end of the workgroup's last row
  let kEnd = causalEnd(min(iFirst + WG, p.Lq) - 1u);
  for (var j0 = 0u; j0 < kEnd; j0 += BC) {
    let keys = min(kEnd - j0, BC);
    workgroupBarrier();
    for (var x = t; x < BC * D4; x += WG) {
      let jj = x / D4;
      kTile[x] = select(vec4<f32>(0.0), kAt(kRow0 + (j0 + min(jj, keys - 1u)) * p.k_l, x % D4), jj < keys);
    }
    for (var x = t; x < BC * DV4; x += WG) {
      let jj = x / DV4;
      vTile[x] = select(vec4<f32>(0.0), vAt(vRow0 + (j0 + min(jj, keys - 1u)) * p.v_l, x % DV4), jj < keys);
    }
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < keys; jj++) {
        var s = 0.0;
        for (var c = 0u; c < D4; c++) {
          s += dot(qr[c], kTile[jj * D4 + c]);
        }
        let score = keyScore(s, b, h, i, j0 + jj, range);
        if (score > MASKED) {
          let pr = probability(score, st.x);
          var dp = 0.0;
          for (var c = 0u; c < DV4; c++) {
            dp += dot(dOr[c], vTile[jj * DV4 + c]);
          }
          if (DROPOUT) {
            dp *= dropFactor(dropKey, j0 + jj);
          }
          let dy = pr * (dp - st.y);
          if (DATA_GRAD) {
            modDataGrad(s, b, h, i, j0 + jj, dy);
          }
          let ds = dy * keyScoreGrad(s, b, h, i, j0 + jj);
          for (var c = 0u; c < D4; c++) {
            dq[c] += ds * kTile[jj * D4 + c];
          }
        }
      }
    }
  }

  if (DATA_GRAD) {
    flushModGrads();
  }
  if (!live) {
    return;
  }
  // (a loop of constant trip count: an index of dq from a loop bounded by a uniform would make GPU
  // compilers keep the array in memory for the whole kernel)
  for (var c = 0u; c < D4; c++) {
    for (var e = 0u; e < 4u; e++) {
      if (4u * c + e < p.D) {
        storeDq(qRow + 4u * c + e, dq[c][e] * p.scale);
      }
    }
  }
}
