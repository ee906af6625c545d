// Reading four v rows at once, shared by flash_attention_registers.wgsl and
// decode_split_registers.wgsl (their ops append this file). Uses the kernel's `v: array<Chunk>`
// binding and its DV4 constant (Chunk and unpackChunk come from src/f16.ts).

// Chunk c of four consecutive v rows from chunk `first`: column j holds dims 4c .. 4c + 3 of row j.
fn keyChunks(first: u32, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(
    unpackChunk(v[first + c]),
    unpackChunk(v[first + DV4 + c]),
    unpackChunk(v[first + 2u * DV4 + c]),
    unpackChunk(v[first + 3u * DV4 + c]),
  );
}
