// Copies `size` bytes from byte src_at of src to byte dst_at of dst, at any alignment (a buffer
// copy needs multiples of 4): one invocation per word of dst that the range touches, so no two
// write the same word; the bytes of the first and last words outside the range keep their values.
// Uniforms: src_at, dst_at, size (bytes, relative to the bound ranges), words (dst words to write).
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn srcByte(at: u32) -> u32 {
  return (src[at / 4u] >> ((at % 4u) * 8u)) & 0xffu;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n = workgroupIndex(wid) * 64u + t;
  if (n >= p.words) {
    return;
  }
  let word = p.dst_at / 4u + n;
  var value = dst[word];
  for (var c = 0u; c < 4u; c++) {
    let at = word * 4u + c;
    if (at >= p.dst_at && at < p.dst_at + p.size) {
      let shift = c * 8u;
      value = (value & ~(0xffu << shift)) | (srcByte(p.src_at + at - p.dst_at) << shift);
    }
  }
  dst[word] = value;
}
