// The merge's main on GPUs (decode_merge.wgsl): the partials are read in parallel, not one after
// another: invocation t = DV4 * s + c reads slice s (partials s, s + SLICES, ...) of output columns
// 4c..4c+3 (SLICES = WG / DV4: head dims are at most 256, so DV4 <= 64 <= WG), after the row
// maximum of every partial's m is reduced over the workgroup; the slices' sums are then added up
// in workgroup memory. Constant: SLICES.

// the row maximum, reduced over the invocations
var<workgroup> maxima: array<f32, WG>;
// each slice's weighted sums of its columns, and of l
var<workgroup> sums: array<vec4<f32>, WG>;
var<workgroup> lSums: array<f32, SLICES>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = workgroupIndex(wid);
  // uniform: every invocation of a workgroup returns or none does
  if (row >= p.workgroups) {
    return;
  }
  var mMax = MASKED;
  for (var i = t; i < p.P; i += WG) {
    mMax = max(mMax, partML[row * p.P + i].x);
  }
  maxima[t] = mMax;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half /= 2u) {
    if (t < half) {
      maxima[t] = max(maxima[t], maxima[t + half]);
    }
    workgroupBarrier();
  }
  mMax = maxima[0];

  let s = t / DV4;
  let c = t % DV4;
  var l = 0.0;
  var o = vec4<f32>(0.0);
  if (s < SLICES) {
    for (var i = s; i < p.P; i += SLICES) {
      let ml = partML[row * p.P + i];
      let w = exp(ml.x - mMax);
      l += w * ml.y;
      o += w * partO[(row * p.P + i) * DV4 + c];
    }
  }
  sums[t] = o;
  if (c == 0u && s < SLICES) {
    lSums[s] = l;
  }
  workgroupBarrier();
  if (s != 0u) {
    return;
  }
  l = 0.0;
  for (var k = 0u; k < SLICES; k++) {
    l += lSums[k];
    if (k > 0u) {
      o += sums[k * DV4 + c];
    }
  }
  storeMerged(row, c, mMax, l, o);
}
