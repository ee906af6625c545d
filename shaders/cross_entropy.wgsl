// Softmax cross-entropy fused with its gradient, per row: logits [rows, V],
// targets [rows] (i32; -1 = ignored) -> rowLoss [rows] = (lse - logit[target]) * invCount and
// dlogits [rows, V] = (softmax - onehot(target)) * invCount, lse the row's log-sum-exp (max
// subtracted first). invCount = 1 / (number of rows not ignored), from cross_entropy_reduce.wgsl
// (stage 0) in stats[0]. Ignored rows get zeros; a target outside [-1, V) gives NaN.
// Rows on invocations as workgroup_sum.wgsl (a workgroup per row) or workgroup_sum_single.wgsl
// (CPU adapters: an invocation per row) lays them. Constants (src/ops/cross_entropy.ts): WG.
// Uniforms: V, rows.

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = rowOf(workgroupIndex(wg), t);
  let lane = laneOf(t);
  if (row >= p.rows) {
    return;
  }
  let base = row * p.V;
  // Every row runs the same code (workgroupMax and workgroupSum need uniform control flow); ignored
  // and bad rows only store differently.
  let tgt = targets[row];
  let ignored = tgt == -1;
  let bad = tgt < -1 || tgt >= i32(p.V);

  var m = -3.0e38;
  for (var j = lane; j < p.V; j += LANES) {
    m = max(m, logits[base + j]);
  }
  let rowMax = workgroupMax(t, m);
  var e = 0.0;
  for (var j = lane; j < p.V; j += LANES) {
    e += exp(logits[base + j] - rowMax);
  }
  let sum = workgroupSum(t, e);
  let lse = rowMax + log(sum);
  let invCount = stats[0];
  let tj = u32(select(tgt, 0, ignored || bad));
  for (var j = lane; j < p.V; j += LANES) {
    let prob = exp(logits[base + j] - lse);
    var d = (prob - select(0.0, 1.0, j == tj)) * invCount;
    d = select(d, 0.0, ignored);
    dlogits[base + j] = select(d, nan(), bad);
  }
  if (lane == 0u) {
    let l = select((lse - logits[base + tj]) * invCount, 0.0, ignored);
    rowLoss[row] = select(l, nan(), bad);
  }
}

// A NaN made at run time (a constant NaN is a shader-creation error).
fn nan() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
