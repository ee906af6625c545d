// Dropout on the attention probabilities: the keep decision of (b, h, i, j), bit for bit the one
// of src/dropout.ts (the float64 reference uses that): bits = mix(rowKey ^ columnKey) with
//   rowKey = mix(mix(mix(mix(seed ^ 0x9e3779b9) ^ b) ^ h) ^ i),  columnKey = mix(j ^ 0x85ebca6b),
// mix = lowbias32; the probability is kept iff bits >= drop_threshold (floor(p · 2^32)) and then
// scaled by drop_scale (1 / (1 - p)). b, h, i, j are positions in the whole call: the kernels pass
// their own indices and the uniforms b0, h0, i0, j0 (key_rules.wgsl) add the split's origin.
// Appended by scoringSources (src/ops/flash_attention.ts) to every kernel that scores keys; the
// kernels call it only when their DROPOUT constant is true. Uniforms: drop_seed, drop_threshold,
// drop_scale (f32), b0, h0, i0, j0.

// lowbias32 (Chris Wellons' hash prospector), per component.
fn dropMix(x: vec4<u32>) -> vec4<u32> {
  var y = x;
  y ^= y >> vec4<u32>(16u);
  y *= 0x7feb352du;
  y ^= y >> vec4<u32>(15u);
  y *= 0x846ca68bu;
  y ^= y >> vec4<u32>(16u);
  return y;
}

// Row keys of rows i0 .. i0 + 3 of head h, batch b.
fn dropRowKeys(b: u32, h: u32, i0: u32) -> vec4<u32> {
  let head = dropMix(dropMix(dropMix(vec4<u32>(p.drop_seed ^ 0x9e3779b9u)) ^ vec4<u32>(b + p.b0)) ^
    vec4<u32>(h + p.h0));
  return dropMix(head ^ (vec4<u32>(i0 + p.i0) + vec4<u32>(0u, 1u, 2u, 3u)));
}

// Column keys of keys j0 .. j0 + 3.
fn dropColumnKeys(j0: u32) -> vec4<u32> {
  return dropColumnKeysOf(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u));
}

// Column keys of the four keys js.
fn dropColumnKeysOf(js: vec4<u32>) -> vec4<u32> {
  return dropMix((js + vec4<u32>(p.j0)) ^ vec4<u32>(0x85ebca6bu));
}

// Dropout factors, 0 or drop_scale, of the (row, key) pairs of rowKeys and columnKeys, per component.
fn dropFactors(rowKeys: vec4<u32>, columnKeys: vec4<u32>) -> vec4<f32> {
  let kept = dropMix(rowKeys ^ columnKeys) >= vec4<u32>(p.drop_threshold);
  return select(vec4<f32>(0.0), vec4<f32>(p.drop_scale), kept);
}

// The dropout factor of key j for the row whose key is rowKey (dropRowKeys(...).x).
fn dropFactor(rowKey: u32, j: u32) -> f32 {
  return dropFactors(vec4<u32>(rowKey), vec4<u32>(dropColumnKeys(j).x)).x;
}

// Dropout factors of a 4 x 4 block whose columns are keys j0 .. j0 + 3 and whose components are
// the rows of rowKeys.
fn dropByKey(rowKeys: vec4<u32>, j0: u32) -> mat4x4<f32> {
  let c = dropColumnKeys(j0);
  return mat4x4<f32>(
    dropFactors(rowKeys, vec4<u32>(c.x)),
    dropFactors(rowKeys, vec4<u32>(c.y)),
    dropFactors(rowKeys, vec4<u32>(c.z)),
    dropFactors(rowKeys, vec4<u32>(c.w)),
  );
}

// The same for a block whose columns are the rows of rowKeys and whose components are keys
// j0 .. j0 + 3.
fn dropByRow(rowKeys: vec4<u32>, j0: u32) -> mat4x4<f32> {
  let c = dropColumnKeys(j0);
  return mat4x4<f32>(
    dropFactors(vec4<u32>(rowKeys.x), c),
    dropFactors(vec4<u32>(rowKeys.y), c),
    dropFactors(vec4<u32>(rowKeys.z), c),
    dropFactors(vec4<u32>(rowKeys.w), c),
  );
}

// x times the factors z, elementwise.
fn dropped(x: mat4x4<f32>, z: mat4x4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(x[0] * z[0], x[1] * z[1], x[2] * z[2], x[3] * z[3]);
}
