// The lane sums of decode_split.wgsl without subgroups: laneSum sums no lanes, so that every sum
// goes through workgroup memory. The same functions with subgroups: decode_lanes_subgroups.wgsl.

// (no builtins needed: one that the entry point does not read otherwise)
struct Lanes {
  @builtin(local_invocation_id) unused: vec3<u32>,
}

fn laneWidth(lanes: Lanes, t: u32, n: u32) -> u32 {
  return 1u;
}

fn laneSum(x: vec4<f32>, width: u32) -> vec4<f32> {
  return x;
}
