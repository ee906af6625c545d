// Attention backward, dQ, for adapters that run compute on the CPU (SwiftShader): no workgroup
// memory and no barriers. One invocation owns four consecutive query rows of one head and walks
// the keys of its kv head four at a time (up to the causal end), recomputing
// P = exp(keyScore(scale * q·k) - lse):  dP = dO Vᵀ,  dS = P (dP - delta) keyScoreGrad,
// dQ = scale dS K, accumulated in registers.
// Blocks are 4 x 4 mat4x4s: qT[c], dOT[c], dqT[c] hold dims 4c .. 4c + 3 (columns) of the four
// rows (components); per key block, Kc and Vc hold chunk c of the four keys (columns), and S, P,
// dP, dS have one column per key, components over the rows.
// With DROPOUT, Z = dropout.wgsl's factors: dS = P (dP Z - delta) keyScoreGrad. With DATA_GRAD,
// P (dP - delta) of each attended key also goes to modDataGrad (modData's gradients).
// Constants (src/ops/attention_backward.ts): WG, D4 = D / 4, DV4 = Dv / 4 (D and Dv multiples of
// 4), MASK, DROPOUT, DATA_GRAD, the row strides Q_ROW, K_ROW, V_ROW, O_ROW (elements); Chunk and
// unpackChunk from src/f16.ts; storeDq (generated).

alias Input = Chunk;
// rows in chunks
const Q_STEP = Q_ROW / 4u;
const K_STEP = K_ROW / 4u;
const V_STEP = V_ROW / 4u;
const O_STEP = O_ROW / 4u;

// Chunk c of keys first .. first + 3 of k or v from chunk `at`: column j holds chunk c of key j,
// zero for keys j >= keys (so that no value past Lk reaches a product).
fn kChunks(at: u32, c: u32, keys: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(k[at + c]), keys > 0u),
    select(z, unpackChunk(k[at + K_STEP + c]), keys > 1u),
    select(z, unpackChunk(k[at + 2u * K_STEP + c]), keys > 2u),
    select(z, unpackChunk(k[at + 3u * K_STEP + c]), keys > 3u),
  );
}
fn vChunks(at: u32, c: u32, keys: u32) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, unpackChunk(v[at + c]), keys > 0u),
    select(z, unpackChunk(v[at + V_STEP + c]), keys > 1u),
    select(z, unpackChunk(v[at + 2u * V_STEP + c]), keys > 2u),
    select(z, unpackChunk(v[at + 3u * V_STEP + c]), keys > 3u),
  );
}

// P of rows i0 .. i0 + 3 (components) for key j with scores s (already scaled), the rows' lse and
// their key ranges. A loop, not four calls: SwiftShader compiles every inlined copy of keyScore
// (all the options' code), and four copies per key made this kernel compile several times slower;
// GPU compilers unroll it.
fn rowProbabilities(
  s: vec4<f32>,
  lse: vec4<f32>,
  b: u32,
  h: u32,
  i0: u32,
  j: u32,
  ranges: array<KeyRange, 4>,
) -> vec4<f32> {
  var pr = vec4<f32>();
  for (var r = 0u; r < 4u; r++) {
    pr[r] = probability(keyScore(s[r], b, h, i0 + r, j, ranges[r]), lse[r]);
  }
  return pr;
}

// modDataGrad of rows i0 .. i0 + 3 (components) for key j, dy = P (dP - delta).
fn rowDataGrads(s: vec4<f32>, dy: vec4<f32>, b: u32, h: u32, i0: u32, j: u32) {
  for (var r = 0u; r < 4u; r++) {
    modDataGrad(s[r], b, h, i0 + r, j, dy[r]);
  }
}

