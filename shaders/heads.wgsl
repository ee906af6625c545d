// Head split and merge (permutations): SPLIT: x [B, L, H * d] -> out [B, H, L, d];
// otherwise x [B, H, L, d] -> out [B, L, H * d]. Each is the other's backward.
// One invocation per element of out. Constants (src/ops/heads.ts): WG, SPLIT. Uniforms: total,
// L, H, d.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let E = p.H * p.d;
  // (b, l, h, i) of the element in the [B, L, H, d] view
  var b: u32;
  var l: u32;
  var h: u32;
  let i = e % p.d;
  if (SPLIT) {
    // e indexes [B, H, L, d]
    l = (e / p.d) % p.L;
    h = (e / (p.d * p.L)) % p.H;
    b = e / (p.d * p.L * p.H);
    out[e] = x[(b * p.L + l) * E + h * p.d + i];
  } else {
    // e indexes [B, L, H * d]
    h = (e / p.d) % p.H;
    l = (e / E) % p.L;
    b = e / (E * p.L);
    out[e] = x[((b * p.H + h) * p.L + l) * p.d + i];
  }
}
