// Attention backward with sinks: d loss / d sink of each query head,
//   dsinks[h] = -sum over (b, i) of exp(sink[h] - lse) * delta,
// the sink's softmax probability times the row's delta = rowsum(dO * O) (the sink has no value).
// One invocation per head, summing its rows in a fixed order (deterministic, no atomics), and
// subtracting the sum from dsinks (zeroed first: a split call adds the sums of its units in turn).
// Bindings: the rule data (sinks from word sinks_at, the row stats (lse, delta) of
// attention_backward_delta.wgsl from word stats_at) and dsinks [heads of the full call] (f32).
// Uniforms: B, Hq, Lq (of the rows the stats hold), sinks_at, stats_at, h0 (the first head's
// index in the full call). Constants: WG.

@group(0) @binding(1) var<storage, read> rules: array<u32>;
@group(0) @binding(2) var<storage, read_write> dsinks: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = workgroupIndex(wid) * WG + t;
  if (h >= p.Hq) {
    return;
  }
  let sink = bitcast<f32>(rules[p.sinks_at + h + p.h0]);
  var sum = 0.0;
  for (var b = 0u; b < p.B; b++) {
    for (var i = 0u; i < p.Lq; i++) {
      let at = p.stats_at + 2u * ((b * p.Hq + h) * p.Lq + i);
      let lse = bitcast<f32>(rules[at]);
      let delta = bitcast<f32>(rules[at + 1u]);
      // exp(sink - lse) is 0 for a row's EMPTY_LSE (never the case with a sink)
      sum += exp(min(sink - lse, 0.0)) * delta;
    }
  }
  dsinks[h + p.h0] -= sum;
}
