// Which keys a query row may attend, and the additive mask: shared by every kernel that scores
// keys (both flash kernels and both split passes of decode). Uses the uniforms `causal` and
// `shift`, `Lk`, the kernel's `mask: array<u32>` binding, its MASK constant (0 none, 1 bool: bytes
// packed four per word, 2 additive: f32 bits), and MASKED and NEG_INF_BITS (masked.wgsl).

// Causal, bottom-right: key j is allowed for row i iff j <= i + shift (Lk - Lq, or a split
// call's own shift).
fn causalAllows(i: u32, j: u32) -> bool {
  return p.causal == 0u || i32(j) <= i32(i) + p.shift;
}

// Keys [0, causalEnd(i)) may be attended by rows up to i as far as causal goes.
fn causalEnd(i: u32) -> u32 {
  if (p.causal == 0u) {
    return p.Lk;
  }
  return u32(clamp(i32(i) + p.shift + 1, 0, i32(p.Lk)));
}

// 0 or MASKED for a bool mask, else the additive value (MASKED for -Infinity), of element e of the
// mask broadcast to [B, Hq, Lq, Lk].
fn maskBias(e: u32) -> f32 {
  if (MASK == 0u) {
    return 0.0;
  }
  if (MASK == 1u) {
    let byte = (mask[e / 4u] >> ((e % 4u) * 8u)) & 0xffu;
    return select(MASKED, 0.0, byte != 0u);
  }
  let bits = mask[e];
  if (bits == NEG_INF_BITS) {
    return MASKED;
  }
  return max(bitcast<f32>(bits), MASKED);
}

// The score of key j for query row i of head h, batch b, from s = scale * q·k: the modifications
// and the additive mask applied, or MASKED where the row may not attend the key. Kernels that
// need no tile-level shortcuts (the backward) score through this one function, so that an option
// added here reaches them all.
fn keyScore(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {
  if (j >= p.Lk || !causalAllows(i, j)) {
    return MASKED;
  }
  let bias = maskBias(b * p.mask_b + h * p.mask_h + i * p.mask_i + j * p.mask_j);
  return select(MASKED, s + bias, bias > MASKED);
}
