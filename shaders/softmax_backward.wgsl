// Backward of softmax over the last axis: y, dy [rows, n] -> dx [rows, n],
// dx = scale * y * (dy - Σ_j dy_j y_j). Masked entries (y = 0) get 0. Rows on invocations as
// workgroup_sum.wgsl (a workgroup per row) or workgroup_sum_single.wgsl (CPU adapters) lays them.
// Constants (src/ops/softmax_backward.ts): WG. Uniforms: n, scale, rows.

@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = rowOf(workgroupIndex(wg), t);
  let lane = laneOf(t);
  if (row >= p.rows) {
    return;
  }
  let base = row * p.n;
  var s = 0.0;
  for (var j = lane; j < p.n; j += LANES) {
    s += dy[base + j] * y[base + j];
  }
  let yDotDy = workgroupSum(t, s);
  for (var j = lane; j < p.n; j += LANES) {
    dx[base + j] = p.scale * y[base + j] * (dy[base + j] - yDotDy);
  }
}
