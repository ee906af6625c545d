// Sum over rows: x [rows, F] -> out [F], one invocation per column adding the rows in order
// (deterministic, no atomics): the parameter-gradient pass of norms and linear biases.
// Constants: WG. Uniforms: rows, F.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let f = workgroupIndex(wg) * WG + t;
  if (f >= p.F) {
    return;
  }
  var sum = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    sum += x[r * p.F + f];
  }
  out[f] = sum;
}
