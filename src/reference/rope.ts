import { expectRank } from '../shape';
import type { HostResult, HostTensor } from './host';

export interface RopeOptions {
  /**
   * How features pair up: 'half' rotates feature i with i + dims/2 (GPT-NeoX, Llama in Hugging Face);
   * 'interleaved' rotates 2i with 2i + 1 (GPT-J, the original RoFormer).
   */
  style: 'half' | 'interleaved';
  /** Frequency base: pair i turns by position · base^(-2i / dims). Default 10000. */
  base?: number;
  /** Leading features rotated (even, <= D); the rest pass through. Default D. */
  dims?: number;
  /** Position of row 0 (rows are positions offset, offset + 1, ...). Default 0. */
  offset?: number;
}

/**
 * Rotary position embedding in float64: x [B, H, L, D] -> [B, H, L, D], row l at position
 * `offset + l`; pair i of the first `dims` features turns by position · base^(-2i / dims).
 */
export function ropeCpu(x: HostTensor, options: RopeOptions): HostResult {
  expectRank('ropeCpu x', x.shape, 4, 'B, H, L, D');
  const [B, H, L, D] = x.shape;
  const { dims, base, offset } = checkRopeSettings('ropeCpu', D, options);
  const half = dims / 2;
  const out = Float64Array.from(x.data, Number);
  for (let r = 0; r < B * H * L; r++) {
    const pos = offset + (r % L);
    for (let i = 0; i < half; i++) {
      const angle = pos * base ** ((-2 * i) / dims);
      const [a, b] = options.style === 'half' ? [i, i + half] : [2 * i, 2 * i + 1];
      const x0 = Number(x.data[r * D + a]);
      const x1 = Number(x.data[r * D + b]);
      out[r * D + a] = x0 * Math.cos(angle) - x1 * Math.sin(angle);
      out[r * D + b] = x1 * Math.cos(angle) + x0 * Math.sin(angle);
    }
  }
  return { data: out, shape: [B, H, L, D] };
}

/**
 * Checks style, base, dims and offset against head dim D and fills in the defaults; shared by
 * `rope`, the layer and the reference.
 */
export function checkRopeSettings(
  what: string,
  D: number,
  options: Partial<RopeOptions>,
): { dims: number; base: number; offset: number } {
  if (options.style !== 'half' && options.style !== 'interleaved') {
    throw new Error(`${what}: style must be 'half' or 'interleaved', received ${String(options.style)}`);
  }
  const base = options.base ?? 10000;
  if (typeof base !== 'number' || !Number.isFinite(base) || base <= 0) {
    throw new Error(`${what}: base must be a positive number, received ${String(options.base)}`);
  }
  const dims = options.dims ?? D;
  if (!Number.isInteger(dims) || dims < 2 || dims % 2 !== 0 || dims > D) {
    throw new Error(
      `${what}: dims must be an even integer in [2, ${D}] (the head dim), received ${String(options.dims)}`,
    );
  }
  const offset = options.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0) {
    throw new Error(`${what}: offset must be a non-negative integer, received ${String(options.offset)}`);
  }
  return { dims, base, offset };
}
