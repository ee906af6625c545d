// Fused attention forward for adapters that run compute on the CPU (SwiftShader): no workgroup
// memory and no barriers, which cost there what they save on a GPU.
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq].
// One invocation owns four consecutive query rows of one head and walks the keys eight at a time
// (two blocks of four: faster than one on SwiftShader, where four blocks spill registers),
// reading K and V straight from storage. Scores, probabilities and the output accumulator are
// 4 x 4 blocks held in mat4x4s whose columns are vec4s over the four rows (column = key for the
// scores, column = output dim for the accumulator), so each step is a 4 x 4 matrix product; the
// softmax is online, in f32. Same contract as flash_attention.wgsl, without the weights output.
// Constants (src/ops/flash_attention.ts): WG (invocations per workgroup), D4 = D / 4,
// DV4 = Dv / 4 (D and Dv must be multiples of 4), MASK (0 none, 1 bool, 2 additive), LSE,
// DROPOUT (the probabilities summed into the output are dropout.wgsl's), the row strides Q_ROW,
// K_ROW, V_ROW, O_ROW (elements; see flash_common.wgsl), and the storage helpers
// of src/f16.ts: Chunk and unpackChunk (four elements per load), storeOut.

// q, k and v are read four elements a load (the bindings are in flash_common.wgsl)
alias Input = Chunk;
// rows of q and k in chunks (V_STEP: value_chunks.wgsl)
const Q_STEP = Q_ROW / 4u;
const K_STEP = K_ROW / 4u;

// Keys each of the four rows may attend (keyRange): lo, hi and the row's diagonal shift.
struct RowKeys {
  lo: vec4<u32>,
  hi: vec4<u32>,
  shift: vec4<i32>,
}

// Biases of keys j0 .. j0 + 3 (columns) for rows i0 .. i0 + rows - 1 (components): ALiBi and
// the additive mask value where the row may attend the key, MASKED where it may not (and for
// missing rows).
fn tileBias(b: u32, h: u32, i0: u32, rows: u32, j0: u32, rk: RowKeys) -> mat4x4<f32> {
  var bias = mat4x4<f32>(vec4<f32>(MASKED), vec4<f32>(MASKED), vec4<f32>(MASKED), vec4<f32>(MASKED));
  for (var c = 0u; c < 4u; c++) {
    let j = j0 + c;
    for (var r = 0u; r < rows; r++) {
      if (j >= rk.lo[r] && j < rk.hi[r]) {
        if (KEY_RULES) {
          bias[c][r] = ruleBias(b, h, i0 + r, j, rk.shift[r]);
        } else {
          bias[c][r] = maskBias(b * p.mask_b + h * p.mask_h + (i0 + r) * p.mask_i + j * p.mask_j);
        }
      }
    }
  }
  return bias;
}

// modScore of each score of keys j0 .. j0 + 3 (columns) for rows i0 .. i0 + 3 (components).
fn modTile(x: mat4x4<f32>, b: u32, h: u32, i0: u32, j0: u32) -> mat4x4<f32> {
  var y = x;
  for (var c = 0u; c < 4u; c++) {
    for (var r = 0u; r < 4u; r++) {
      y[c][r] = modScore(x[c][r], b, h, i0 + r, j0 + c);
    }
  }
  return y;
}

// Largest of the four columns, per row.
fn colMax(x: mat4x4<f32>) -> vec4<f32> {
  return max(max(x[0], x[1]), max(x[2], x[3]));
}

// exp(x - m), m per row.
fn expMinus(x: mat4x4<f32>, m: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(exp(x[0] - m), exp(x[1] - m), exp(x[2] - m), exp(x[3] - m));
}

// x where the bias allows the (row, key) pair, else `dropped`. By select, not arithmetic, so that
// a NaN or Infinity in a key or value that a row may not attend never reaches that row.
fn allowedOr(x: mat4x4<f32>, bias: mat4x4<f32>, dropped: f32) -> mat4x4<f32> {
  let d = vec4<f32>(dropped);
  let lo = vec4<f32>(MASKED);
  return mat4x4<f32>(
    select(d, x[0], bias[0] > lo),
    select(d, x[1], bias[1] > lo),
    select(d, x[2], bias[2] > lo),
    select(d, x[3], bias[3] > lo),
  );
}

