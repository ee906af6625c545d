// How the workgroup flash kernel (flash_attention.wgsl) ends a call split over keys: each
// workgroup writes its rows' partial results over its split of the keys, which decode_merge.wgsl
// merges by log-sum-exp (adding the sink and writing lse) into the output. Counterpart of
// flash_rows.wgsl.
// [B * Hq * Lq, splits, DV4]: unnormalised output of each split
@group(0) @binding(5) var<storage, read_write> partO: array<vec4<f32>>;
// [B * Hq * Lq, splits]: (m, l) of each split (MASKED, 0 where the row attends none of its keys)
@group(0) @binding(6) var<storage, read_write> partML: array<vec2<f32>>;

// As flash_rows.wgsl's, for split `split` of the keys (no sink: the merge adds it).
fn finishRow(b: u32, h: u32, i: u32, m: f32, l: f32, acc: ptr<function, array<vec4<f32>, DV4>>,
             split: u32) {
  let at = ((b * p.Hq + h) * p.Lq + i) * p.splits + split;
  for (var c = 0u; c < DV4; c++) {
    partO[at * DV4 + c] = (*acc)[c];
  }
  partML[at] = vec2<f32>(m, l);
}
