// Gradient through linear's activation: dz = dy * act'(z), z the pre-activation (x Wᵀ + bias),
// elementwise over [total]. ACT 1: ReLU (derivative 0 at z = 0, as PyTorch); 2: GELU, tanh form.
// Constants (src/ops/linear_backward.ts): WG, ACT. Uniforms: total.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> dz: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let v = z[e];
  var d = 0.0;
  if (ACT == 1u) {
    d = select(0.0, 1.0, v > 0.0);
  } else {
    let c = 0.7978845608;
    // clamped as in the forward: tanh of a large f32 argument may be NaN on some backends
    let th = tanh(clamp(c * (v + 0.044715 * v * v * v), -15.0, 15.0));
    d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * c * (1.0 + 0.134145 * v * v);
  }
  dz[e] = dy[e] * d;
}
