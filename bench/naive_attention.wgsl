// The benchmark's floor: attention as a first WGSL kernel would write it. One invocation per query
// row reads its keys and values straight from storage (no tiles, no shared memory) and keeps an
// online softmax in f32. q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D] -> out [B, Hq, Lq, D].
// The bench prepends `const D: u32` (the head dim).

struct Params {
  B: u32, Hq: u32, Hkv: u32, Lq: u32,
  Lk: u32, causal: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let h = gid.y;
  let b = gid.z;
  if (i >= p.Lq) {
    return;
  }
  let row = (b * p.Hq + h) * p.Lq + i;
  let kv0 = (b * p.Hkv + h / (p.Hq / p.Hkv)) * p.Lk;

  var qr: array<f32, D>;
  for (var d = 0u; d < D; d++) {
    qr[d] = q[row * D + d] * p.scale;
  }
  // Causal, bottom-right: key j is allowed iff j <= i + Lk - Lq.
  var end = i32(p.Lk);
  if (p.causal != 0u) {
    end = clamp(i32(i) + i32(p.Lk) - i32(p.Lq) + 1, 0, i32(p.Lk));
  }
  var acc: array<f32, D>;
  var m = -3.0e38;
  var l = 0.0;
  for (var j = 0u; j < u32(end); j++) {
    let kRow = (kv0 + j) * D;
    var s = 0.0;
    for (var d = 0u; d < D; d++) {
      s += qr[d] * k[kRow + d];
    }
    let mNew = max(m, s);
    let alpha = exp(m - mNew);
    let pj = exp(s - mNew);
    l = l * alpha + pj;
    for (var d = 0u; d < D; d++) {
      acc[d] = acc[d] * alpha + pj * v[kRow + d];
    }
    m = mNew;
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var d = 0u; d < D; d++) {
    out[row * D + d] = acc[d] * inv;
  }
}
