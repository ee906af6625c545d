// The block mask of createBlockMask: the state of each (query block, key block) tile, one
// invocation per tile. states [B, H, nq, nk] as f32 values: 0 empty (no pair allowed), 1 partial,
// 2 full (every pair allowed); the last tiles may be short and are judged on their in-range pairs.
// A pair is allowed iff causal, window, the bool mask and mask_mod allow it (key_rules.wgsl, whose
// uniforms come from scoringUniforms; appended with masked.wgsl and the mask_mod snippet).
// Constants: WG, MASK (0 none, 1 bool), RULES_BINDING. Uniforms: bq, bk (tile sizes), nq, nk.
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> states: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tile = workgroupIndex(wid) * WG + t;
  if (tile >= p.B * p.Hq * p.nq * p.nk) {
    return;
  }
  let kb = tile % p.nk;
  let qb = (tile / p.nk) % p.nq;
  let h = (tile / (p.nk * p.nq)) % p.Hq;
  let b = tile / (p.nk * p.nq * p.Hq);
  let inUse = keysInUse(b);
  var any = false;
  var all = true;
  let jEnd = min((kb + 1u) * p.bk, p.Lk);
  // a tile with an allowed and a forbidden pair is partial: the scan stops there
  for (var i = qb * p.bq; i < min((qb + 1u) * p.bq, p.Lq) && (all || !any); i++) {
    let r = keyRange(inUse, i);
    for (var j = kb * p.bk; j < jEnd && (all || !any); j++) {
      let ok = j >= r.lo && j < r.hi && ruleBias(b, h, i, j, r.shift) > MASKED;
      any = any || ok;
      all = all && ok;
    }
  }
  states[tile] = select(0.0, select(1.0, 2.0, all), any);
}
