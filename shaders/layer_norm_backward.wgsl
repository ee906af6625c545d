// Backward of LayerNorm (CENTRED) or RMSNorm over the last axis, per row: x, dy [rows, F] ->
// dx [rows, F] and prod [rows, F] = dy * xhat, whose column sums (column_sum.wgsl, a second pass)
// give dweight. With g = dy * weight and xhat = (x - mean) * rstd:
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), mean(g) dropped for RMSNorm.
// The row statistics are recomputed as the forward computes them. Rows as in layer_norm.wgsl.
// Constants (src/ops/layer_norm.ts): WG, CENTRED. Uniforms: F, eps, rows. Appended:
// workgroup_sum.wgsl or workgroup_sum_single.wgsl.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> prod: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = rowOf(workgroupIndex(wg), t);
  let lane = laneOf(t);
  if (row >= p.rows) {
    return;
  }
  let base = row * p.F;
  let n = f32(p.F);
  var mean = 0.0;
  if (CENTRED) {
    var s = 0.0;
    for (var f = lane; f < p.F; f += LANES) {
      s += x[base + f];
    }
    mean = workgroupSum(t, s) / n;
  }
  var q = 0.0;
  for (var f = lane; f < p.F; f += LANES) {
    let d = x[base + f] - mean;
    q += d * d;
  }
  let rstd = inverseSqrt(workgroupSum(t, q) / n + p.eps);
  var sg = 0.0;
  var sgx = 0.0;
  for (var f = lane; f < p.F; f += LANES) {
    let xhat = (x[base + f] - mean) * rstd;
    let g = dy[base + f] * weight[f];
    sg += g;
    sgx += g * xhat;
    prod[base + f] = dy[base + f] * xhat;
  }
  var meanG = 0.0;
  if (CENTRED) {
    meanG = workgroupSum(t, sg) / n;
  }
  let meanGX = workgroupSum(t, sgx) / n;
  for (var f = lane; f < p.F; f += LANES) {
    let xhat = (x[base + f] - mean) * rstd;
    let g = dy[base + f] * weight[f];
    dx[base + f] = rstd * (g - meanG - xhat * meanGX);
  }
}
