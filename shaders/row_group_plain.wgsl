// Row-group exchanges of the tiled flash kernel without subgroups (see row_group_subgroups.wgsl):
// no butterfly step, every exchange goes through workgroup memory.
fn rowGroupSteps(t: u32) -> u32 {
  return 0u;
}

// Never called: rowGroupSteps allows no step.
fn xorLanes(x: vec4<f32>, m: u32) -> vec4<f32> {
  return x;
}
