// Softmax over the last axis: x [rows, n] -> y [rows, n], one workgroup per row. Each invocation
// keeps an online (max, sum) over a strided share of the row, the workgroup merges them in a tree,
// and a second sweep writes exp(v - max) / sum. Masked entries (-Infinity in x, or causal) get 0;
// a row with nothing left is all zeros.
// Constants (src/ops/softmax.ts): WG (invocations per workgroup, a power of two). Uniforms: n
// (row length), Lq (rows per [Lq, Lk] matrix, for causal), causal, scale. Appended: masked.wgsl.

// f32 bits, so that -Infinity is recognised by its bits rather than by arithmetic
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> maxes: array<f32, WG>;
var<workgroup> sums: array<f32, WG>;

// The scaled entry j of the row at `base`, or MASKED.
fn entry(base: u32, j: u32, limit: i32) -> f32 {
  let bits = x[base + j];
  if (bits == NEG_INF_BITS || (p.causal != 0u && i32(j) > limit)) {
    return MASKED;
  }
  return max(bitcast<f32>(bits) * p.scale, MASKED);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let row = workgroupIndex(wid);
  if (row >= p.workgroups) {
    return;
  }
  let base = row * p.n;
  // Causal, bottom-right: key j is allowed for query i iff j <= i + Lk - Lq.
  let limit = i32(row % p.Lq) + i32(p.n) - i32(p.Lq);

  var m = MASKED;
  var s = 0.0;
  for (var j = t; j < p.n; j += WG) {
    let v = entry(base, j, limit);
    if (v > MASKED) {
      let mNew = max(m, v);
      s = s * exp(m - mNew) + exp(v - mNew);
      m = mNew;
    }
  }
  maxes[t] = m;
  sums[t] = s;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (t < stride) {
      let m2 = maxes[t + stride];
      let mNew = max(m, m2);
      s = s * exp(m - mNew) + sums[t + stride] * exp(m2 - mNew);
      m = mNew;
      maxes[t] = m;
      sums[t] = s;
    }
  }
  workgroupBarrier();
  let rowMax = maxes[0];
  let inv = select(0.0, 1.0 / sums[0], sums[0] > 0.0);
  for (var j = t; j < p.n; j += WG) {
    let v = entry(base, j, limit);
    y[base + j] = select(0.0, exp(v - rowMax) * inv, v > MASKED);
  }
}
