import { batchShape, type MatmulSettings } from '../options';
import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

/** The options of {@link matmulCpu}: those of the GPU op's math. */
export type MatmulOptions = MatmulSettings;

/** Batched C = alpha * op(A) op(B) in float64. A [..., M, K], B [..., K, N] -> C [..., M, N]. */
export function matmulCpu(a: HostTensor, b: HostTensor, options: MatmulOptions = {}): HostResult {
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new Error(`matmulCpu: a and b need rank >= 2, received ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [M, K] = options.transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const [K2, N] = options.transposeB
    ? [b.shape[rb - 1], b.shape[rb - 2]]
    : [b.shape[rb - 2], b.shape[rb - 1]];
  if (K !== K2) {
    throw new Error(
      `matmulCpu: inner dims differ: a ${fmt(a.shape)} gives K=${K}, b ${fmt(b.shape)} gives K=${K2}`,
    );
  }
  const batch = batchShape('matmulCpu', a.shape, b.shape);
  const batches = batch.reduce((x, y) => x * y, 1);
  const alpha = options.alpha ?? 1;
  const out = new Float64Array(batches * M * N);
  for (let bi = 0; bi < batches; bi++) {
    const ao = batchOffset(bi, batch, a.shape) * M * K;
    const bo = batchOffset(bi, batch, b.shape) * K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const x = Number(a.data[ao + (options.transposeA ? k * M + m : m * K + k)]);
          const y = Number(b.data[bo + (options.transposeB ? n * K + k : k * N + n)]);
          acc += x * y;
        }
        out[(bi * M + m) * N + n] = alpha * acc;
      }
    }
  }
  return { data: out, shape: [...batch, M, N] };
}

/** Index of batch `bi` (of the broadcast `batch` dims) within an operand of `shape`. */
export function batchOffset(bi: number, batch: readonly number[], shape: readonly number[]): number {
  let offset = 0;
  let stride = 1;
  for (let i = batch.length - 1; i >= 0; i--) {
    const coord = bi % batch[i];
    bi = Math.floor(bi / batch[i]);
    const dim = shape[shape.length - 2 - (batch.length - i)] ?? 1;
    offset += (dim === 1 ? 0 : coord) * stride;
    stride *= dim;
  }
  return offset;
}
