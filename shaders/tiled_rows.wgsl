// How the tiled flash kernel (flash_attention_tiled.wgsl) ends a call that scores every key in one
// workgroup: the sink joins the denominator and the rows go to out [B, Hq, Lq, Dv] (strides o_b,
// o_h, o_l) and lse [B, Hq, Lq]. Its counterpart for calls split over keys is tiled_partials.wgsl.
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;

// Rows i0 .. i0 + 3 of head h, batch b: running maxima m and sums l (components), and this
// invocation's output columns acc[4 n + r] (row r, dims 4 (VC n + tx) .. + 3; rotated through by
// the end); `split` is 0.
fn finishRows(b: u32, h: u32, i0: u32, tx: u32, mRows: vec4<f32>, lRows: vec4<f32>,
              acc: ptr<function, array<vec4<f32>, VCHUNKS * 4u>>, split: u32) {
  // A row that may attend no key: zeros and lse = -Infinity (or the sink). (l == 0 rather than
  // l > 0, so that a NaN sum stays NaN.)
  let sink = vec4<f32>(sinkLogit(h));
  let m = max(mRows, sink);
  let alpha = exp(mRows - m);
  let l = lRows * alpha + select(vec4<f32>(0.0), exp(sink - m), p.sinks_at != RULE_NONE);
  let inv = select(alpha / l, vec4<f32>(0.0), l == vec4<f32>(0.0));
  // chunk by chunk through acc[0 .. 3] (rotateChunks: constant indices), copied out so that the
  // row loop, which a compiler may keep rolled, indexes the copy and not acc
  for (var n = 0u; n < VCHUNKS; n++) {
    let d0 = (n * VC + tx) * 4u;
    let chunk = array<vec4<f32>, 4>((*acc)[0], (*acc)[1], (*acc)[2], (*acc)[3]);
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + r;
      if (i < p.Lq) {
        let o = chunk[r] * inv[r];
        // row i's first element in out
        let oAt = b * p.o_b + h * p.o_h + i * p.o_l;
        for (var e = 0u; e < 4u; e++) {
          if (d0 + e < p.Dv) {
            storeOut(oAt + d0 + e, o[e]);
          }
        }
      }
    }
    rotateChunks(acc);
  }
  if (LSE && tx == 0u) {
    for (var r = 0u; r < 4u; r++) {
      if (i0 + r < p.Lq) {
        // row i0 + r in lse [B, Hq, Lq]
        let row = (b * p.Hq + h) * p.Lq + i0 + r;
        lse[row] = select(bitcast<u32>(m[r] + log(l[r])), NEG_INF_BITS, l[r] == 0.0);
      }
    }
  }
}
