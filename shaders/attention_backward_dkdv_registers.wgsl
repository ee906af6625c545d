// Attention backward, dK and dV, for adapters that run compute on the CPU (SwiftShader): no
// workgroup memory and no barriers. One invocation owns four consecutive keys of one kv head and
// walks every query head of its GQA group and every query row, four rows at a time, recomputing
// P = exp(keyScore(scale * q·k) - lse) from the row stats; dK and dV of its keys accumulate in
// registers (no other invocation writes them, so no atomics):
//   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P (dP - delta) keyScoreGrad,  dK += scale dSᵀ Q.
// Blocks are 4 x 4 mat4x4s: kT[c], vT[c], dkT[c], dvT[c] hold dims 4c .. 4c + 3 (columns) of the
// four keys (components); per row block, Qc and dOc hold chunk c of the four rows (columns), and
// S, P, dP, dS have one column per row, components over the keys.
// With DROPOUT, Z = dropout.wgsl's factors: dV += (P Z)ᵀ dO and dS = P (dP Z - delta) keyScoreGrad.
// Constants (src/ops/attention_backward.ts): WG, D4 = D / 4, DV4 = Dv / 4 (D and Dv multiples of
// 4), MASK, DROPOUT; Chunk and unpackChunk from src/f16.ts; storeDk, storeDv (generated).

alias Input = Chunk;

// Chunk c of rows first .. first + 3 of q (n = D4) or dO (n = DV4) from chunk `at`: column r holds
// chunk c of row r, zero for rows r >= rows.
fn qChunks(at: u32, c: u32, rows: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(q[at + c]), rows > 0u),
    select(z, unpackChunk(q[at + D4 + c]), rows > 1u),
    select(z, unpackChunk(q[at + 2u * D4 + c]), rows > 2u),
    select(z, unpackChunk(q[at + 3u * D4 + c]), rows > 3u),
  );
}
fn dOChunks(at: u32, c: u32, rows: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(dO[at + c]), rows > 0u),
    select(z, unpackChunk(dO[at + DV4 + c]), rows > 1u),
    select(z, unpackChunk(dO[at + 2u * DV4 + c]), rows > 2u),
    select(z, unpackChunk(dO[at + 3u * DV4 + c]), rows > 3u),
  );
}

// P of keys j0 .. j0 + 3 (components) for row i with raw scores s and the row's lse.
fn keyProbabilities(s: vec4<f32>, lse: f32, b: u32, h: u32, i: u32, j0: u32) -> vec4<f32> {
  return vec4<f32>(
    probability(keyScore(s.x, b, h, i, j0), lse),
    probability(keyScore(s.y, b, h, i, j0 + 1u), lse),
    probability(keyScore(s.z, b, h, i, j0 + 2u), lse),
    probability(keyScore(s.w, b, h, i, j0 + 3u), lse),
  );
}

