// The two whole-batch sums of softmax cross-entropy, one workgroup each, rows in a fixed order.
// STAGE 0: counts targets [rows] that are not -1 -> stats = (1 / count or 0 when none, count).
// STAGE 1: sums rowLoss [rows] -> loss[0], or NaN when stats[1] (the count) is 0 (PyTorch's mean
// over no elements).
// Constants (src/ops/cross_entropy.ts): WG, STAGE. Uniforms: rows. Appended: workgroup_sum.wgsl.

@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32) {
  var s = 0.0;
  for (var r = t; r < p.rows; r += WG) {
    if (STAGE == 0u) {
      s += select(0.0, 1.0, targets[r] != -1);
    } else {
      s += rowLoss[r];
    }
  }
  let total = workgroupSum(t, s);
  if (t == 0u) {
    if (STAGE == 0u) {
      stats[0] = select(0.0, 1.0 / total, total > 0.0);
      stats[1] = total;
    } else {
      loss[0] = select(nan(), total, stats[1] > 0.0);
    }
  }
}

// A NaN made at run time (a constant NaN is a shader-creation error).
fn nan() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
