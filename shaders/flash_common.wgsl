// Parameters and bindings shared by the two flash kernels, flash_attention.wgsl and
// flash_attention_registers.wgsl (src/ops/attention.ts appends this file to either). `Input` is the
// element type of the q, k and v arrays, aliased by the kernel.

struct Params {
  B: u32, Hq: u32, Hkv: u32, Lq: u32,
  Lk: u32, D: u32, Dv: u32, causal: u32,
  // element strides of the mask broadcast to [B, Hq, Lq, Lk] (0 on broadcast dims)
  mask_b: u32, mask_h: u32, mask_i: u32, mask_j: u32,
  scale: f32,
  // the (query block, head, batch) grid is folded into x, y and z (see main)
  grid_x: u32, grid_y: u32,
  // rows from one kv head to the next in k and v: Lk, or a KV cache's capacity
  kStride: u32, vStride: u32,
  // causal: key j is allowed for row i iff j <= i + shift (Lk - Lq, or a split call's own shift)
  shift: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<Input>;
@group(0) @binding(2) var<storage, read> k: array<Input>;
@group(0) @binding(3) var<storage, read> v: array<Input>;
// bool: bytes packed four per word; additive: f32 bits
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;

// Finite stand-in for -Infinity: WGSL does not promise IEEE infinities in arithmetic.
const MASKED = -3.0e38;
const NEG_INF_BITS = 0xff800000u;
