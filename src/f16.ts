// IEEE 754 half precision: conversion on the CPU for uploading and reading f16 tensors, and the
// WGSL helpers through which kernels load and store f32, packed-f16 or native-f16 elements.

import type { Context } from './context';
import type { DType } from './tensor';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The f16 bit pattern nearest to `x` (round to nearest, ties to even; overflow gives Infinity,
 * NaN gives a quiet NaN).
 */
export function toF16Bits(x: number): number {
  f32[0] = x;
  // Round to odd on the way to f32 (set the last bit when inexact) so that the second rounding,
  // to f16, rounds the double `x` correctly: f32 keeps 13 more bits than f16 needs.
  if (f32[0] !== x && !Number.isNaN(x) && (u32[0] & 1) === 0)
    u32[0] += Math.abs(x) > Math.abs(f32[0]) ? 1 : -1;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf or NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to Infinity
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    const m = mant | 0x800000; // subnormal: shift the implicit bit in
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rounded = (m + half - 1 + ((m >>> shift) & 1)) >>> shift;
    return sign | rounded;
  }
  const rounded = mant + 0xfff + ((mant >>> 13) & 1);
  if (rounded & 0x800000) return e + 1 >= 0x1f ? sign | 0x7c00 : sign | ((e + 1) << 10);
  return sign | (e << 10) | (rounded >>> 13);
}

/** The number an f16 bit pattern stands for. */
export function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Float32Array -> f16 bits, one Uint16 per element. */
export function float32ToF16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toF16Bits(values[i]);
  return out;
}

/** f16 bits -> Float32Array. */
export function f16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fromF16Bits(bits[i]);
  return out;
}

/**
 * How a kernel holds the elements of its float tensors: `f32`; `f16-packed`, two halves per u32
 * read with unpack2x16float (works everywhere); `f16`, native `array<f16>` (needs shader-f16).
 */
export type ElementStorage = 'f32' | 'f16-packed' | 'f16';

/** The storage a kernel uses for tensors of `dtype` on `ctx`: native f16 where the device has it. */
export function elementStorage(ctx: Context, dtype: DType): ElementStorage {
  if (dtype === 'f32') return 'f32';
  return ctx.hasF16 ? 'f16' : 'f16-packed';
}

/**
 * WGSL that a kernel reading `Stored` elements (and, when `writesOut`, writing an
 * `out: array<OutStored>` binding) is specialised with. It defines
 * - `Stored`: the element type of the input arrays; `wordOf(e)`: the array index that holds
 *   element `e`; `unpackAt(word, e)`: element `e` of that word as f32;
 * - when `writesOut`: `OutStored`, the element type of `out`, and `storeOut(e, x)`, which writes
 *   element `e`. Packed f16 ORs each half into its word, so two invocations whose rows share a word
 *   (odd row lengths) never race; `out` must start zeroed.
 * Arithmetic stays f32 in every variant. Must come first in the module (`enable f16;`).
 */
export function elementPrelude(storage: ElementStorage, writesOut: boolean): string {
  return PRELUDE_TEXTS[storage][writesOut ? 1 : 0];
}

/**
 * WGSL, after {@link elementPrelude}, for kernels that read their inputs four elements at a time
 * (rows whose length is a multiple of 4): `Chunk`, the array element holding elements 4n .. 4n + 3,
 * and `unpackChunk(chunk)`, those elements as vec4<f32>.
 */
export function chunkPrelude(storage: ElementStorage): string {
  return CHUNKS[storage];
}

/**
 * WGSL, after {@link elementPrelude} (and {@link chunkPrelude} when `vec4`), for a kernel whose
 * input arrays have element type `Input` and are read `V` elements at a time: `inputIndex(e)`,
 * the array index that holds element e (a multiple of V), and `inputAt(word, e)`, elements
 * e .. e + V - 1 as the first V components of a vec4<f32>, the others zero. With `vec4` the
 * reads are whole Chunks (rows of a multiple of 4 elements); without, single elements.
 */
export function inputPrelude(vec4: boolean): string {
  return vec4
    ? `alias Input = Chunk;
const V = 4u;
fn inputIndex(e: u32) -> u32 { return e / 4u; }
fn inputAt(w: Input, e: u32) -> vec4<f32> { return unpackChunk(w); }
`
    : `alias Input = Stored;
const V = 1u;
fn inputIndex(e: u32) -> u32 { return wordOf(e); }
fn inputAt(w: Input, e: u32) -> vec4<f32> { return vec4<f32>(unpackAt(w, e), 0.0, 0.0, 0.0); }
`;
}

const CHUNKS: Record<ElementStorage, string> = {
  f32: `alias Chunk = vec4<f32>;
fn unpackChunk(c: Chunk) -> vec4<f32> { return c; }
`,
  'f16-packed': `alias Chunk = vec2<u32>;
fn unpackChunk(c: Chunk) -> vec4<f32> { return vec4<f32>(unpack2x16float(c.x), unpack2x16float(c.y)); }
`,
  f16: `alias Chunk = vec4<f16>;
fn unpackChunk(c: Chunk) -> vec4<f32> { return vec4<f32>(c); }
`,
};

const PRELUDES: Record<ElementStorage, [load: string, store: string]> = {
  f32: [
    `alias Stored = f32;
fn wordOf(e: u32) -> u32 { return e; }
fn unpackAt(w: f32, e: u32) -> f32 { return w; }
`,
    `alias OutStored = f32;
fn storeOut(e: u32, x: f32) { out[e] = x; }
`,
  ],
  'f16-packed': [
    `alias Stored = u32;
fn wordOf(e: u32) -> u32 { return e >> 1u; }
fn unpackAt(w: u32, e: u32) -> f32 { return unpack2x16float(w)[e & 1u]; }
`,
    `alias OutStored = atomic<u32>;
fn storeOut(e: u32, x: f32) {
  atomicOr(&out[e >> 1u], (pack2x16float(vec2<f32>(x, 0.0)) & 0xffffu) << ((e & 1u) * 16u));
}
`,
  ],
  f16: [
    `enable f16;
alias Stored = f16;
fn wordOf(e: u32) -> u32 { return e; }
fn unpackAt(w: f16, e: u32) -> f32 { return f32(w); }
`,
    `alias OutStored = f16;
fn storeOut(e: u32, x: f32) { out[e] = f16(x); }
`,
  ],
};

/** [load, load + store] of each storage, joined once: the same strings on every call (cheap keys). */
const PRELUDE_TEXTS = Object.fromEntries(
  Object.entries(PRELUDES).map(([storage, [load, store]]) => [storage, [load, load + store]]),
) as Record<ElementStorage, [load: string, loadStore: string]>;
