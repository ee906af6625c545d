// The block mask of createBlockMask: the state of each (query block, key block) tile, one
// workgroup per tile. states [B, H, nq, nk] as f32 values: 0 empty (no pair allowed), 1 partial,
// 2 full (every pair allowed); the last tiles may be short and are judged on their in-range pairs.
// A pair is allowed iff causal, window, the bool mask and mask_mod allow it (key_rules.wgsl, whose
// uniforms come from scoringUniforms; appended with masked.wgsl and the mask_mod snippet).
// Invocation t judges rows t, t + WG, ... of the tile, and every invocation stops once the tile has
// an allowed and a forbidden pair (partial), which they share through `seen` (checked per row).
// Constants: WG, MASK (0 none, 1 bool), RULES_BINDING. Uniforms: bq, bk (tile sizes), nq, nk.
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> states: array<f32>;

// bit 0: some pair of the tile is allowed; bit 1: some pair is forbidden
var<workgroup> seen: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tile = workgroupIndex(wid);
  if (tile >= p.B * p.Hq * p.nq * p.nk) {
    return;
  }
  let kb = tile % p.nk;
  let qb = (tile / p.nk) % p.nq;
  let h = (tile / (p.nk * p.nq)) % p.Hq;
  let b = tile / (p.nk * p.nq * p.Hq);
  let inUse = keysInUse(b);
  let i0 = qb * p.bq;
  let j0 = kb * p.bk;
  let jEnd = min(j0 + p.bk, p.Lk);
  var mine = 0u;
  for (var i = i0 + t; i < min(i0 + p.bq, p.Lq) && atomicLoad(&seen) != 3u; i += WG) {
    let r = keyRange(inUse, i);
    for (var j = j0; j < jEnd && mine != 3u; j++) {
      let ok = j >= r.lo && j < r.hi && ruleBias(b, h, i, j, r.shift) > MASKED;
      mine |= select(2u, 1u, ok);
    }
    atomicOr(&seen, mine);
  }
  workgroupBarrier();
  if (t == 0u) {
    let found = atomicLoad(&seen);
    states[tile] = select(select(0.0, 2.0, found == 1u), 1.0, found == 3u);
  }
}
