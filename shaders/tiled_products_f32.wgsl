// The products of the tiled flash kernel (flash_attention_tiled.wgsl) in f32: `Tile`, the vec4 it
// stages q, k and v as in workgroup memory; toTile(x), a staged vec4 from loaded elements;
// dotTile(a, b), the dot product of two staged vec4s; scaleTile(x, v), x v. Counterparts:
// tiled_products_f16.wgsl (f16 arithmetic), tiled_products_f16_emulated.wgsl (its rounding in f32).
alias Tile = vec4<f32>;

fn toTile(x: vec4<f32>) -> Tile {
  return x;
}

fn dotTile(a: Tile, b: Tile) -> f32 {
  return dot(a, b);
}

fn scaleTile(x: f32, v: Tile) -> vec4<f32> {
  return x * v;
}
