// Rows of a per-row kernel on GPUs: one row per workgroup (rowOf), its WG invocations the row's
// lanes (laneOf, LANES), whose values workgroupSum and workgroupMax reduce: the sum (the largest)
// of v over the WG invocations (WG a power of two), returned to all of them. Every invocation must
// call them (they have barriers). On CPU adapters: workgroup_sum_single.wgsl.

const LANES = WG;

var<workgroup> partial: array<f32, WG>;

fn rowOf(workgroup: u32, t: u32) -> u32 {
  return workgroup;
}

fn laneOf(t: u32) -> u32 {
  return t;
}

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
