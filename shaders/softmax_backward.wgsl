// Backward of softmax over the last axis: y, dy [rows, n] -> dx [rows, n],
// dx = scale * y * (dy - Σ_j dy_j y_j), one workgroup per row. Masked entries (y = 0) get 0.
// Constants (src/ops/softmax_backward.ts): WG. Uniforms: n, scale. Appended: workgroup_sum.wgsl (or
// workgroup_sum_single.wgsl with WG = 1 on CPU adapters).

@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = workgroupIndex(wg);
  if (row >= p.workgroups) {
    return;
  }
  let base = row * p.n;
  var s = 0.0;
  for (var j = t; j < p.n; j += WG) {
    s += dy[base + j] * y[base + j];
  }
  let yDotDy = workgroupSum(t, s);
  for (var j = t; j < p.n; j += WG) {
    dx[base + j] = p.scale * y[base + j] * (dy[base + j] - yDotDy);
  }
}
