// Attention backward, pre-pass: per query row, delta = rowsum(dO * O) and the row's lse, the two
// numbers every gradient kernel needs (packed into one binding to stay within 8 storage bindings).
// dO, out [B, Hq, Lq, Dv] or [B, Lq, Hq, Dv] (batch, head and row strides o_b, o_h, o_l;
// elements through src/f16.ts's Stored, wordOf, unpackAt; any Dv), lse [rows] (f32 bits) ->
// stats [rows] of (lse, delta), rows = B * Hq * Lq. A row with lse = -Infinity attends no key:
// its stats are (EMPTY_LSE, 0), so that exp(s - lse) is 0 and never NaN. Uniforms: rows, Dv, Hq,
// Lq, o_b, o_h, o_l. Constants: WG.

// lse of a row that attends nothing: exp(s - EMPTY_LSE) is 0 for every finite s.
const EMPTY_LSE = 3.0e38;

@group(0) @binding(1) var<storage, read> dO: array<Stored>;
@group(0) @binding(2) var<storage, read> out: array<Stored>;
@group(0) @binding(3) var<storage, read> lse: array<u32>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let w = workgroupIndex(wid);
  if (w >= p.workgroups) {
    return;
  }
  let row = w * WG + t;
  if (row >= p.rows) {
    return;
  }
  var delta = 0.0;
  let at = row / (p.Lq * p.Hq) * p.o_b + (row / p.Lq) % p.Hq * p.o_h + row % p.Lq * p.o_l;
  for (var d = 0u; d < p.Dv; d++) {
    let e = at + d;
    delta += unpackAt(dO[wordOf(e)], e) * unpackAt(out[wordOf(e)], e);
  }
  let bits = lse[row];
  let empty = bits == NEG_INF_BITS;
  stats[row] = vec2<f32>(select(bitcast<f32>(bits), EMPTY_LSE, empty), select(delta, 0.0, empty));
}
