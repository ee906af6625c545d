// The products of the tiled flash kernel in f16 (the device has shader-f16; see
// tiled_products_f32.wgsl): q, k and v staged as vec4<f16> (half the workgroup memory), each
// four-term dot product and each P v product in f16, added up in f32 by the kernel.
enable f16;

alias Tile = vec4<f16>;

fn toTile(x: vec4<f32>) -> Tile {
  return vec4<f16>(x);
}

fn dotTile(a: Tile, b: Tile) -> f32 {
  return f32(dot(a, b));
}

fn scaleTile(x: f32, v: Tile) -> vec4<f32> {
  return vec4<f32>(f16(x) * v);
}
