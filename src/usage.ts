// WebGPU flag values, so that the library does not need the GPUBufferUsage / GPUMapMode globals
// (absent in Node unless the app installs the `webgpu` package's globals).
export const Usage = {
  MAP_READ: 0x1,
  MAP_WRITE: 0x2,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  INDEX: 0x10,
  VERTEX: 0x20,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  INDIRECT: 0x100,
  QUERY_RESOLVE: 0x200,
} as const;
export const MAP_READ_MODE = 0x1;
