// Rows of a per-row kernel on CPU adapters (see workgroup_sum.wgsl): each invocation owns a row of
// its own (WG rows per workgroup, one lane each), so workgroupSum and workgroupMax return v itself,
// with no barrier. A barrier anywhere in a module makes SwiftShader switch between all of a
// workgroup's invocations at each one, and a workgroup of one invocation leaves its SIMD lanes
// idle: rows side by side keep them busy without either.

const LANES = 1u;

fn rowOf(workgroup: u32, t: u32) -> u32 {
  return workgroup * WG + t;
}

fn laneOf(t: u32) -> u32 {
  return 0u;
}

fn workgroupSum(t: u32, v: f32) -> f32 {
  return v;
}

fn workgroupMax(t: u32, v: f32) -> f32 {
  return v;
}
