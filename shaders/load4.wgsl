// Four-element reads of q, k and v for the flash kernels that stage them (flash_attention.wgsl,
// flash_attention_tiled.wgsl): with inputPrelude (src/f16.ts) of vec4 reads, one Chunk read; else
// element reads. Needs the q, k and v bindings of array<Input>.

// Chunk or element i of q (`which` 0), k (1) or v (2); `which` is a constant at every call.
fn qkvAt(which: u32, i: u32) -> Input {
  if (which == 0u) {
    return q[i];
  }
  if (which == 1u) {
    return k[i];
  }
  return v[i];
}

// Elements at .. at + 3 of q, k or v (`which`, as qkvAt) as a vec4, zero past the `left` elements
// left in the row: one Chunk read where rows and strides are multiples of 4 (V = 4, inputPrelude),
// else element reads.
fn load4(which: u32, at: u32, left: u32) -> vec4<f32> {
  if (V == 4u) {
    return inputAt(qkvAt(which, inputIndex(at)), at);
  }
  var x = vec4<f32>(0.0);
  for (var c = 0u; c < min(left, 4u); c++) {
    x[c] = inputAt(qkvAt(which, inputIndex(at + c)), at + c).x;
  }
  return x;
}
