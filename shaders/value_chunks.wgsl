// Reading four v rows at once, shared by flash_attention_registers.wgsl and
// decode_split_registers.wgsl (their ops append this file). Uses the kernel's `v: array<Chunk>`
// binding and its V_ROW constant (elements from one v row to the next; Chunk and unpackChunk come
// from src/f16.ts).

// rows of v in chunks
const V_STEP = V_ROW / 4u;

// Chunk c of four consecutive v rows from chunk `first`: column j holds dims 4c .. 4c + 3 of row j.
fn keyChunks(first: u32, c: u32) -> mat4x4<f32> {
  return mat4x4<f32>(
    unpackChunk(v[first + c]),
    unpackChunk(v[first + V_STEP + c]),
    unpackChunk(v[first + 2u * V_STEP + c]),
    unpackChunk(v[first + 3u * V_STEP + c]),
  );
}
