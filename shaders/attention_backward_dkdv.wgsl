// Attention backward, dK and dV, for GPUs. One workgroup owns WG consecutive keys of one kv head,
// one key per invocation, and walks every query head of its GQA group and every query row in
// tiles of BR rows staged in workgroup memory (q, dO and the row stats), recomputing
// P = exp(keyScore(scale * q·k) - lse); dK and dV of the invocation's key accumulate in registers
// (no other invocation writes them, so no atomics):
//   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P (dP - delta) keyScoreGrad,  dK += scale dSᵀ Q.
// Any D and Dv: rows are read element by element into vec4s padded with zeros.
// With DROPOUT, Z = dropout.wgsl's factors: dV += (P Z)ᵀ dO and dS = P (dP Z - delta) keyScoreGrad.
// Constants (src/ops/attention_backward.ts): WG, BR, D4 = ceil(D / 4), DV4 = ceil(Dv / 4), MASK,
// DROPOUT; row strides: the uniforms q_l, k_l, v_l, o_l;
// Stored, wordOf and unpackAt from src/f16.ts; storeDk, storeDv (generated).

alias Input = Stored;

var<workgroup> qTile: array<vec4<f32>, BR * D4>;
var<workgroup> dOTile: array<vec4<f32>, BR * DV4>;
var<workgroup> statTile: array<vec2<f32>, BR>;


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let blocks = (p.Lk + WG - 1u) / WG;
  let b = flat / (blocks * p.Hkv);
  let inUse = keysInUse(b);
  let hk = (flat / blocks) % p.Hkv;
  let jFirst = (flat % blocks) * WG;
  let j = jFirst + t;
  let live = j < p.Lk;
  let jc = min(j, p.Lk - 1u);

  var kr: array<vec4<f32>, D4>;
  var vr: array<vec4<f32>, DV4>;
  for (var c = 0u; c < D4; c++) {
    kr[c] = kAt(b * p.k_b + hk * p.k_h + jc * p.k_l, c);
  }
  for (var c = 0u; c < DV4; c++) {
    vr[c] = vAt(b * p.v_b + hk * p.v_h + jc * p.v_l, c);
  }
  var dk: array<vec4<f32>, D4>;
  var dv: array<vec4<f32>, DV4>;

  let group = p.Hq / p.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    // the head's row 0 in the stats [B, Hq, Lq], in q and in dO
    let head = (b * p.Hq + h) * p.Lq;
    let qHead = b * p.q_b + h * p.q_h;
    let oHead = b * p.o_b + h * p.o_h;
    for (var i0 = 0u; i0 < p.Lq; i0 += BR) {
      let rows = min(p.Lq - i0, BR);
      // Causal: when the tile's last row may not attend the workgroup's first key, no row attends
      // any of its keys (uniform: every invocation skips together).
      if (!causalAllows(i0 + rows - 1u, jFirst)) {
        continue;
      }
      workgroupBarrier();
      for (var x = t; x < BR * D4; x += WG) {
        let r = x / D4;
        qTile[x] = select(vec4<f32>(0.0), qAt(qHead + (i0 + min(r, rows - 1u)) * p.q_l, x % D4), r < rows);
      }
      for (var x = t; x < BR * DV4; x += WG) {
        let r = x / DV4;
        dOTile[x] = select(vec4<f32>(0.0), dOAt(oHead + (i0 + min(r, rows - 1u)) * p.o_l, x % DV4), r < rows);
      }
      for (var x = t; x < rows; x += WG) {
        statTile[x] = stat(head + i0 + x);
      }
      workgroupBarrier();
      if (live) {
        for (var r = 0u; r < rows; r++) {
          var s = 0.0;
          for (var c = 0u; c < D4; c++) {
            s += dot(qTile[r * D4 + c], kr[c]);
          }
          let raw = s * p.scale;
          let score = keyScore(raw, b, h, i0 + r, j, keyRange(inUse, i0 + r));
          if (score > MASKED) {
            let st = statTile[r];
            let pr = probability(score, st.x);
            // P after dropout, and the factor
            var pv = pr;
            var z = 1.0;
            if (DROPOUT) {
              z = dropFactor(dropRowKeys(b, h, i0 + r).x, j);
              pv = pr * z;
            }
            var dp = 0.0;
            for (var c = 0u; c < DV4; c++) {
              let o = dOTile[r * DV4 + c];
              dv[c] += pv * o;
              dp += dot(o, vr[c]);
            }
            if (DROPOUT) {
              dp *= z;
            }
            let ds = pr * (dp - st.y) * keyScoreGrad(raw, b, h, i0 + r, j);
            for (var c = 0u; c < D4; c++) {
              dk[c] += ds * qTile[r * D4 + c];
            }
          }
        }
      }
    }
  }

  if (!live) {
    return;
  }
  let dkAt = b * p.dk_b + hk * p.dk_h + j * p.dk_l;
  let dvAt = b * p.dv_b + hk * p.dv_h + j * p.dv_l;
  // (loops of constant trip counts: an index of dk or dv from a loop bounded by a uniform would
  // make GPU compilers keep the arrays in memory for the whole kernel)
  for (var c = 0u; c < D4; c++) {
    for (var e = 0u; e < 4u; e++) {
      if (4u * c + e < p.D) {
        storeDk(dkAt + 4u * c + e, dk[c][e] * p.scale);
      }
    }
  }
  for (var c = 0u; c < DV4; c++) {
    for (var e = 0u; e < 4u; e++) {
      if (4u * c + e < p.Dv) {
        storeDv(dvAt + 4u * c + e, dv[c][e]);
      }
    }
  }
}
