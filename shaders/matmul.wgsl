// Batched GEMM: c = alpha * op(a) op(b), op(a) [M, K], op(b) [K, N] -> c [batch, M, N].
// a is [.., M, K] row-major, or [.., K, M] when TRANS_A; b is [.., K, N], or [.., N, K] when TRANS_B.
// Each workgroup computes one BM x BN tile of c: it stages BK-deep slices of op(a) and op(b) in
// workgroup memory, laid out [k][m] and [k][n] so that the inner loop reads vec4s along m and n,
// and each invocation accumulates an 8 x 8 register tile.
// Constants (src/ops/matmul.ts): BM, BN (multiples of 8), BK (a multiple of 4),
// TRANS_A, TRANS_B, VA and VB (elements per global load of a and b: 4 when the operand's
// contiguous dim is a multiple of 4, else 1), MAX_BATCH_DIMS, and the aliases AElem and BElem
// (vec4<f32> for 4, f32 for 1). Uniforms: M, N, K, tilesN, tilesM, batchDims, alpha, and batch:
// the merged batch dims of c, innermost first, as (size, a stride, b stride, unused) in matrices.

@group(0) @binding(1) var<storage, read> a: array<AElem>;
@group(0) @binding(2) var<storage, read> b: array<BElem>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Each invocation computes an 8 x 8 register tile of c.
const WX = BN / 8u;
const WY = BM / 8u;
const WG = WX * WY;

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
    var v = vec4<f32>(0.0);
    // A multiple-of-4 contiguous dim makes a vec4 load all in or all out.
    if (k0 + km.x < p.K && m0 + km.y < p.M) {
      let e = select((m0 + km.y) * p.K + k0 + km.x, (k0 + km.x) * p.M + m0 + km.y, TRANS_A);
      v = vec4<f32>(a[(base + e) / VA]);
    }
    let at = km.x * (BM / 4u) + km.y / 4u;
    if (VA == 1u) {
      aTile[at][km.y % 4u] = v.x;
    } else if (TRANS_A) {
      aTile[at] = v;
    } else {
      // four consecutive k of one m
      aTile[at][km.y % 4u] = v.x;
      aTile[at + BM / 4u][km.y % 4u] = v.y;
      aTile[at + BM / 2u][km.y % 4u] = v.z;
      aTile[at + 3u * BM / 4u][km.y % 4u] = v.w;
    }
  }
}

// bTile[k][n] = op(b)[k0 + k, n0 + n], zero outside op(b).
fn stageB(base: u32, n0: u32, k0: u32, t: u32) {
  for (var l = t; l < BK * BN / VB; l += WG) {
    let kn = loadCoord(l, BN, VB, !TRANS_B);
    var v = vec4<f32>(0.0);
    if (k0 + kn.x < p.K && n0 + kn.y < p.N) {
      let e = select((k0 + kn.x) * p.N + n0 + kn.y, (n0 + kn.y) * p.K + k0 + kn.x, TRANS_B);
      v = vec4<f32>(b[(base + e) / VB]);
    }
    let bt = kn.x * (BN / 4u) + kn.y / 4u;
    if (VB == 1u) {
      bTile[bt][kn.y % 4u] = v.x;
    } else if (!TRANS_B) {
      bTile[bt] = v;
    } else {
      // four consecutive k of one n
      bTile[bt][kn.y % 4u] = v.x;
      bTile[bt + BN / 4u][kn.y % 4u] = v.y;
      bTile[bt + BN / 2u][kn.y % 4u] = v.z;
      bTile[bt + 3u * BN / 4u][kn.y % 4u] = v.w;
    }
  }
}

// The 4 x 4 block a ⊗ b: column i is a[i] * b.
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(a.x * b, a.y * b, a.z * b, a.w * b);
}

@compute @workgroup_size(WX, WY)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  // (tile column, tile row, batch), tile columns fastest
  let tile = workgroupIndex(wid);
  if (tile >= p.workgroups) {
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

  // The invocation's 8 x 8 register tile is four 4 x 4 blocks, rows r * BM / 2 + 4 * lid.y and
  // columns q * BN / 2 + 4 * lid.x (r, q in 0..1): neighbouring invocations read neighbouring vec4s.
  // Block cRQ holds row i of its block in column i.
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stageA(aBase, m0, k0, t);
    stageB(bBase, n0, k0, t);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = aTile[kk * (BM / 4u) + lid.y];
      let a1 = aTile[kk * (BM / 4u) + BM / 8u + lid.y];
      let b0 = bTile[kk * (BN / 4u) + lid.x];
      let b1 = bTile[kk * (BN / 4u) + BN / 8u + lid.x];
      c00 += outer(a0, b0);
      c01 += outer(a0, b1);
      c10 += outer(a1, b0);
      c11 += outer(a1, b1);
    }
    workgroupBarrier();
  }

  let blocks = array<mat4x4<f32>, 4>(c00, c01, c10, c11);
  for (var blk = 0u; blk < 4u; blk++) {
    for (var i = 0u; i < 4u; i++) {
      let m = m0 + (blk / 2u) * (BM / 2u) + lid.y * 4u + i;
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + (blk % 2u) * (BN / 2u) + lid.x * 4u + j;
        if (m < p.M && n < p.N) {
          c[cBase + m * p.N + n] = p.alpha * blocks[blk][i][j];
        }
      }
    }
  }
}
