// The lane sums of decode_split.wgsl by subgroup shuffles (the `subgroups` feature); the same
// functions without it: decode_lanes.wgsl.
enable subgroups;

// Builtins of the entry point that laneWidth reads.
struct Lanes {
  @builtin(subgroup_size) size: u32,
  @builtin(subgroup_invocation_id) id: u32,
}

// How many lanes laneSum sums by shuffles for invocation t, n at most (a power of two): its
// subgroup's size where the subgroup is a run of consecutive invocations in order (subgroup
// invocation id t mod size, from a multiple of size), else 1. Call from uniform control flow.
fn laneWidth(lanes: Lanes, t: u32, n: u32) -> u32 {
  let first = subgroupMin(t);
  let size = lanes.size;
  let linear = (size & (size - 1u)) == 0u && lanes.id == t % size && first == t - t % size;
  return select(1u, min(size, n), linear);
}

// The sums of x over the `width` consecutive lanes (from a multiple of width) holding this
// invocation, the same bits in each (a xor butterfly). Call from uniform control flow.
fn laneSum(x: vec4<f32>, width: u32) -> vec4<f32> {
  var s = x;
  for (var o = 1u; o < width; o *= 2u) {
    s += subgroupShuffleXor(s, o);
  }
  return s;
}