// keyScoreGrad of rows i0 .. i0 + 3 (components) for key j (a loop, as rowProbabilities).
fn rowGrads(s: vec4<f32>, b: u32, h: u32, i0: u32, j: u32) -> vec4<f32> {
  var g = vec4<f32>();
  for (var r = 0u; r < 4u; r++) {
    g[r] = keyScoreGrad(s[r], b, h, i0 + r, j);
  }
  return g;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  if (flat >= p.workgroups) {
    return;
  }
  let blocks = (p.Lq + 4u * WG - 1u) / (4u * WG);
  let b = flat / (blocks * p.Hq);
  let inUse = keysInUse(b);
  let h = (flat / blocks) % p.Hq;
  let i0 = (flat % blocks) * 4u * WG + 4u * t;
  if (i0 >= p.Lq) {
    return;
  }
  let rows = min(p.Lq - i0, 4u);
  // row i0 in the stats [B, Hq, Lq]; its first element in q and dq, in dO
  let row0 = (b * p.Hq + h) * p.Lq + i0;
  let qRow = b * p.q_b + h * p.q_h + i0 * Q_ROW;
  let oRow = b * p.o_b + h * p.o_h + i0 * O_ROW;
  let hk = h / (p.Hq / p.Hkv);
  // first chunk of the kv head's key 0 in k and v
  let kBase = (b * p.k_b + hk * p.k_h) / 4u;
  let vBase = (b * p.v_b + hk * p.v_h) / 4u;

  // The four rows of q (scaled) and dO, transposed; missing rows are zero.
  var qT: array<mat4x4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    var byRow = mat4x4<f32>();
    for (var r = 0u; r < rows; r++) {
      byRow[r] = unpackChunk(q[qRow / 4u + r * Q_STEP + c]) * p.scale;
    }
    qT[c] = transpose(byRow);
  }
  var dOT: array<mat4x4<f32>, DV4>;
  for (var c = 0u; c < DV4; c++) {
    var byRow = mat4x4<f32>();
    for (var r = 0u; r < rows; r++) {
      byRow[r] = unpackChunk(dO[oRow / 4u + r * O_STEP + c]);
    }
    dOT[c] = transpose(byRow);
  }
  let last = row0 + rows - 1u;
  let st0 = stat(row0);
  let st1 = stat(min(row0 + 1u, last));
  let st2 = stat(min(row0 + 2u, last));
  let st3 = stat(min(row0 + 3u, last));
  let lse = vec4<f32>(st0.x, st1.x, st2.x, st3.x);
  let delta = vec4<f32>(st0.y, st1.y, st2.y, st3.y);
  let live = vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(rows);
  // computed once: keyRange's document search would repeat per key
  let ranges = array<KeyRange, 4>(
    keyRange(inUse, i0),
    keyRange(inUse, i0 + 1u),
    keyRange(inUse, i0 + 2u),
    keyRange(inUse, i0 + 3u),
  );

  var dqT: array<mat4x4<f32>, D4>;
  var dropKeys = vec4<u32>();
  if (DROPOUT) {
    dropKeys = dropRowKeys(b, h, i0);
  }
  let kEnd = causalEnd(i0 + rows - 1u);
  for (var j0 = 0u; j0 < kEnd; j0 += 4u) {
    let keys = min(p.Lk - j0, 4u);
    let kAt = kBase + j0 * K_STEP;
    var s = mat4x4<f32>();
    for (var c = 0u; c < D4; c++) {
      s += qT[c] * kChunks(kAt, c, keys);
    }
    // P and d keyScore / ds, a column per key (constant indices only: a dynamically indexed
    // matrix would live in memory on SwiftShader); missing rows get zeros, missing keys are masked.
    let z = vec4<f32>(0.0);
    let pr = mat4x4<f32>(
      select(z, rowProbabilities(s[0], lse, b, h, i0, j0, ranges), live),
      select(z, rowProbabilities(s[1], lse, b, h, i0, j0 + 1u, ranges), live),
      select(z, rowProbabilities(s[2], lse, b, h, i0, j0 + 2u, ranges), live),
      select(z, rowProbabilities(s[3], lse, b, h, i0, j0 + 3u, ranges), live),
    );
    // P = 0 everywhere: nothing to add (masked, or underflowed to 0)
    if (all((pr[0] == z) & (pr[1] == z) & (pr[2] == z) & (pr[3] == z))) {
      continue;
    }
    let grad = mat4x4<f32>(
      rowGrads(s[0], b, h, i0, j0),
      rowGrads(s[1], b, h, i0, j0 + 1u),
      rowGrads(s[2], b, h, i0, j0 + 2u),
      rowGrads(s[3], b, h, i0, j0 + 3u),
    );
    let vAt = vBase + j0 * V_STEP;
    var dp = mat4x4<f32>();
    for (var c = 0u; c < DV4; c++) {
      dp += dOT[c] * vChunks(vAt, c, keys);
    }
    if (DROPOUT) {
      dp = dropped(dp, dropByKey(dropKeys, j0));
    }
    let dy = mat4x4<f32>(
      pr[0] * (dp[0] - delta),
      pr[1] * (dp[1] - delta),
      pr[2] * (dp[2] - delta),
      pr[3] * (dp[3] - delta),
    );
    if (DATA_GRAD) {
      rowDataGrads(s[0], dy[0], b, h, i0, j0);
      rowDataGrads(s[1], dy[1], b, h, i0, j0 + 1u);
      rowDataGrads(s[2], dy[2], b, h, i0, j0 + 2u);
      rowDataGrads(s[3], dy[3], b, h, i0, j0 + 3u);
    }
    let ds = mat4x4<f32>(dy[0] * grad[0], dy[1] * grad[1], dy[2] * grad[2], dy[3] * grad[3]);
    for (var c = 0u; c < D4; c++) {
      dqT[c] += ds * transpose(kChunks(kAt, c, keys));
    }
  }

  if (DATA_GRAD) {
    flushModGrads();
  }
  for (var c = 0u; c < D4; c++) {
    let byRow = transpose(dqT[c]);
    for (var r = 0u; r < rows; r++) {
      let x = byRow[r] * p.scale;
      let e = qRow + r * Q_ROW + 4u * c;
      storeDq(e, x.x);
      storeDq(e + 1u, x.y);
      storeDq(e + 2u, x.z);
      storeDq(e + 3u, x.w);
    }
  }
}
