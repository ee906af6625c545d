// KV-cache append, in place: src [slices, n, cols] -> rows [length, length + n) of
// dst [slices, capacity, cols] (slices, cols: B * Hkv, D; or for the 'blhd' layout B, Hkv * D).
// One invocation per element; the past rows are not touched.
// Constants (src/kv_cache.ts): WG, and the element storage helpers of src/f16.ts (Stored,
// OutStored, wordOf, unpackAt, storeOut); packed f16 needs the destination rows zeroed, which a
// new or reset cache is. Uniforms: total (elements of src), n, cols, capacity, length.

@group(0) @binding(1) var<storage, read> src: array<Stored>;
@group(0) @binding(2) var<storage, read_write> out: array<OutStored>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let e = workgroupIndex(wid) * WG + t;
  if (e >= p.total) {
    return;
  }
  let slice = e / (p.n * p.cols);
  let within = e % (p.n * p.cols);
  storeOut((slice * p.capacity + p.length) * p.cols + within, unpackAt(src[wordOf(e)], e));
}
