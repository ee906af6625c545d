// Row-group exchanges of the tiled flash kernel through subgroup shuffles (the device has
// `subgroups`; its counterpart without them is row_group_plain.wgsl). WebGPU promises no subgroup
// size (4 to 128) and no layout of invocations in subgroups, so the kernel asks which exchanges a
// subgroup can take and does the others through workgroup memory.
enable subgroups;

// How many of the butterfly steps t ^ 1, t ^ 2, t ^ 4 (in that order) find their partner in the
// invocation's subgroup. The lane is the invocation's subgroup id when the active invocations are
// exactly ids 0 .. n - 1 (checked by ballot); a partner is then in range iff lane ^ m < n, and is
// the right invocation iff it holds t ^ m. Call from uniform control flow with every invocation of
// the workgroup active.
fn rowGroupSteps(t: u32) -> u32 {
  let n = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  let ballot = subgroupBallot(true);
  var dense = true;
  for (var c = 0u; c < 4u; c++) {
    let bits = min(max(i32(n) - 32 * i32(c), 0), 32);
    let want = select((1u << u32(bits)) - 1u, 0xffffffffu, bits == 32);
    dense = dense && ballot[c] == want;
  }
  var steps = 0u;
  var ok = dense;
  for (var s = 0u; s < 3u; s++) {
    let m = 1u << s;
    // every invocation shuffles (uniform control flow); out-of-range partners are not used
    let partner = subgroupShuffleXor(t, m);
    ok = ok && (lane ^ m) < n && partner == (t ^ m);
    steps += select(0u, 1u, ok);
  }
  return steps;
}

// x of the invocation whose subgroup lane is this one's ^ m (m < 2^rowGroupSteps).
fn xorLanes(x: vec4<f32>, m: u32) -> vec4<f32> {
  return subgroupShuffleXor(x, m);
}
