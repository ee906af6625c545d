// workgroupSum(t, v): the sum of v over the WG invocations of a workgroup (WG a power of two),
// returned to all of them. Every invocation must call it (it has barriers).

var<workgroup> partial: array<f32, WG>;

fn workgroupSum(t: u32, v: f32) -> f32 {
  partial[t] = v;
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    workgroupBarrier();
    if (t < s) {
      partial[t] += partial[t + s];
    }
  }
  workgroupBarrier();
  let total = partial[0];
  workgroupBarrier();
  return total;
}
