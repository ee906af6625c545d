// Reading the attention mask, shared by the flash kernel and the decode kernel's split pass (their
// ops append this file). Uses the kernel's `mask: array<u32>` binding, its MASK constant (0 none,
// 1 bool: bytes packed four per word, 2 additive: f32 bits), MASKED and NEG_INF_BITS.

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
