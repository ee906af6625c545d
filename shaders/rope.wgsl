// Rotary position embedding: x [B, H, L, D] -> out [B, H, L, D], one invocation per element.
// The first `dims` features (even) are rotated in pairs, pair i of row l by the angle
// (offset + l) * base^(-2i / dims), and the rest are copied. The op computes the cosines and sines
// in float64 (WGSL's cos and sin are loose for large angles).
// 'half' style (STYLE 0) pairs feature i with i + dims/2; 'interleaved' (STYLE 1) pairs 2i with 2i+1.
// Constants (src/ops/rope.ts): WG, STYLE, and the element helpers of src/f16.ts. Uniforms: total
// (elements), L, D, dims.

@group(0) @binding(1) var<storage, read> x: array<Stored>;
// [L, dims / 2]: (cos, sin) of the angle of row l, pair i
@group(0) @binding(2) var<storage, read> rotation: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<OutStored>;

fn load(e: u32) -> f32 {
  return unpackAt(x[wordOf(e)], e);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wg) * WG + t;
  if (e >= p.total) {
    return;
  }
  let d = e % p.D;
  let value = load(e);
  if (d >= p.dims) {
    storeOut(e, value);
    return;
  }
  let half = p.dims / 2u;
  var pair: u32;
  var partner: u32; // element index of the other member of the pair
  var sign: f32; // the partner's coefficient of sin: -1 for the first member, +1 for the second
  if (STYLE == 0u) {
    pair = d % half;
    partner = select(e - half, e + half, d < half);
    sign = select(1.0, -1.0, d < half);
  } else {
    pair = d / 2u;
    partner = select(e - 1u, e + 1u, d % 2u == 0u);
    sign = select(1.0, -1.0, d % 2u == 0u);
  }
  let cs = rotation[((e / p.D) % p.L) * half + pair];
  storeOut(e, value * cs.x + sign * load(partner) * cs.y);
}
