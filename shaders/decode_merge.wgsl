// Split-K attention (flash-decoding), pass 2: one workgroup per query row combines the P partials
// of the row (decode_split.wgsl, or a flash kernel's splits over keys) by their log-sum-exp into
// out [B, Hq, Lq, Dv] and lse [B, Hq, Lq].
// The partials are read in parallel, not one after another: invocation t = DV4 * s + c reads slice
// s (partials s, s + SLICES, ...) of output columns 4c..4c+3 (SLICES = WG / DV4: head dims are at
// most 256, so DV4 <= 64 <= WG), after the row maximum of every partial's m is reduced over the
// workgroup; the slices' sums are then added up in workgroup memory.
// Constants: WG, DV4, SLICES, LSE, and the element storage helpers of src/f16.ts; uniforms: Dv,
// P, Lq, Hq, o_b, o_h and o_l (batch, head and row strides of out), and for sinks h0, sinks_at.
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

// the row maximum, reduced over the invocations
var<workgroup> maxima: array<f32, WG>;
// each slice's weighted sums of its columns, and of l
var<workgroup> sums: array<vec4<f32>, WG>;
var<workgroup> lSums: array<f32, SLICES>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = workgroupIndex(wid);
  // uniform: every invocation of a workgroup returns or none does
  if (row >= p.workgroups) {
    return;
  }
  var mMax = MASKED;
  for (var i = t; i < p.P; i += WG) {
    mMax = max(mMax, partML[row * p.P + i].x);
  }
  maxima[t] = mMax;
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half /= 2u) {
    if (t < half) {
      maxima[t] = max(maxima[t], maxima[t + half]);
    }
    workgroupBarrier();
  }
  mMax = maxima[0];

  let s = t / DV4;
  let c = t % DV4;
  var l = 0.0;
  var o = vec4<f32>(0.0);
  if (s < SLICES) {
    for (var i = s; i < p.P; i += SLICES) {
      let ml = partML[row * p.P + i];
      let w = exp(ml.x - mMax);
      l += w * ml.y;
      o += w * partO[(row * p.P + i) * DV4 + c];
    }
  }
  sums[t] = o;
  if (c == 0u && s < SLICES) {
    lSums[s] = l;
  }
  workgroupBarrier();
  if (s != 0u) {
    return;
  }
  l = 0.0;
  for (var k = 0u; k < SLICES; k++) {
    l += lSums[k];
    if (k > 0u) {
      o += sums[k * DV4 + c];
    }
  }
  // The sink joins the denominator. A row that may attend no key: zeros and lse = -Infinity (or
  // the sink; a NaN sum stays NaN).
  if (p.sinks_at != 0xffffffffu) {
    let sink = bitcast<f32>(rules[p.sinks_at + (row / p.Lq) % p.Hq + p.h0]);
    let mAll = max(mMax, sink);
    let alpha = exp(mMax - mAll);
    l = l * alpha + exp(sink - mAll);
    o *= alpha;
    mMax = mAll;
  }
  let inv = select(1.0 / l, 0.0, l == 0.0);
  // first element of the row in out
  let oAt = row / (p.Lq * p.Hq) * p.o_b + (row / p.Lq) % p.Hq * p.o_h + row % p.Lq * p.o_l;
  for (var e = 0u; e < 4u; e++) {
    let d = c * 4u + e;
    if (d < p.Dv) {
      storeOut(oAt + d, o[e] * inv);
    }
  }
  if (LSE && c == 0u) {
    lse[row] = select(bitcast<u32>(mMax + log(l)), NEG_INF_BITS, l == 0.0);
  }
}
