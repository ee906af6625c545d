// Split-K attention (flash-decoding), pass 1 for adapters that run compute on the CPU: no
// workgroup memory. Same contract as decode_split.wgsl.
// One invocation per (key chunk, query row): it walks its chunk four keys at a time, their scores
// a vec4 and their rows 4 x 4 blocks, and writes one partial (m, l, o) of the row. Needs D and Dv
// multiples of 4: q, k and v are read a Chunk at a time. Constants: WG, D4 = D / 4, DV4 = Dv / 4,
// MASK, DROPOUT (dropout.wgsl's factors weigh what o sums), the row strides Q_ROW, K_ROW, V_ROW
// (elements), and Chunk and unpackChunk of src/f16.ts. Appended: decode_partials.wgsl,
// key_rules.wgsl, dropout.wgsl, value_chunks.wgsl, masked.wgsl.

// rows of k in chunks (V_STEP: value_chunks.wgsl)
const K_STEP = K_ROW / 4u;

@group(0) @binding(1) var<storage, read> q: array<Chunk>;
@group(0) @binding(2) var<storage, read> k: array<Chunk>;
@group(0) @binding(3) var<storage, read> v: array<Chunk>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let flat = workgroupIndex(wid);
  let groups = (p.P + WG - 1u) / WG;
  let row = flat / groups;
  let chunk = (flat % groups) * WG + t;
  if (row >= p.B * p.Hq * p.Lq || chunk >= p.P) {
    return;
  }
  let i = row % p.Lq;
  let h = (row / p.Lq) % p.Hq;
  let b = row / (p.Lq * p.Hq);
  let inUse = keysInUse(b);
  let hk = h / p.group;
  // first chunk of the row in q, of the kv head's key 0 in k and v
  let qAt = (b * p.q_b + h * p.q_h + i * Q_ROW) / 4u;
  let kBase = (b * p.k_b + hk * p.k_h) / 4u;
  let vBase = (b * p.v_b + hk * p.v_h) / 4u;

  var qr: array<vec4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    qr[c] = unpackChunk(q[qAt + c]) * p.scale;
  }
  // The chunk's keys that the row may attend (causal, window and documents).
  let kr = keyRange(inUse, i);
  let jStart = max(chunk * p.tilesPerChunk * 4u, kr.lo);
  let jStop = min(chunk * p.tilesPerChunk * 4u + p.tilesPerChunk * 4u, kr.hi);
  // (MODS and BLOCKS: constants, see flash_attention_registers.wgsl)
  let simple = !perKeyBias() && (BLOCKS != 0u || p.mask_mod == 0u);
  let mods = MODS;

  var dropKey = 0u;
  if (DROPOUT) {
    dropKey = dropRowKeys(b, h, i).x;
  }

  var m = MASKED;
  var l = 0.0;
  var acc: array<vec4<f32>, DV4>;
  for (var j0 = jStart; j0 < jStop; j0 += 4u) {
    // A full tile: four keys that the row may attend, with no bias to add.
    // (empty tiles of the block mask are jumped over whole; full tiles need no mask_mod)
    var fullTiles = true;
    if (BLOCKS != 0u) {
      let states = blockStates(b, h, i, i, j0, 4u);
      if (!states.x) {
        j0 = emptyKeysEnd(j0, 4u) - 4u;
        continue;
      }
      fullTiles = states.y;
    }
    let full = simple && fullTiles && j0 + 4u <= jStop;
    // bias[e]: of key j0 + e
    var bias = vec4<f32>();
    if (!full) {
      // written out: a vector indexed by a loop variable lives in memory on SwiftShader
      let r = Row(true, h, i, row);
      bias = vec4<f32>(
        keyBias(b, r, kr, j0, jStop),
        keyBias(b, r, kr, j0 + 1u, jStop),
        keyBias(b, r, kr, j0 + 2u, jStop),
        keyBias(b, r, kr, j0 + 3u, jStop),
      );
      if (all(bias == vec4<f32>(MASKED))) {
        continue;
      }
    }
    let ok = bias > vec4<f32>(MASKED);

    // Keys past jStop read whatever the buffer holds there; their scores are replaced below.
    // Modified scores start from zero and get their bias after modScore.
    var s = select(bias, vec4<f32>(0.0), mods);
    let kt = kBase + j0 * K_STEP;
    for (var c = 0u; c < D4; c++) {
      let qc = qr[c];
      s += vec4<f32>(
        dot(unpackChunk(k[kt + c]), qc),
        dot(unpackChunk(k[kt + K_STEP + c]), qc),
        dot(unpackChunk(k[kt + 2u * K_STEP + c]), qc),
        dot(unpackChunk(k[kt + 3u * K_STEP + c]), qc),
      );
    }
    if (mods) {
      s = vec4<f32>(
        modScore(s.x, b, h, i, j0),
        modScore(s.y, b, h, i, j0 + 1u),
        modScore(s.z, b, h, i, j0 + 2u),
        modScore(s.w, b, h, i, j0 + 3u),
      ) + bias;
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
    if (DROPOUT) {
      // dropout changes what o sums, not l
      pr *= dropFactors(vec4<u32>(dropKey), dropColumnKeys(j0));
    }

    // The same product on both paths, written out for each: a branch inside the loop costs
    // SwiftShader much of its speed.
    let vt = vBase + j0 * V_STEP;
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

