// Softmax cross-entropy fused with its gradient, one workgroup per row: logits [rows, V],
// targets [rows] (i32; -1 = ignored) -> rowLoss [rows] = (lse - logit[target]) * invCount and
// dlogits [rows, V] = (softmax - onehot(target)) * invCount, lse the row's log-sum-exp (max
// subtracted first). invCount = 1 / (number of rows not ignored), from cross_entropy_reduce.wgsl
// (stage 0) in stats[0]. Ignored rows get zeros; a target outside [-1, V) gives NaN.
// Constants (src/ops/cross_entropy.ts): WG. Uniforms: V. Appended: workgroup_sum.wgsl (or
// workgroup_sum_single.wgsl with WG = 1 on CPU adapters).

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = workgroupIndex(wg);
  if (row >= p.workgroups) {
    return;
  }
  let base = row * p.V;
  // Every row runs the same code (workgroupMax and workgroupSum need uniform control flow); ignored
  // and bad rows only store differently.
  let tgt = targets[row];
  let ignored = tgt == -1;
  let bad = tgt < -1 || tgt >= i32(p.V);

  var m = -3.0e38;
  for (var j = t; j < p.V; j += WG) {
    m = max(m, logits[base + j]);
  }
  let rowMax = workgroupMax(t, m);
  var e = 0.0;
  for (var j = t; j < p.V; j += WG) {
    e += exp(logits[base + j] - rowMax);
  }
  let sum = workgroupSum(t, e);
  let lse = rowMax + log(sum);
  let invCount = stats[0];
  let tj = u32(select(tgt, 0, ignored || bad));
  for (var j = t; j < p.V; j += WG) {
    let prob = exp(logits[base + j] - lse);
    var d = (prob - select(0.0, 1.0, j == tj)) * invCount;
    d = select(d, 0.0, ignored);
    dlogits[base + j] = select(d, nan(), bad);
  }
  if (t == 0u) {
    let l = select((lse - logits[base + tj]) * invCount, 0.0, ignored);
    rowLoss[row] = select(l, nan(), bad);
  }
}

// A NaN made at run time (a constant NaN is a shader-creation error).
fn nan() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
