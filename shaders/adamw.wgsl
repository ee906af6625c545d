// One AdamW step (torch.optim.AdamW), in place, elementwise over a parameter [total]:
// p ← p · (1 − lr·wd); m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
// p ← p − stepSize · m / (sqrt(v) / bc2Sqrt + eps), stepSize = lr / (1 − β1^t),
// bc2Sqrt = sqrt(1 − β2^t) (both computed in float64 by the op).
// Constants (src/ops/adamw.ts): WG. Uniforms: total, decay (1 − lr·wd), beta1, beta2, eps,
// stepSize, bc2Sqrt.

@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let g = grad[e];
  let mNew = p.beta1 * m[e] + (1.0 - p.beta1) * g;
  let vNew = p.beta2 * v[e] + (1.0 - p.beta2) * g * g;
  m[e] = mNew;
  v[e] = vNew;
  param[e] = param[e] * p.decay - p.stepSize * mNew / (sqrt(vNew) / p.bc2Sqrt + p.eps);
}
