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
// 4), MASK, DROPOUT, the row strides Q_ROW, K_ROW, V_ROW, O_ROW (elements); Chunk and
// unpackChunk from src/f16.ts; storeDk, storeDv (generated).

alias Input = Chunk;
// rows in chunks
const Q_STEP = Q_ROW / 4u;
const K_STEP = K_ROW / 4u;
const V_STEP = V_ROW / 4u;
const O_STEP = O_ROW / 4u;

// Chunk c of rows first .. first + 3 of q or dO from chunk `at`: column r holds chunk c of row r,
// zero for rows r >= rows.
fn qChunks(at: u32, c: u32, rows: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(q[at + c]), rows > 0u),
    select(z, unpackChunk(q[at + Q_STEP + c]), rows > 1u),
    select(z, unpackChunk(q[at + 2u * Q_STEP + c]), rows > 2u),
    select(z, unpackChunk(q[at + 3u * Q_STEP + c]), rows > 3u),
  );
}
fn dOChunks(at: u32, c: u32, rows: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(dO[at + c]), rows > 0u),
    select(z, unpackChunk(dO[at + O_STEP + c]), rows > 1u),
    select(z, unpackChunk(dO[at + 2u * O_STEP + c]), rows > 2u),
    select(z, unpackChunk(dO[at + 3u * O_STEP + c]), rows > 3u),
  );
}

// P of keys j0 .. j0 + 3 (components) for row i with raw scores s and the row's lse. A loop, not
// four calls: SwiftShader compiles every inlined copy of keyScore (all the options' code), and
// four copies per row made this kernel compile 3-4x slower; GPU compilers unroll it.
fn keyProbabilities(s: vec4<f32>, lse: f32, b: u32, h: u32, i: u32, j0: u32, inUse: vec2<i32>) -> vec4<f32> {
  let r = keyRange(inUse, i);
  var pr = vec4<f32>();
  for (var c = 0u; c < 4u; c++) {
    pr[c] = probability(keyScore(s[c], b, h, i, j0 + c, r), lse);
  }
  return pr;
}

// keyScoreGrad of keys j0 .. j0 + 3 (components) for row i (a loop, as keyProbabilities).
fn keyGrads(s: vec4<f32>, b: u32, h: u32, i: u32, j0: u32) -> vec4<f32> {
  var g = vec4<f32>();
  for (var c = 0u; c < 4u; c++) {
    g[c] = keyScoreGrad(s[c], b, h, i, j0 + c);
  }
  return g;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let blocks = (p.Lk + 4u * WG - 1u) / (4u * WG);
  let b = flat / (blocks * p.Hkv);
  let inUse = keysInUse(b);
  let hk = (flat / blocks) % p.Hkv;
  let j0 = (flat % blocks) * 4u * WG + 4u * t;
  if (j0 >= p.Lk) {
    return;
  }
  let keys = min(p.Lk - j0, 4u);
  // first chunk of key j0 in k and v
  let kAt = (b * p.k_b + hk * p.k_h + j0 * K_ROW) / 4u;
  let vAt = (b * p.v_b + hk * p.v_h + j0 * V_ROW) / 4u;

  // The four keys and values, transposed; missing keys are zero.
  var kT: array<mat4x4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    var byKey = mat4x4<f32>();
    for (var r = 0u; r < keys; r++) {
      byKey[r] = unpackChunk(k[kAt + r * K_STEP + c]);
    }
    kT[c] = transpose(byKey);
  }
  var vT: array<mat4x4<f32>, DV4>;
  for (var c = 0u; c < DV4; c++) {
    var byKey = mat4x4<f32>();
    for (var r = 0u; r < keys; r++) {
      byKey[r] = unpackChunk(v[vAt + r * V_STEP + c]);
    }
    vT[c] = transpose(byKey);
  }

  var dkT: array<mat4x4<f32>, D4>;
  var dvT: array<mat4x4<f32>, DV4>;
  let group = p.Hq / p.Hkv;
  for (var g = 0u; g < group; g++) {
    let h = hk * group + g;
    // the head's row 0 in the stats [B, Hq, Lq]; its first chunk in q and in dO
    let head = (b * p.Hq + h) * p.Lq;
    let qHead = (b * p.q_b + h * p.q_h) / 4u;
    let oHead = (b * p.o_b + h * p.o_h) / 4u;
    for (var i0 = 0u; i0 < p.Lq; i0 += 4u) {
      let rows = min(p.Lq - i0, 4u);
      // Causal: when the last row may not attend the first key, no row attends any of the keys.
      if (!causalAllows(i0 + rows - 1u, j0)) {
        continue;
      }
      let qAt = qHead + i0 * Q_STEP;
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
        keyProbabilities(s[0], st0.x, b, h, i0, j0, inUse),
        select(z, keyProbabilities(s[1], st1.x, b, h, i0 + 1u, j0, inUse), rows > 1u),
        select(z, keyProbabilities(s[2], st2.x, b, h, i0 + 2u, j0, inUse), rows > 2u),
        select(z, keyProbabilities(s[3], st3.x, b, h, i0 + 3u, j0, inUse), rows > 3u),
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
      let oAt = oHead + i0 * O_STEP;
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

  // key j0 in dk and dv
  let dkAt = b * p.dk_b + hk * p.dk_h + j0 * p.dk_l;
  let dvAt = b * p.dv_b + hk * p.dv_h + j0 * p.dv_l;
  for (var c = 0u; c < D4; c++) {
    let byKey = transpose(dkT[c]);
    for (var r = 0u; r < keys; r++) {
      let x = byKey[r] * p.scale;
      let e = dkAt + r * p.dk_l + 4u * c;
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
      let e = dvAt + r * p.dv_l + 4u * c;
      storeDv(e, x.x);
      storeDv(e + 1u, x.y);
      storeDv(e + 2u, x.z);
      storeDv(e + 3u, x.w);
    }
  }
}
