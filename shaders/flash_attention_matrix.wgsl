// Fused attention forward through matrix tiles (subgroup matrices, or their emulation): one
// workgroup of WG invocations per (block of BR query rows, head, batch, group of VG value dims),
// FlashAttention-2's blocking.
// q [B, Hq, Lq, D], k [B, Hkv, Lk, D], v [B, Hkv, Lk, Dv] -> out [B, Hq, Lq, Dv], lse [B, Hq, Lq]
// (q, k, v and out at any batch, head and row strides: the uniforms q_b .. o_h and q_l .. o_l).
// Appended with one tile interface (matrix_tiles_builtin.wgsl or matrix_tiles_emulated.wgsl:
// Operand, TileInvocation, tileGroup(s), toOperand, loadLeft, loadRight, loadResult, zeroResult,
// mulAcc, storeResult) whose tiles are TILE_M x TILE_K times TILE_K x TILE_N. Per tile of BC keys:
// 1. S = Q K^T [BR, BC] in f32, over chunks of KC dims: q [BR, KC] and k^T [KC, BC] staged as f16
//    operands (zero outside the rows, keys and D); each group of tile workers owns S tiles;
// 2. the rules (keyRange, ruleBias, modScore) turn S into scores, MASKED where not allowed;
// 3. one invocation per row: the tile maximum, the new running max m and alpha = exp(m_old - m);
// 4. P = exp(S - m) as f16 operands [BR, BC], O [BR, VG] (f32, workgroup memory) scaled by alpha,
//    v [BC, VG] staged as f16 operands; the row sums l (f32, of P before rounding);
// 5. O += P V, each group owning O tiles.
// The softmax state and O are f32; only the operands of the products are f16 (f32 inputs are
// rounded: f16 tolerance). A row that may attend no key: zeros and lse = -Infinity (or the sink).
// Constants (src/ops/flash_attention.ts): TILE_M, TILE_N, TILE_K (dividing BR, BC, KC and VG), VG
// (value dims per workgroup, a multiple of 32: Dv is split over workgroups when O [BR, Dv] would
// not fit workgroup memory), MASK, LSE, MODS, BLOCKS, KEY_RULES (ruleConstants), the element
// storage helpers of src/f16.ts (Stored, wordOf, unpackAt, storeOut).

alias Input = Stored;

