// Token embedding (gather): ids [rows] (i32), table [V, E] -> out [rows, E], row n = table[ids[n]].
// One invocation per output element. An id outside [0, V) gives a row of NaN (no bounds errors on
// a GPU; NaN makes the bad id visible downstream).
// Constants (src/ops/embedding.ts): WG. Uniforms: total (rows * E), V, E.

@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let id = ids[e / p.E];
  if (id < 0 || u32(id) >= p.V) {
    out[e] = nan();
    return;
  }
  out[e] = table[u32(id) * p.E + e % p.E];
}

// A NaN made at run time (a constant NaN is a shader-creation error).
fn nan() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
