// The outputs of a flash kernel that writes whole rows (flash_common.wgsl's bindings 5 and 6):
// out [B, Hq, Lq, Dv] (strides o_b, o_h, o_l) and lse [B, Hq, Lq].
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;
