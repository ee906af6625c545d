// LayerNorm (CENTRED) or RMSNorm over the last axis: x [rows, F] -> out [rows, F],
// out = (x - mean) * rstd * weight (+ bias), rstd = 1 / sqrt(mean((x - mean)²) + eps), mean = 0
// for RMSNorm. Rows on invocations by rowOf, laneOf and LANES, sums through workgroupSum (appended:
// workgroup_sum.wgsl, a workgroup per row, or workgroup_sum_single.wgsl on CPU adapters, an
// invocation per row). Constants (src/ops/layer_norm.ts): WG, CENTRED, BIAS. Uniforms: F, eps, rows.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = rowOf(workgroupIndex(wg), t);
  let lane = laneOf(t);
  if (row >= p.rows) {
    return;
  }
  let base = row * p.F;
  var mean = 0.0;
  if (CENTRED) {
    var s = 0.0;
    for (var f = lane; f < p.F; f += LANES) {
      s += x[base + f];
    }
    mean = workgroupSum(t, s) / f32(p.F);
  }
  var q = 0.0;
  for (var f = lane; f < p.F; f += LANES) {
    let d = x[base + f] - mean;
    q += d * d;
  }
  let rstd = inverseSqrt(workgroupSum(t, q) / f32(p.F) + p.eps);
  for (var f = lane; f < p.F; f += LANES) {
    var y = (x[base + f] - mean) * rstd * weight[f];
    if (BIAS) {
      y += bias[f];
    }
    out[base + f] = y;
  }
}
