// workgroupSum and workgroupMax for workgroups of one invocation (WG = 1; CPU adapters): v itself,
// with no barrier. A barrier anywhere in a module makes SwiftShader switch between all of a
// workgroup's invocations at each one, which made the per-row kernels (norms, softmax backward,
// cross-entropy) several times slower there.
fn workgroupSum(t: u32, v: f32) -> f32 {
  return v;
}

fn workgroupMax(t: u32, v: f32) -> f32 {
  return v;
}