// pr * transpose(byKey) over the allowed (row, key) pairs only: pr's column j weighs key j for
// the rows, byKey's column j holds four dims of key j.
fn allowedProduct(pr: mat4x4<f32>, byKey: mat4x4<f32>, bias: mat4x4<f32>) -> mat4x4<f32> {
  return keyTerm(pr[0], byKey[0], bias[0]) + keyTerm(pr[1], byKey[1], bias[1]) +
    keyTerm(pr[2], byKey[2], bias[2]) + keyTerm(pr[3], byKey[3], bias[3]);
}

// One key's share of allowedProduct: column e is pr * dim e of the key, 0 in disallowed rows.
fn keyTerm(pr: vec4<f32>, key: vec4<f32>, bias: vec4<f32>) -> mat4x4<f32> {
  let ok = bias > vec4<f32>(MASKED);
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, pr * key.x, ok),
    select(z, pr * key.y, ok),
    select(z, pr * key.z, ok),
    select(z, pr * key.w, ok),
  );
}

// Each column of x times its row's factor.
fn scaled(x: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(x[0] * f, x[1] * f, x[2] * f, x[3] * f);
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
  // row i0 in lse [B, Hq, Lq]
  let row0 = (b * p.Hq + h) * p.Lq + i0;
  let hk = h / (p.Hq / p.Hkv);
  // first chunk of row i0 in q, of the kv head's key 0 in k and v; first element of row i0 in out
  let qAt = (b * p.q_b + h * p.q_h + i0 * Q_ROW) / 4u;
  let kBase = (b * p.k_b + hk * p.k_h) / 4u;
  let vBase = (b * p.v_b + hk * p.v_h) / 4u;
  let oAt = b * p.o_b + h * p.o_h + i0 * O_ROW;

  // qm[c]: column e holds dim 4c + e of the rows, scaled; missing rows are zero.
  var qm: array<mat4x4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    var byRow = mat4x4<f32>();
    for (var r = 0u; r < rows; r++) {
      byRow[r] = unpackChunk(q[qAt + r * Q_STEP + c]) * p.scale;
    }
    qm[c] = transpose(byRow);
  }

  // Keys some row may attend, [keys.x, keys.y): the loop's bounds (causal, window and documents
  // skip whole tiles); keys every row may attend, [keys.z, keys.w).
  let keys = blockKeys(inUse, i0, i0 + rows - 1u);
  var rk: RowKeys;
  for (var r = 0u; r < rows; r++) {
    let kr = keyRange(inUse, i0 + r);
    rk.lo[r] = kr.lo;
    rk.hi[r] = kr.hi;
    rk.shift[r] = kr.shift;
  }
  // MODS and BLOCKS (constants: the call has softcap / score_mod, a block mask) keep their code out
  // of the loop when unused: any code in it costs SwiftShader speed.
  let simple = rows == 4u && !perKeyBias() && (BLOCKS != 0u || p.mask_mod == 0u);
  let mods = MODS;
  // The block-mask rows of tiles of the first and last row (for blockStates2).
  var bmRowA = 0u;
  var bmRowB = 0u;
  if (BLOCKS != 0u) {
    bmRowA = blockRow(b, h, i0);
    bmRowB = blockRow(b, h, i0 + rows - 1u);
  }

  var dropKeys = vec4<u32>();
  if (DROPOUT) {
    dropKeys = dropRowKeys(b, h, i0);
  }

  var m = vec4<f32>(MASKED);
  var l = vec4<f32>(0.0);
  // acc[c]: column e holds output dim 4c + e of the rows, unnormalised.
  var acc: array<mat4x4<f32>, DV4>;
  for (var j0 = keys.x; j0 < keys.y; j0 += 8u) {
    // Keys in empty tiles of the block mask are skipped; a full tile: all four rows may attend all
    // eight keys, with no bias to add and no mask_mod to evaluate.
    var fullTiles = true;
    if (BLOCKS != 0u) {
      // BLOCKS 2: blocks of at least four rows, so the four rows span at most two
      var states: vec2<bool>;
      if (BLOCKS == 2u) {
        states = blockStates2(bmRowA, bmRowB, j0, 8u);
      } else {
        states = blockStates(b, h, i0, i0 + rows - 1u, j0, 8u);
      }
      if (!states.x) {
        j0 = emptyKeysEnd(j0, 8u) - 8u;
        continue;
      }
      fullTiles = states.y;
    }
    let full = simple && fullTiles && j0 >= keys.z && j0 + 8u <= keys.w;
    // Keys j0 .. j0 + 3 are block a, j0 + 4 .. j0 + 7 block b; column c of ba (bb) is the bias
    // of key c of the block for the rows.
    var ba = mat4x4<f32>();
    var bb = mat4x4<f32>();
    if (!full) {
      ba = tileBias(b, h, i0, rows, j0, rk);
      bb = tileBias(b, h, i0, rows, j0 + 4u, rk);
      if (all(max(colMax(ba), colMax(bb)) == vec4<f32>(MASKED))) {
        continue;
      }
    }

    // Scores, same layout. Keys past Lk read whatever the buffer holds there (WGSL keeps loads in
    // bounds); their scores are replaced below.
    // Modified scores start from zero and get their bias after modScore.
    var sa = ba;
    var sb = bb;
    if (mods) {
      sa = mat4x4<f32>();
      sb = mat4x4<f32>();
    }
    let kt = kBase + j0 * K_STEP;
    for (var c = 0u; c < D4; c++) {
      let qc = qm[c];
      sa[0] += qc * unpackChunk(k[kt + c]);
      sa[1] += qc * unpackChunk(k[kt + K_STEP + c]);
      sa[2] += qc * unpackChunk(k[kt + 2u * K_STEP + c]);
      sa[3] += qc * unpackChunk(k[kt + 3u * K_STEP + c]);
      sb[0] += qc * unpackChunk(k[kt + 4u * K_STEP + c]);
      sb[1] += qc * unpackChunk(k[kt + 5u * K_STEP + c]);
      sb[2] += qc * unpackChunk(k[kt + 6u * K_STEP + c]);
      sb[3] += qc * unpackChunk(k[kt + 7u * K_STEP + c]);
    }
    if (mods) {
      sa = modTile(sa, b, h, i0, j0) + ba;
      sb = modTile(sb, b, h, i0, j0 + 4u) + bb;
    }
    if (!full) {
      sa = allowedOr(sa, ba, MASKED);
      sb = allowedOr(sb, bb, MASKED);
    }
    let mNew = max(m, max(colMax(sa), colMax(sb)));
    let alpha = exp(m - mNew);
    m = mNew;
    var pa = expMinus(sa, mNew);
    var pb = expMinus(sb, mNew);
    if (!full) {
      pa = allowedOr(pa, ba, 0.0);
      pb = allowedOr(pb, bb, 0.0);
    }
    l = l * alpha + pa * vec4<f32>(1.0) + pb * vec4<f32>(1.0);
    if (DROPOUT) {
      // dropout changes what the output sums, not the softmax's denominator
      pa = dropped(pa, dropByKey(dropKeys, j0));
      pb = dropped(pb, dropByKey(dropKeys, j0 + 4u));
    }

    // The same product on both paths, but a branch inside the loop costs SwiftShader much of the
    // kernel's speed, so the loop is written out for each.
    let vt = vBase + j0 * V_STEP;
    if (full) {
      for (var c = 0u; c < DV4; c++) {
        acc[c] = scaled(acc[c], alpha) + pa * transpose(keyChunks(vt, c)) +
          pb * transpose(keyChunks(vt + 4u * V_STEP, c));
      }
    } else {
      for (var c = 0u; c < DV4; c++) {
        acc[c] = scaled(acc[c], alpha) + allowedProduct(pa, keyChunks(vt, c), ba) +
          allowedProduct(pb, keyChunks(vt + 4u * V_STEP, c), bb);
      }
    }
  }

  // The sink joins the denominator. A row that may attend no key: zeros and lse = -Infinity (or
  // the sink). (l == 0 rather than l > 0, so that a NaN sum stays NaN.)
  let sink = sinkLogit(h);
  let mAll = max(m, vec4<f32>(sink));
  let alpha = exp(m - mAll);
  l = l * alpha + select(vec4<f32>(0.0), exp(vec4<f32>(sink) - mAll), p.sinks_at != RULE_NONE);
  m = mAll;
  let inv = select(alpha / l, vec4<f32>(0.0), l == vec4<f32>(0.0));
  for (var c = 0u; c < DV4; c++) {
    let byRow = transpose(acc[c]);
    for (var r = 0u; r < rows; r++) {
      let o = byRow[r] * inv[r];
      let e = oAt + r * O_ROW + 4u * c;
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
