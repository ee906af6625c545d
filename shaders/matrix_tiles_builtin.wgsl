// The tile interface of flash_attention_matrix.wgsl on subgroup matrices (the
// chromium-experimental-subgroup-matrix feature, with shader-f16 and subgroups): each subgroup
// multiplies TILE_M x TILE_K f16 tiles by TILE_K x TILE_N f16 tiles into TILE_M x TILE_N f32
// tiles, in the shape of a config the adapter reports (src/ops/matrix_config.ts). Same names and
// signatures as matrix_tiles_emulated.wgsl, which emulates it. The kernel declares
// `operands: array<Operand, ..>` and `results: array<f32, ..>` in workgroup memory; every tile
// is row-major at an element offset `at` with `stride` elements between its rows. Tile calls must
// be made in subgroup-uniform control flow with subgroup-uniform offsets.
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;

alias Operand = f16;
alias LeftTile = subgroup_matrix_left<f16, TILE_K, TILE_M>;
alias RightTile = subgroup_matrix_right<f16, TILE_N, TILE_K>;
alias ResultTile = subgroup_matrix_result<f32, TILE_N, TILE_M>;

// What the kernel's entry point receives besides its workgroup and local index (the analysis takes
// a struct as uniform only if all its members are); tileGroup / tileGroups name its subgroup.
struct TileInvocation {
  @builtin(subgroup_id) group: u32,
  @builtin(num_subgroups) groups: u32,
}

// The invocation's group of tile workers (a subgroup), and how many groups the workgroup has.
fn tileGroup(inv: TileInvocation) -> u32 {
  return inv.group;
}
fn tileGroups(inv: TileInvocation) -> u32 {
  return inv.groups;
}

// x rounded to the operands' type (f16).
fn toOperand(x: f32) -> Operand {
  return Operand(x);
}

fn loadLeft(at: u32, stride: u32) -> LeftTile {
  return subgroupMatrixLoad<LeftTile, row_major>(&operands, at, stride);
}
fn loadRight(at: u32, stride: u32) -> RightTile {
  return subgroupMatrixLoad<RightTile, row_major>(&operands, at, stride);
}
fn loadResult(at: u32, stride: u32) -> ResultTile {
  return subgroupMatrixLoad<ResultTile, row_major>(&results, at, stride);
}
fn zeroResult() -> ResultTile {
  return ResultTile();
}
// c + a b
fn mulAcc(a: LeftTile, b: RightTile, c: ResultTile) -> ResultTile {
  return subgroupMatrixMultiplyAccumulate(a, b, c);
}
fn storeResult(c: ResultTile, at: u32, stride: u32) {
  subgroupMatrixStore<row_major>(&results, at, c, stride);
}
