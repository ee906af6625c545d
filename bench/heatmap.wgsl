// Attention weights [Lq, Lk] of one head drawn straight from the GPU buffer the op wrote: a unit
// square (rows down, keys right) placed on screen by the view matrix; each fragment reads its
// weight and its row's maximum from the storage buffer and maps weight / max through viridis.

struct View {
  // image space (x right, y up, both in [-1, 1]) -> clip space: zoom and pan
  matrix: mat4x4<f32>,
  rows: u32,
  cols: u32,
  // first element of the head's weights in the buffer
  offset: u32,
}

@group(0) @binding(0) var<uniform> view: View;
@group(0) @binding(1) var<storage, read> weights: array<f32>;

struct Varying {
  @builtin(position) position: vec4<f32>,
  // (key, query) position in [0, 1]^2, query 0 at the top
  @location(0) uv: vec2<f32>,
}

@vertex
fn vs(@builtin(vertex_index) index: u32) -> Varying {
  let corners = array(
    vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
    vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
  );
  let uv = corners[index];
  var out: Varying;
  out.position = view.matrix * vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
  out.uv = uv;
  return out;
}

// Five stops of matplotlib's viridis, linearly interpolated.
fn viridis(t: f32) -> vec3<f32> {
  let stops = array(
    vec3<f32>(0.267, 0.005, 0.329), vec3<f32>(0.231, 0.322, 0.545), vec3<f32>(0.129, 0.569, 0.549),
    vec3<f32>(0.369, 0.788, 0.384), vec3<f32>(0.992, 0.906, 0.145),
  );
  let x = clamp(t, 0.0, 1.0) * 4.0;
  let i = min(u32(x), 3u);
  return mix(stops[i], stops[i + 1u], x - f32(i));
}

@fragment
fn fs(in: Varying) -> @location(0) vec4<f32> {
  let row = min(u32(in.uv.y * f32(view.rows)), view.rows - 1u);
  let col = min(u32(in.uv.x * f32(view.cols)), view.cols - 1u);
  let base = view.offset + row * view.cols;
  var rowMax = 0.0;
  for (var j = 0u; j < view.cols; j++) {
    rowMax = max(rowMax, weights[base + j]);
  }
  let w = weights[base + col];
  // sqrt spreads the small weights of a row over more of the colour map
  let t = select(0.0, sqrt(w / rowMax), rowMax > 0.0);
  return vec4<f32>(viridis(t), 1.0);
}