const WG = 128u;
// rows per workgroup, keys per tile, dims of q / k per staged chunk
const BR = 32u;
const BC = 32u;
const KC = 32u;
// results: S [BR][BC] from 0, O [BR][VG] from O_AT
const O_AT = BR * BC;
var<workgroup> results: array<f32, BR * BC + BR * VG>;
// operands: q [BR][KC] from 0 and k^T [KC][BC] from K_AT; or P [BR][BC] from 0 and v [BC][VG] from
// V_AT (BR * KC + KC * BC <= BR * BC + BC * VG since VG >= 32)
const K_AT = BR * KC;
const V_AT = BR * BC;
var<workgroup> operands: array<Operand, BR * BC + BC * VG>;
// per row of the block: running max, sum, alpha (then 1 / l), keys [lo, hi) and causal shift
var<workgroup> rowM: array<f32, BR>;
var<workgroup> rowL: array<f32, BR>;
var<workgroup> rowAlpha: array<f32, BR>;
var<workgroup> rowLo: array<u32, BR>;
var<workgroup> rowHi: array<u32, BR>;
var<workgroup> rowShift: array<i32, BR>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
  inv: TileInvocation,
) {
  let flat = workgroupIndex(wid);
  // uniform: every invocation of a workgroup returns or none does
  if (flat >= p.workgroups) {
    return;
  }
  let group = tileGroup(inv);
  let groups = tileGroups(inv);
  let vgroups = (p.Dv + VG - 1u) / VG;
  let blocks = (p.Lq + BR - 1u) / BR;
  let dv0 = (flat % vgroups) * VG;
  let rest = flat / vgroups;
  let row0 = (rest % blocks) * BR;
  let h = (rest / blocks) % p.Hq;
  let b = rest / (blocks * p.Hq);
  let inUse = keysInUse(b);
  let rowLast = min(row0 + BR, p.Lq) - 1u;
  let hk = h / (p.Hq / p.Hkv);
  let qBase = b * p.q_b + h * p.q_h + row0 * p.q_l;
  let kBase = b * p.k_b + hk * p.k_h;
  let vBase = b * p.v_b + hk * p.v_h + dv0;

  if (t < BR) {
    var kr = KeyRange(0u, 0u, 0);
    if (row0 + t < p.Lq) {
      kr = keyRange(inUse, row0 + t);
    }
    rowLo[t] = kr.lo;
    rowHi[t] = kr.hi;
    rowShift[t] = kr.shift;
    rowM[t] = MASKED;
    rowL[t] = 0.0;
  }
  for (var e = t; e < BR * VG; e += WG) {
    results[O_AT + e] = 0.0;
  }
  // Keys some row of the block may attend: the loop's bounds (uniform over the workgroup).
  let keys = blockKeys(inUse, row0, rowLast);
  for (var j0 = keys.x; j0 < keys.y; j0 += BC) {
    if (BLOCKS != 0u && !blockStates(b, h, row0, rowLast, j0, BC).x) {
      continue;
    }
    // 1. S = Q K^T
    for (var c0 = 0u; c0 < p.D; c0 += KC) {
      workgroupBarrier();
      for (var e = t; e < BR * KC; e += WG) {
        let d = c0 + e % KC;
        var x = 0.0;
        if (row0 + e / KC < p.Lq && d < p.D) {
          x = unpackAt(q[wordOf(qBase + (e / KC) * p.q_l + d)], qBase + (e / KC) * p.q_l + d);
        }
        operands[e] = toOperand(x);
      }
      for (var e = t; e < BC * KC; e += WG) {
        let j = j0 + e / KC;
        let d = c0 + e % KC;
        var x = 0.0;
        if (j < p.Lk && d < p.D) {
          x = unpackAt(k[wordOf(kBase + j * p.k_l + d)], kBase + j * p.k_l + d);
        }
        operands[K_AT + (e % KC) * BC + e / KC] = toOperand(x);
      }
      workgroupBarrier();
      for (var tile = group; tile < (BR / TILE_M) * (BC / TILE_N); tile += groups) {
        let at = (tile / (BC / TILE_N)) * TILE_M * BC + (tile % (BC / TILE_N)) * TILE_N;
        var c = zeroResult();
        if (c0 != 0u) {
          c = loadResult(at, BC);
        }
        for (var kk = 0u; kk < KC; kk += TILE_K) {
          let a = loadLeft((tile / (BC / TILE_N)) * TILE_M * KC + kk, KC);
          c = mulAcc(a, loadRight(K_AT + kk * BC + (tile % (BC / TILE_N)) * TILE_N, BC), c);
        }
        storeResult(c, at, BC);
      }
    }
    workgroupBarrier();
    // 2. scores
    for (var e = t; e < BR * BC; e += WG) {
      let r = e / BC;
      let j = j0 + e % BC;
      var s = MASKED;
      if (j >= rowLo[r] && j < rowHi[r]) {
        var bias = 0.0;
        if (perKeyRules()) {
          bias = ruleBias(b, h, row0 + r, j, rowShift[r]);
        }
        var sc = results[e] * p.scale;
        if (MODS) {
          sc = modScore(sc, b, h, row0 + r, j);
        }
        s = select(MASKED, sc + bias, bias > MASKED);
      }
      results[e] = s;
    }
    workgroupBarrier();
    // 3. running max
    if (t < BR) {
      var tileMax = MASKED;
      for (var j = 0u; j < BC; j++) {
        tileMax = max(tileMax, results[t * BC + j]);
      }
      let mNew = max(rowM[t], tileMax);
      rowAlpha[t] = exp(rowM[t] - mNew);
      rowM[t] = mNew;
    }
    workgroupBarrier();
    // 4. P (a masked key gives 0; a NaN score stays NaN), O *= alpha, v staged
    for (var e = t; e < BR * BC; e += WG) {
      let s = results[e];
      let pe = select(0.0, exp(s - rowM[e / BC]), s != MASKED);
      results[e] = pe;
      operands[e] = toOperand(pe);
    }
    for (var e = t; e < BR * VG; e += WG) {
      results[O_AT + e] *= rowAlpha[e / VG];
    }
    for (var e = t; e < BC * VG; e += WG) {
      let j = j0 + e / VG;
      var x = 0.0;
      if (j < p.Lk && dv0 + e % VG < p.Dv) {
        x = unpackAt(v[wordOf(vBase + j * p.v_l + e % VG)], vBase + j * p.v_l + e % VG);
      }
      operands[V_AT + e] = toOperand(x);
    }
    workgroupBarrier();
    if (t < BR) {
      var l = rowL[t] * rowAlpha[t];
      for (var j = 0u; j < BC; j++) {
        l += results[t * BC + j];
      }
      rowL[t] = l;
    }
    // 5. O += P V
    for (var tile = group; tile < (BR / TILE_M) * (VG / TILE_N); tile += groups) {
      let at = O_AT + (tile / (VG / TILE_N)) * TILE_M * VG + (tile % (VG / TILE_N)) * TILE_N;
      var c = loadResult(at, VG);
      for (var kk = 0u; kk < BC; kk += TILE_K) {
        let a = loadLeft((tile / (VG / TILE_N)) * TILE_M * BC + kk, BC);
        c = mulAcc(a, loadRight(V_AT + kk * VG + (tile % (VG / TILE_N)) * TILE_N, VG), c);
      }
      storeResult(c, at, VG);
    }
  }

  // The sink joins the denominator; rowAlpha becomes the factor of O. (l == 0 rather than l > 0,
  // so that a NaN sum stays NaN.)
  workgroupBarrier();
  if (t < BR && row0 + t < p.Lq) {
    let sink = sinkLogit(h);
    let m = rowM[t];
    let mAll = max(m, sink);
    let alpha = exp(m - mAll);
    let l = rowL[t] * alpha + select(0.0, exp(sink - mAll), p.sinks_at != RULE_NONE);
    rowAlpha[t] = select(alpha / l, 0.0, l == 0.0);
    if (LSE && dv0 == 0u) {
      lse[(b * p.Hq + h) * p.Lq + row0 + t] = select(bitcast<u32>(mAll + log(l)), NEG_INF_BITS, l == 0.0);
    }
  }
  workgroupBarrier();
  for (var e = t; e < BR * VG; e += WG) {
    let r = e / VG;
    let d = dv0 + e % VG;
    if (row0 + r < p.Lq && d < p.Dv) {
      storeOut(b * p.o_b + h * p.o_h + (row0 + r) * p.o_l + d, results[O_AT + e] * rowAlpha[r]);
    }
  }
}
