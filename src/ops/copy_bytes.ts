// A copy between buffers at any byte alignment, for the slices of f16 and bool tensors that a
// split call moves (copyBufferToBuffer needs offsets and sizes that are multiples of 4).
import source from '../../shaders/copy_bytes.wgsl?raw';
import { type Recording, wordRange } from '../program';

/**
 * Records a copy of `size` bytes from byte `fromOffset` of `from` to byte `toOffset` of `to` by a
 * kernel, in pieces whose bound ranges (widened to the offset alignment) fit one binding. The
 * bytes around the range in `to` keep their values.
 */
export function recordByteCopy(
  rec: Recording,
  from: GPUBuffer,
  fromOffset: number,
  to: GPUBuffer,
  toOffset: number,
  size: number,
): void {
  const align = rec.ctx.device.limits.minStorageBufferOffsetAlignment;
  const limit = rec.ctx.limits.maxStorageBufferBindingSize;
  // each bound range: the piece, up to align - 1 bytes before it and 3 after it
  const piece = Math.floor((limit - align - 4) / 4) * 4;
  for (let done = 0; done < size; done += piece) {
    const n = Math.min(piece, size - done);
    const src = wordRange(from, fromOffset + done, n, align);
    const dst = wordRange(to, toOffset + done, n, align);
    const words = Math.ceil((dst.at + n) / 4) - Math.floor(dst.at / 4);
    rec.dispatch({
      name: 'copy_bytes',
      sources: [source],
      uniforms: { src_at: src.at, dst_at: dst.at, size: n, words },
      bindings: [src.binding, dst.binding],
      workgroups: Math.ceil(words / 64),
    });
  }
}
