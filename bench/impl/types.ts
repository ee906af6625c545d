// What every implementation in the benchmark provides, and the input data they share.
import type { BenchShape } from '../shapes';

/** A Float32Array on an ArrayBuffer (what writeBuffer accepts). */
export type F32 = Float32Array<ArrayBuffer>;

/** Inputs of one problem, host side, in the library's layout. */
export interface BenchInputs {
  shape: BenchShape;
  /** [B, Hq, Lq, D] */
  q: F32;
  /** [B, Hkv, Lk, D] */
  k: F32;
  /** [B, Hkv, Lk, D] */
  v: F32;
  /** Additive bias [Lq, Lk] (0 or -1e9) for all heads, instead of the shape's causal one. */
  bias?: F32;
  /** GroupQueryAttention's local_window_size: each row attends itself and `window` - 1 keys before it. */
  window?: number;
}

/** Measurements only our own op can give. */
export interface CallStats {
  /** performance.now() when the GPU had finished the call (work after it, e.g. reading timestamps, is not timed). */
  doneAt?: number;
  /** GPU time of the call's passes from timestamp queries (absent without `timestamp-query`). */
  gpuMs?: number;
  /** Compute dispatches the call encoded. */
  dispatches?: number;
  /** Bytes the call allocated at its peak beyond its inputs (output included). */
  peakBytes?: number;
  /** Which kernel the op chose, when it says. */
  kernel?: string;
}

/** One implementation set up for one problem: inputs uploaded, ready to be called. */
export interface Prepared {
  /** The GPU device it runs on: the bench fails a row whose calls raise a WebGPU error there. */
  device?: GPUDevice;
  /** One call, resolved once the device has finished it. */
  run(): Promise<CallStats | undefined>;
  /** One call, its output read back as [B, Hq, Lq, D]. */
  output(): Promise<Float32Array>;
  dispose(): void;
}

export type ImplKind = 'ours' | 'library' | 'floor' | 'cpu';

export interface Impl {
  id: string;
  label: string;
  kind: ImplKind;
  /** Skipped above --max-slow-L. */
  slow: boolean;
  /** Why this implementation cannot run `shape`, or undefined when it can. */
  unsupported?(shape: BenchShape): string | undefined;
  /** A note on how it ran `shape` (e.g. a workaround), shown in the table. */
  note?(shape: BenchShape): string | undefined;
  prepare(inputs: BenchInputs): Promise<Prepared>;
  dispose(): void;
}

/**
 * [B, H, L, D] -> [B, L, H*D] (the "BSD" layout of onnxruntime's attention ops) or back
 * (`inverse`).
 */
export function toBsd(x: Float32Array, B: number, H: number, L: number, D: number, inverse = false): F32 {
  const out = new Float32Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let l = 0; l < L; l++) {
        const bhld = ((b * H + h) * L + l) * D;
        const blhd = ((b * L + l) * H + h) * D;
        if (inverse) out.set(x.subarray(blhd, blhd + D), bhld);
        else out.set(x.subarray(bhld, bhld + D), blhd);
      }
    }
  }
  return out;
}

/** [B, Hkv, L, D] -> [B, Hkv * group, L, D], each kv head repeated `group` times (repeat_interleave). */
export function repeatHeads<T extends Float32Array>(
  x: T,
  B: number,
  Hkv: number,
  L: number,
  D: number,
  group: number,
): T | F32 {
  if (group === 1) return x;
  const block = L * D;
  const out = new Float32Array(x.length * group);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv; h++) {
      const src = x.subarray((b * Hkv + h) * block, (b * Hkv + h + 1) * block);
      for (let g = 0; g < group; g++) out.set(src, ((b * Hkv + h) * group + g) * block);
    }
  }
  return out;
}

/** Additive causal bias [Lq, Lk], bottom-right aligned: 0 where key j may be attended, else -1e9. */
export function causalBias(Lq: number, Lk: number): F32 {
  const bias = new Float32Array(Lq * Lk);
  for (let i = 0; i < Lq; i++) {
    for (let j = 0; j < Lk; j++) if (j > i + Lk - Lq) bias[i * Lk + j] = -1e9;
  }
  return bias;
}
