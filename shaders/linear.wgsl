// Linear projection with bias, reading and writing head layouts directly (PyTorch's Linear:
// y = x Wᵀ + b). Row r = (b, l) of x has K features, y has N, w is [N, K], bias [N].
// x is [B, Hin, L, K / Hin] (Hin = 1: [B, L, K]), so that heads merge on read;
// y is [B, Hout, L, N / Hout] (Hout = 1: [B, L, N]), so that heads split on write.
// Then, optionally, an activation (ACT 1: ReLU, 2: GELU, tanh form) and a residual [B, L, N] added.
// One invocation per element of y; sums in f32 whatever the storage.
// Prepended by the op (see src/ops/linear.ts): WG, BIAS, ACT, RESIDUAL, and the element helpers of
// src/f16.ts.

struct Params {
  rows: u32, L: u32, K: u32, N: u32,
  Hin: u32, Hout: u32, gridX: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<Stored>;
@group(0) @binding(2) var<storage, read> w: array<Stored>;
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = (wg.y * p.gridX + wg.x) * WG + t;
  if (e >= p.rows * p.N) {
    return;
  }
  let r = e / p.N;
  let n = e % p.N;
  var acc = 0.0;
  if (BIAS) {
    acc = unpackAt(bias[wordOf(n)], n);
  }
  let d = p.K / p.Hin;
  for (var h = 0u; h < p.Hin; h++) {
    // one head's features of row r are contiguous
    let xBase = headIndex(r, h * d, p.K, p.Hin);
    let wBase = n * p.K + h * d;
    for (var i = 0u; i < d; i++) {
      acc += unpackAt(x[wordOf(xBase + i)], xBase + i) * unpackAt(w[wordOf(wBase + i)], wBase + i);
    }
  }
  if (ACT == 1u) {
    acc = max(acc, 0.0);
  } else if (ACT == 2u) {
    // clamped: tanh of a large f32 argument may be NaN on some backends
    let u = clamp(0.7978845608 * (acc + 0.044715 * acc * acc * acc), -15.0, 15.0);
    acc = 0.5 * acc * (1.0 + tanh(u));
  }
  if (RESIDUAL) {
    acc += unpackAt(residual[wordOf(e)], e);
  }
  storeOut(headIndex(r, n, p.N, p.Hout), acc);
}
