// Rotary position embedding: x [B, H, L, D] -> out [B, H, L, D], one invocation per element.
// The first 2 * half features are rotated in pairs, pair i of a row at position pos by the angle
// whose cosine and sine are cos[pos, i] and sin[pos, i]; the rest are copied. The tables are the
// caller's (onnxruntime's cos_cache / sin_cache) or computed by the op in float64 from base and
// offset (WGSL's cos and sin are loose for large angles).
// Row l of batch b is at position positions[b * L + l] (ids 2), positions[l] (ids 1), or
// offset + l (ids 0).
// 'half' style (STYLE 0) pairs feature i with i + half; 'interleaved' (STYLE 1) pairs 2i with 2i+1.
// Constants (src/ops/rope.ts): WG, STYLE, and the element helpers of src/f16.ts. Uniforms: total
// (elements), H, L, D, half, offset, ids, sin_sign (-1: the inverse rotation, rope's gradient).

@group(0) @binding(1) var<storage, read> x: array<Stored>;
// [positions, half] each
@group(0) @binding(2) var<storage, read> cosTable: array<f32>;
@group(0) @binding(3) var<storage, read> sinTable: array<f32>;
// [B, L] or [L] position ids (ids 2 or 1)
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;

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
  let half = p.half;
  if (d >= 2u * half) {
    storeOut(e, value);
    return;
  }
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
  let row = e / p.D;
  let l = row % p.L;
  var pos = p.offset + l;
  if (p.ids == 1u) {
    pos = positions[l];
  } else if (p.ids == 2u) {
    pos = positions[(row / (p.H * p.L)) * p.L + l];
  }
  let at = pos * half + pair;
  storeOut(e, value * cosTable[at] + p.sin_sign * sign * load(partner) * sinTable[at]);
}
