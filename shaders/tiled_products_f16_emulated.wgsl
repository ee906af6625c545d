// The rounding of tiled_products_f16.wgsl in f32 arithmetic, for adapters without shader-f16 (the
// specs check the f16 variant's numerics against the float64 reference there): every operand,
// product and partial sum rounded to f16 (to nearest, through pack2x16float), the dot product
// summed in order.
alias Tile = vec4<f32>;

fn roundF16(x: f32) -> f32 {
  return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

fn roundF16x4(x: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(pack2x16float(x.xy)), unpack2x16float(pack2x16float(x.zw)));
}

fn toTile(x: vec4<f32>) -> Tile {
  return roundF16x4(x);
}

fn dotTile(a: Tile, b: Tile) -> f32 {
  let t = roundF16x4(a * b);
  return roundF16(roundF16(roundF16(t.x + t.y) + t.z) + t.w);
}

fn scaleTile(x: f32, v: Tile) -> vec4<f32> {
  return roundF16x4(roundF16(x) * v);
}
