// Batched GEMM: c = alpha * op(a) op(b), op(a) [M, K], op(b) [K, N] -> c [batch, M, N].
// a is [.., M, K] row-major, or [.., K, M] when TRANS_A; b is [.., K, N], or [.., N, K] when TRANS_B.
// Each workgroup computes one BM x BN tile of c: it stages BK-deep slices of a and b in workgroup
// memory (as [k][m] and [k][n], so that the inner loop reads vec4 along m and n) and each
// invocation accumulates a TM x TN register tile.
// Prepended by the op (see src/ops/matmul.ts): BM, BN, BK, TM, TN (TM and TN multiples of 4),
// TRANS_A, TRANS_B, VA and VB (elements per global load of a and b: 4 when the operand's contiguous
// dim is a multiple of 4, else 1), MAX_BATCH_DIMS, and the aliases AElem and BElem (vec4<f32> for
// 4, f32 for 1).

struct Params {
  M: u32, N: u32, K: u32, tilesN: u32,
  tilesM: u32, tiles: u32, batchDims: u32, alpha: f32,
  // merged batch dims of c, innermost first: (size, a stride, b stride, unused), strides in matrices
  batch: array<vec4<u32>, MAX_BATCH_DIMS>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<AElem>;
@group(0) @binding(2) var<storage, read> b: array<BElem>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const WX = BN / TN;
const WY = BM / TM;
const WG = WX * WY;
const TM4 = TM / 4u;
const TN4 = TN / 4u;

var<workgroup> aTile: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> bTile: array<vec4<f32>, BK * BN / 4u>;

// Tile coordinates (k, x) of the first element of load l, for a BK x BX operand tile read V
// elements at a time along its contiguous dim (x when xContig, else k). Consecutive loads touch
// consecutive addresses.
fn loadCoord(l: u32, BX: u32, V: u32, xContig: bool) -> vec2<u32> {
  if (xContig) {
    return vec2<u32>(l / (BX / V), (l % (BX / V)) * V);
  }
  return vec2<u32>((l % (BK / V)) * V, l / (BK / V));
}

// aTile[k][m] = op(a)[m0 + m, k0 + k], zero outside op(a).
fn stageA(base: u32, m0: u32, k0: u32, t: u32) {
  for (var l = t; l < BK * BM / VA; l += WG) {
    let km = loadCoord(l, BM, VA, TRANS_A);
    let k = k0 + km.x;
    let m = m0 + km.y;
    var v = vec4<f32>(0.0);
    // A multiple-of-4 contiguous dim makes a vec4 load all in or all out.
    if (k < p.K && m < p.M) {
      v = vec4<f32>(a[(base + select(m * p.K + k, k * p.M + m, TRANS_A)) / VA]);
    }
    for (var i = 0u; i < VA; i++) {
      let kk = km.x + select(i, 0u, TRANS_A);
      let mm = km.y + select(0u, i, TRANS_A);
      aTile[kk * (BM / 4u) + mm / 4u][mm % 4u] = v[i];
    }
  }
}

// bTile[k][n] = op(b)[k0 + k, n0 + n], zero outside op(b).
fn stageB(base: u32, n0: u32, k0: u32, t: u32) {
  for (var l = t; l < BK * BN / VB; l += WG) {
    let kn = loadCoord(l, BN, VB, !TRANS_B);
    let k = k0 + kn.x;
    let n = n0 + kn.y;
    var v = vec4<f32>(0.0);
    if (k < p.K && n < p.N) {
      v = vec4<f32>(b[(base + select(k * p.N + n, n * p.K + k, TRANS_B)) / VB]);
    }
    for (var i = 0u; i < VB; i++) {
      let kk = kn.x + select(0u, i, TRANS_B);
      let nn = kn.y + select(i, 0u, TRANS_B);
      bTile[kk * (BN / 4u) + nn / 4u][nn % 4u] = v[i];
    }
  }
}

@compute @workgroup_size(WX, WY)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  // The grid is folded to stay under maxComputeWorkgroupsPerDimension; unfold it to
  // (tile column, tile row, batch), tile columns fastest.
  let tile = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
  if (tile >= p.tiles) {
    return;
  }
  let n0 = (tile % p.tilesN) * BN;
  let m0 = ((tile / p.tilesN) % p.tilesM) * BM;
  var rest = tile / (p.tilesN * p.tilesM);
  let cBase = rest * p.M * p.N;
  var aMat = 0u;
  var bMat = 0u;
  for (var d = 0u; d < p.batchDims; d++) {
    let dim = p.batch[d];
    let coord = rest % dim.x;
    rest /= dim.x;
    aMat += coord * dim.y;
    bMat += coord * dim.z;
  }
  let aBase = aMat * p.M * p.K;
  let bBase = bMat * p.K * p.N;

  var acc: array<vec4<f32>, TM * TN4>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stageA(aBase, m0, k0, t);
    stageB(bBase, n0, k0, t);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var ar: array<vec4<f32>, TM4>;
      for (var r = 0u; r < TM4; r++) {
        ar[r] = aTile[kk * (BM / 4u) + lid.y * TM4 + r];
      }
      var br: array<vec4<f32>, TN4>;
      for (var q = 0u; q < TN4; q++) {
        br[q] = bTile[kk * (BN / 4u) + lid.x * TN4 + q];
      }
      for (var i = 0u; i < TM; i++) {
        let x = ar[i / 4u][i % 4u];
        for (var q = 0u; q < TN4; q++) {
          acc[i * TN4 + q] = fma(vec4<f32>(x), br[q], acc[i * TN4 + q]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y * TM + i;
    for (var j = 0u; j < TN; j++) {
      let n = n0 + lid.x * TN + j;
      if (m < p.M && n < p.N) {
        c[cBase + m * p.N + n] = p.alpha * acc[i * TN4 + j / 4u][j % 4u];
      }
    }
  }
}
