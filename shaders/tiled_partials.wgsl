// How the tiled flash kernel (flash_attention_tiled.wgsl) ends a call split over keys: each
// workgroup writes the partial result of its split, which decode_merge.wgsl merges by log-sum-exp
// (with the sink and lse) into the output. Counterpart of tiled_rows.wgsl.
// [B * Hq * Lq, splits, ceil(Dv / 4)]: unnormalised output of each split
@group(0) @binding(5) var<storage, read_write> partO: array<vec4<f32>>;
// [B * Hq * Lq, splits]: (m, l) of each split (MASKED, 0 where the row attends none of its keys)
@group(0) @binding(6) var<storage, read_write> partML: array<vec2<f32>>;

// As tiled_rows.wgsl's, for split `split` of the keys (no sink: the merge adds it).
fn finishRows(b: u32, h: u32, i0: u32, tx: u32, m: vec4<f32>, l: vec4<f32>,
              acc: ptr<function, array<vec4<f32>, VCHUNKS * 4u>>, split: u32) {
  let DV4 = (p.Dv + 3u) / 4u;
  // row i0's partial of this split; row i0 + r's is r splits further
  let at = ((b * p.Hq + h) * p.Lq + i0) * p.splits + split;
  // chunk by chunk through acc[0 .. 3] (rotateChunks: constant indices), copied out as in
  // tiled_rows.wgsl
  for (var n = 0u; n < VCHUNKS; n++) {
    let c = n * VC + tx;
    let chunk = array<vec4<f32>, 4>((*acc)[0], (*acc)[1], (*acc)[2], (*acc)[3]);
    for (var r = 0u; r < 4u; r++) {
      if (i0 + r < p.Lq && c < DV4) {
        partO[(at + r * p.splits) * DV4 + c] = chunk[r];
      }
    }
    rotateChunks(acc);
  }
  if (tx == 0u) {
    for (var r = 0u; r < 4u; r++) {
      if (i0 + r < p.Lq) {
        partML[at + r * p.splits] = vec2<f32>(m[r], l[r]);
      }
    }
  }
}
