// workgroupSum(t, v) and workgroupMax(t, v): the sum (the largest) of v over the WG invocations of
// a workgroup (WG a power of two), returned to all of them. Every invocation must call them (they
// have barriers). The same functions without workgroup memory, for WG = 1: workgroup_sum_single.wgsl.

var<workgroup> partial: array<f32, WG>;

fn workgroupSum(t: u32, v: f32) -> f32 {
  return workgroupReduce(t, v, false);
}

fn workgroupMax(t: u32, v: f32) -> f32 {
  return workgroupReduce(t, v, true);
}

fn workgroupReduce(t: u32, v: f32, largest: bool) -> f32 {
  partial[t] = v;
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    workgroupBarrier();
    if (t < s) {
      let a = partial[t];
      let b = partial[t + s];
      partial[t] = select(a + b, max(a, b), largest);
    }
  }
  workgroupBarrier();
  let total = partial[0];
  workgroupBarrier();
  return total;
}
