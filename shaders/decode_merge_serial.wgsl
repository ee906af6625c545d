// The merge's main on CPU adapters (decode_merge.wgsl), where the partials are few and a barrier
// anywhere in a module makes SwiftShader switch between every invocation (the slices' merge took
// about 1.5 ms more per call there): invocation c (WG = DV4) reads every partial of the row for
// output columns 4c..4c+3, with no workgroup memory and no barrier.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) c: u32) {
  let row = workgroupIndex(wid);
  if (row >= p.workgroups) {
    return;
  }
  var mMax = MASKED;
  for (var i = 0u; i < p.P; i++) {
    mMax = max(mMax, partML[row * p.P + i].x);
  }
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var i = 0u; i < p.P; i++) {
    let ml = partML[row * p.P + i];
    let w = exp(ml.x - mMax);
    l += w * ml.y;
    o += w * partO[(row * p.P + i) * DV4 + c];
  }
  storeMerged(row, c, mMax, l, o);
}
