// Split-K attention (flash-decoding), pass 2: one workgroup per query row combines the P partials
// of the row (decode_split.wgsl, or a flash kernel's splits over keys) by their log-sum-exp into
// out [B, Hq, Lq, Dv] and lse [B, Hq, Lq]. Its main is appended: decode_merge_slices.wgsl (GPUs)
// or decode_merge_serial.wgsl (CPU adapters).
// Constants: WG, DV4, LSE, and the element storage helpers of src/f16.ts; uniforms: Dv, P, Lq, Hq,
// o_b, o_h and o_l (batch, head and row strides of out), and for sinks h0, sinks_at.
// Appended: masked.wgsl.
// [B * Hq * Lq, P, DV4] and [B * Hq * Lq, P], written by the split pass
@group(0) @binding(1) var<storage, read> partO: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> partML: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<OutStored>;
// f32 bits, so that -Infinity is written as bits rather than computed
@group(0) @binding(4) var<storage, read_write> lse: array<u32>;
// The rule data of key_rules.wgsl: the sink logit of query head h + h0 is f32 bits at
// sinks_at + h + h0 (sinks_at = 0xffffffff: no sinks).
@group(0) @binding(5) var<storage, read> rules: array<u32>;

// Writes output columns 4c..4c+3 of `row` from the merged partials: the largest m of the row's
// partials, the sum l of their l and the sum o of their o, each weighted by exp(m - mMax); column
// group 0 also writes the row's lse.
fn storeMerged(row: u32, c: u32, mMax: f32, l: f32, o: vec4<f32>) {
  var m = mMax;
  var sum = l;
  var acc = o;
  // The sink joins the denominator. A row that may attend no key: zeros and lse = -Infinity (or
  // the sink; a NaN sum stays NaN).
  if (p.sinks_at != 0xffffffffu) {
    let sink = bitcast<f32>(rules[p.sinks_at + (row / p.Lq) % p.Hq + p.h0]);
    let mAll = max(m, sink);
    let alpha = exp(m - mAll);
    sum = sum * alpha + exp(sink - mAll);
    acc *= alpha;
    m = mAll;
  }
  let inv = select(1.0 / sum, 0.0, sum == 0.0);
  // first element of the row in out
  let oAt = row / (p.Lq * p.Hq) * p.o_b + (row / p.Lq) % p.Hq * p.o_h + row % p.Lq * p.o_l;
  for (var e = 0u; e < 4u; e++) {
    let d = c * 4u + e;
    if (d < p.Dv) {
      storeOut(oAt + d, acc[e] * inv);
    }
  }
  if (LSE && c == 0u) {
    lse[row] = select(bitcast<u32>(m + log(sum)), NEG_INF_BITS, sum == 0.0);
  }
}
