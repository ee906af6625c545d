// Linear projection with bias, reading and writing head layouts directly (PyTorch's Linear:
// y = x Wᵀ + b). Row r = (b, l) of x has K features, y has N, w is [N, K], bias [N].
// x is [B, Hin, L, K / Hin] (Hin = 1: [B, L, K]), so that heads merge on read;
// y is [B, Hout, L, N / Hout] (Hout = 1: [B, L, N]), so that heads split on write.
// Then, optionally, an activation (ACT 1: ReLU, 2: GELU, tanh form) and a residual [B, L, N] added.
// One invocation per four consecutive elements of a row of y (x read once for the four); sums in
// f32 whatever the storage. x and w are read four elements at a time (V = 4) when a head's
// features are a multiple of 4, else one (V = 1).
// Constants (src/ops/linear.ts): WG, BIAS, ACT, RESIDUAL, and the element and input helpers of
// src/f16.ts (Input, V, inputIndex, inputAt). Uniforms: rows (B * L), L, K, N, Hin, Hout.

@group(0) @binding(1) var<storage, read> x: array<Input>;
@group(0) @binding(2) var<storage, read> w: array<Input>;
@group(0) @binding(3) var<storage, read> bias: array<Stored>;
@group(0) @binding(4) var<storage, read> residual: array<Stored>;
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;

// Element index of feature f of row r in a [B, H, L, F / H] tensor.
fn headIndex(r: u32, f: u32, F: u32, H: u32) -> u32 {
  let d = F / H;
  let b = r / p.L;
  let l = r % p.L;
  return ((b * H + f / d) * p.L + l) * d + f % d;
}

// Elements f .. f + V - 1 of row n of w.
fn wAt(n: u32, f: u32) -> vec4<f32> {
  let e = n * p.K + f;
  return inputAt(w[inputIndex(e)], e);
}

// Output n of row r from its sum: bias, activation, residual, then the store.
fn finish(r: u32, n: u32, sum: f32) {
  var y = sum;
  if (BIAS) {
    y += unpackAt(bias[wordOf(n)], n);
  }
  if (ACT == 1u) {
    y = max(y, 0.0);
  } else if (ACT == 2u) {
    // clamped: tanh of a large f32 argument may be NaN on some backends
    let u = clamp(0.7978845608 * (y + 0.044715 * y * y * y), -15.0, 15.0);
    y = 0.5 * y * (1.0 + tanh(u));
  }
  if (RESIDUAL) {
    let e = r * p.N + n;
    y += unpackAt(residual[wordOf(e)], e);
  }
  storeOut(headIndex(r, n, p.N, p.Hout), y);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let groups = (p.N + 3u) / 4u;
  let g = workgroupIndex(wg) * WG + t;
  if (g >= p.rows * groups) {
    return;
  }
  let r = g / groups;
  let n0 = (g % groups) * 4u;
  // Rows of w past N (at the end of a row of y) are read as row N - 1 and their sums dropped.
  let n1 = min(n0 + 1u, p.N - 1u);
  let n2 = min(n0 + 2u, p.N - 1u);
  let n3 = min(n0 + 3u, p.N - 1u);
  var acc = vec4<f32>(0.0);
  let d = p.K / p.Hin;
  for (var h = 0u; h < p.Hin; h++) {
    // one head's features of row r are contiguous
    let xBase = headIndex(r, h * d, p.K, p.Hin);
    for (var i = 0u; i < d; i += V) {
      let xi = inputAt(x[inputIndex(xBase + i)], xBase + i);
      let f = h * d + i;
      acc += vec4<f32>(dot(xi, wAt(n0, f)), dot(xi, wAt(n1, f)), dot(xi, wAt(n2, f)), dot(xi, wAt(n3, f)));
    }
  }
  for (var j = 0u; j < 4u && n0 + j < p.N; j++) {
    finish(r, n0 + j, acc[j]);
  }
}
