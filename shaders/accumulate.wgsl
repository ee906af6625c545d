// Gradient accumulation: acc[e] += x[e] over [total].
// Constants: WG. Uniforms: total.

@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  acc[e] += x[e];
}
