// The tile interface of flash_attention_matrix.wgsl (see matrix_tiles_builtin.wgsl) emulated with
// ordinary invocations, for adapters without subgroup matrices: a correctness reference that needs
// neither shader-f16 nor subgroups (it runs on SwiftShader), not a fast path. Operands are f32
// values rounded to f16 (pack2x16float), so products and sums are those of the builtins: f16
// operands, exact products, f32 accumulation. A group of LANES consecutive invocations stands for
// a subgroup; lane l holds the elements l, l + LANES, .. of each TILE_M x TILE_N result tile (row
// e / TILE_N, column e % TILE_N). Left and right tiles are where they lie in `operands`: they are
// read when multiplied, so the kernel must not overwrite them in between (it does not).

alias Operand = f32;
const LANES = 32u;
const PER_LANE = TILE_M * TILE_N / LANES;

struct LeftTile {
  at: u32,
  stride: u32,
}
alias RightTile = LeftTile;
struct ResultTile {
  v: array<f32, PER_LANE>,
}

// The entry point's local_invocation_index is the kernel's: the 1-D workgroup's x id is the same.
struct TileInvocation {
  @builtin(local_invocation_id) id: vec3<u32>,
}

// The invocation's lane in its group (set by tileGroup, which the kernel calls first).
var<private> lane: u32;

fn tileGroup(inv: TileInvocation) -> u32 {
  lane = inv.id.x % LANES;
  return inv.id.x / LANES;
}
fn tileGroups(inv: TileInvocation) -> u32 {
  return WG / LANES;
}

// x rounded to f16, kept as f32.
fn toOperand(x: f32) -> Operand {
  return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn loadLeft(at: u32, stride: u32) -> LeftTile {
  return LeftTile(at, stride);
}
fn loadRight(at: u32, stride: u32) -> RightTile {
  return RightTile(at, stride);
}
fn loadResult(at: u32, stride: u32) -> ResultTile {
  var c: ResultTile;
  for (var n = 0u; n < PER_LANE; n++) {
    let e = lane + n * LANES;
    c.v[n] = results[at + (e / TILE_N) * stride + e % TILE_N];
  }
  return c;
}
fn zeroResult() -> ResultTile {
  return ResultTile();
}
// c + a b
fn mulAcc(a: LeftTile, b: RightTile, c: ResultTile) -> ResultTile {
  var r = c;
  for (var n = 0u; n < PER_LANE; n++) {
    let e = lane + n * LANES;
    let row = a.at + (e / TILE_N) * a.stride;
    let col = b.at + e % TILE_N;
    var s = r.v[n];
    for (var kk = 0u; kk < TILE_K; kk++) {
      s += operands[row + kk] * operands[col + kk * b.stride];
    }
    r.v[n] = s;
  }
  return r;
}
fn storeResult(c: ResultTile, at: u32, stride: u32) {
  for (var n = 0u; n < PER_LANE; n++) {
    let e = lane + n * LANES;
    results[at + (e / TILE_N) * stride + e % TILE_N] = c.v[n];
  }
}
