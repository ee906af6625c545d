// Merges two partial attention results over disjoint sets of keys by their log-sum-exp:
// lse = log(exp(lseA) + exp(lseB)), out = exp(lseA - lse) outA + exp(lseB - lse) outB.
// outA, outB, out [rows, Dv]; lseA, lseB, lse [rows] (f32 bits). A part with lse = -Infinity
// contributes nothing; a row with both empty gives zeros and -Infinity; a NaN lse gives a NaN row.
// Constants (src/ops/attention_split.ts): WG and the element storage helpers of src/f16.ts
// (Stored, wordOf, unpackAt, OutStored, storeOut); out must start zeroed. Uniforms: rows, Dv.
// Appended: masked.wgsl.
@group(0) @binding(1) var<storage, read> outA: array<Stored>;
@group(0) @binding(2) var<storage, read> lseA: array<u32>;
@group(0) @binding(3) var<storage, read> outB: array<Stored>;
@group(0) @binding(4) var<storage, read> lseB: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<OutStored>;
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;

fn isNaN(bits: u32) -> bool {
  return (bits & 0x7fffffffu) > 0x7f800000u;
}

// One invocation per element of out.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wid) * WG + t;
  if (e < p.rows * p.Dv) {
    mergeElement(e);
  }
}

fn mergeElement(e: u32) {
  let row = e / p.Dv;
  let a = lseA[row];
  let b = lseB[row];
  var merged: f32;
  var lseBits: u32;
  if (isNaN(a) || isNaN(b)) {
    // the NaN read from memory (a NaN constant would not compile)
    lseBits = select(b, a, isNaN(a));
    merged = bitcast<f32>(lseBits);
  } else if (a == NEG_INF_BITS && b == NEG_INF_BITS) {
    merged = 0.0;
    lseBits = NEG_INF_BITS;
  } else {
    let la = bitcast<f32>(a);
    let lb = bitcast<f32>(b);
    let m = select(select(max(la, lb), la, b == NEG_INF_BITS), lb, a == NEG_INF_BITS);
    let wa = select(exp(la - m), 0.0, a == NEG_INF_BITS);
    let wb = select(exp(lb - m), 0.0, b == NEG_INF_BITS);
    let sum = wa + wb;
    merged = (wa * unpackAt(outA[wordOf(e)], e) + wb * unpackAt(outB[wordOf(e)], e)) / sum;
    lseBits = bitcast<u32>(m + log(sum));
  }
  storeOut(e, merged);
  if (e % p.Dv == 0u) {
    lse[row] = lseBits;
  }
}
