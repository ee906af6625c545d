// Attention backward, calls split into units (src/ops/attention_backward.ts recordSplit): a
// gradient block summed in f32 over its units, stored into the gradient tensor in its storage.
// acc [count] (f32) -> elements [at, at + count) of the bound range of the gradient, through
// `store(e, x)` (generated with the range's binding 2: packed f16 ORs into zeroed words).
// Uniforms: count, at. Constants: WG.

@group(0) @binding(1) var<storage, read> acc: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wid) * WG + t;
  if (e >= p.count) {
    return;
  }
  store(p.at + e, acc[e]);
}
