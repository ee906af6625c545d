// Constants of every attention kernel.

// Finite stand-in for -Infinity: WGSL does not promise IEEE infinities in arithmetic.
const MASKED = -3.0e38;
// -Infinity as f32 bits, written to lse as bits rather than computed.
const NEG_INF_BITS = 0xff800000u;
