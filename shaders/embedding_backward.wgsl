// Gradient of the embedding with respect to its table, without atomics: dOut [rows, E] ->
// dTable [V, E], element (v, f) = the sum over n (in order) of dOut[n, f] where ids[n] = v.
// One invocation per element of dTable scans all ids: O(V · E · rows) comparisons, deterministic.
// Constants (src/ops/embedding.ts): WG. Uniforms: total (V * E), E, rows.

@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> dOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> dTable: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let v = i32(e / p.E);
  let f = e % p.E;
  var sum = 0.0;
  for (var n = 0u; n < p.rows; n++) {
    if (ids[n] == v) {
      sum += dOut[n * p.E + f];
    }
  }
  dTable[e] = sum;
}
