// How the workgroup flash kernel (flash_attention.wgsl) ends a call that scores every key in one
// workgroup: row i of head h, batch b, normalised, to out and lse (flash_outputs.wgsl). Its
// counterpart for calls split over keys is flash_partials.wgsl.

// Row i's running maximum m and sum l (the sink already joined) and its output accumulator.
fn finishRow(b: u32, h: u32, i: u32, m: f32, l: f32, acc: ptr<function, array<vec4<f32>, DV4>>,
             split: u32) {
  // a row that may attend no key: zeros and lse = -Infinity (l == 0 rather than l > 0, so that a
  // NaN sum stays NaN)
  let inv = select(1.0 / l, 0.0, l == 0.0);
  let oAt = b * p.o_b + h * p.o_h + i * p.o_l;
  for (var c = 0u; c < DV4; c++) {
    for (var e = 0u; e < 4u; e++) {
      let d = c * 4u + e;
      if (d < p.Dv) {
        storeOut(oAt + d, (*acc)[c][e] * inv);
      }
    }
  }
  if (LSE) {
    lse[(b * p.Hq + h) * p.Lq + i] = select(bitcast<u32>(m + log(l)), NEG_INF_BITS, l == 0.0);
  }
}