// keyScoreGrad of keys j0 .. j0 + 3 (components) for row i.
fn keyGrads(s: vec4<f32>, b: u32, h: u32, i: u32, j0: u32) -> vec4<f32> {
  return vec4<f32>(
    keyScoreGrad(s.x, b, h, i, j0),
    keyScoreGrad(s.y, b, h, i, j0 + 1u),
    keyScoreGrad(s.z, b, h, i, j0 + 2u),
    keyScoreGrad(s.w, b, h, i, j0 + 3u),
  );
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let blocks = (p.Lk + 4u * WG - 1u) / (4u * WG);
  let b = flat / (blocks * p.Hkv);
  let hk = (flat / blocks) % p.Hkv;
  let j0 = (flat % blocks) * 4u * WG + 4u * t;
  if (j0 >= p.Lk) {
    return;
  }
  let keys = min(p.Lk - j0, 4u);
  let kAt = ((b * p.Hkv + hk) * p.kStride + j0) * D4;
  let vAt = ((b * p.Hkv + hk) * p.vStride + j0) * DV4;

  // The four keys and values, transposed; missing keys are zero.
  var kT: array<mat4x4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    var byKey = mat4x4<f32>();
    for (var r = 0u; r < keys; r++) {
      byKey[r] = unpackChunk(k[kAt + r * D4 + c]);
    }
    kT[c] = transpose(byKey);
  }
  var vT: array<mat4x4<f32>, DV4>;
  for (var c = 0u; c < DV4; c++) {
    var byKey = mat4x4<f32>();
    for (var r = 0u; r < keys; r++) {
      byKey[r] = unpackChunk(v[vAt + r * DV4 + c]);
    }
    vT[c] = transpose(byKey);
  }

  var dkT: array<mat4x4<f32>, D4>;
  var dvT: array<mat4x4<f32>, DV4>;
  let group = p.Hq / p.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    let head = (b * p.Hq + h) * p.Lq;
    for (var i0 = 0u; i0 < p.Lq; i0 += 4u) {
      let rows = min(p.Lq - i0, 4u);
      // Causal: when the last row may not attend the first key, no row attends any of the keys.
      if (!causalAllows(i0 + rows - 1u, j0)) {
        continue;
      }
      let qAt = (head + i0) * D4;
      // raw scores scale * q·k, a column per row
      var s = mat4x4<f32>();
      for (var c = 0u; c < D4; c++) {
        s += kT[c] * qChunks(qAt, c, rows);
      }
      s = s * p.scale;
      // P and d keyScore / ds, a column per row (constant indices only: a dynamically indexed
      // matrix would live in memory on SwiftShader); rows past Lq get zeros.
      let last = head + p.Lq - 1u;
      let st0 = stat(head + i0);
      let st1 = stat(min(head + i0 + 1u, last));
      let st2 = stat(min(head + i0 + 2u, last));
      let st3 = stat(min(head + i0 + 3u, last));
      let delta = vec4<f32>(st0.y, st1.y, st2.y, st3.y);
      let z = vec4<f32>(0.0);
      let pr = mat4x4<f32>(
        keyProbabilities(s[0], st0.x, b, h, i0, j0),
        select(z, keyProbabilities(s[1], st1.x, b, h, i0 + 1u, j0), rows > 1u),
        select(z, keyProbabilities(s[2], st2.x, b, h, i0 + 2u, j0), rows > 2u),
        select(z, keyProbabilities(s[3], st3.x, b, h, i0 + 3u, j0), rows > 3u),
      );
      // P = 0 everywhere: nothing to add (masked, or underflowed to 0)
      if (all((pr[0] == z) & (pr[1] == z) & (pr[2] == z) & (pr[3] == z))) {
        continue;
      }
      let grad = mat4x4<f32>(
        keyGrads(s[0], b, h, i0, j0),
        keyGrads(s[1], b, h, i0 + 1u, j0),
        keyGrads(s[2], b, h, i0 + 2u, j0),
        keyGrads(s[3], b, h, i0 + 3u, j0),
      );
      // P after dropout, and the factors
      var pv = pr;
      var factors = mat4x4<f32>();
      if (DROPOUT) {
        factors = dropByRow(dropRowKeys(b, h, i0), j0);
        pv = dropped(pr, factors);
      }
      let oAt = (head + i0) * DV4;
      var dp = mat4x4<f32>();
      for (var c = 0u; c < DV4; c++) {
        let dOc = dOChunks(oAt, c, rows);
        dp += vT[c] * dOc;
        dvT[c] += pv * transpose(dOc);
      }
      if (DROPOUT) {
        dp = dropped(dp, factors);
      }
      let ds = mat4x4<f32>(
        pr[0] * (dp[0] - delta.x) * grad[0],
        pr[1] * (dp[1] - delta.y) * grad[1],
        pr[2] * (dp[2] - delta.z) * grad[2],
        pr[3] * (dp[3] - delta.w) * grad[3],
      );
      for (var c = 0u; c < D4; c++) {
        dkT[c] += ds * transpose(qChunks(qAt, c, rows));
      }
    }
  }

  let out0 = ((b * p.Hkv + hk) * p.Lk + j0);
  for (var c = 0u; c < D4; c++) {
    let byKey = transpose(dkT[c]);
    for (var r = 0u; r < keys; r++) {
      let x = byKey[r] * p.scale;
      let e = (out0 + r) * D4 * 4u + 4u * c;
      storeDk(e, x.x);
      storeDk(e + 1u, x.y);
      storeDk(e + 2u, x.z);
      storeDk(e + 3u, x.w);
    }
  }
  for (var c = 0u; c < DV4; c++) {
    let byKey = transpose(dvT[c]);
    for (var r = 0u; r < keys; r++) {
      let x = byKey[r];
      let e = (out0 + r) * DV4 * 4u + 4u * c;
      storeDv(e, x.x);
      storeDv(e + 1u, x.y);
      storeDv(e + 2u, x.z);
      storeDv(e + 3u, x.w);
    }
  }
}
