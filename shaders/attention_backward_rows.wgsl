// Rows of q, k, v and dO read four elements at a time, shared by the workgroup-memory backward
// kernels (attention_backward_dkdv.wgsl, attention_backward_dq.wgsl), whose inputs are element
// arrays (src/f16.ts's Stored, wordOf, unpackAt).

// Elements 4c .. 4c + 3 of the row of q, k, v or dO that starts at element `at`, zero past the
// row's end.
fn qAt(at: u32, c: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && 4u * c + e < p.D; e++) {
    let i = at + 4u * c + e;
    x[e] = unpackAt(q[wordOf(i)], i);
  }
  return x;
}
fn kAt(at: u32, c: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && 4u * c + e < p.D; e++) {
    let i = at + 4u * c + e;
    x[e] = unpackAt(k[wordOf(i)], i);
  }
  return x;
}
fn vAt(at: u32, c: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && 4u * c + e < p.Dv; e++) {
    let i = at + 4u * c + e;
    x[e] = unpackAt(v[wordOf(i)], i);
  }
  return x;
}
fn dOAt(at: u32, c: u32) -> vec4<f32> {
  var x = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && 4u * c + e < p.Dv; e++) {
    let i = at + 4u * c + e;
    x[e] = unpackAt(dO[wordOf(i)], i);
  }
  return x;
}
