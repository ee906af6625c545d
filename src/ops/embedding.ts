import embeddingSource from '../../shaders/embedding.wgsl?raw';
import embeddingBackwardSource from '../../shaders/embedding_backward.wgsl?raw';
import { checkOptions } from '../checks';
import type { IntTensor } from '../int_tensor';
import { Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { OUTPUT_OPTION_KEYS, type OutputOptions, resultTensor, submitOrFree } from './output';
import { checkF32, WG } from './train_common';

function checkIds(op: string, ids: IntTensor, table: Tensor | undefined): void {
  if (ids === undefined || ids === null || typeof ids.assertUsable !== 'function' || 'dtype' in ids) {
    throw new Error(`${op}: ids must be an IntTensor (see intTensor), received ${describe(ids)}`);
  }
  ids.assertUsable(`${op}: ids`, table?.ctx);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object' && 'dtype' in (v as object)) return `a Tensor of dtype '${(v as Tensor).dtype}'`;
  return typeof v;
}

/**
 * Token embedding (PyTorch's nn.Embedding forward) on the GPU: ids [...] (an {@link IntTensor}),
 * table [V, E] (f32) -> out [..., E], row n = table[ids[n]]. An id outside [0, V) gives a row of
 * NaN (the GPU cannot throw).
 *
 * @example
 * const ids = intTensor(ctx, [3, 1, 4], [1, 3]);
 * const x = await embedding(ids, table); // [1, 3, E]
 */
export async function embedding(ids: IntTensor, table: Tensor, options: OutputOptions = {}): Promise<Tensor> {
  checkOptions('embedding', options, OUTPUT_OPTION_KEYS);
  checkIds('embedding', ids, table);
  checkF32('embedding', 'table', table, ids.ctx);
  if (table.rank !== 2) {
    throw new Error(`embedding: table: expected rank 2 [V, E], received shape ${fmt(table.shape)}`);
  }
  const [V, E] = table.shape;
  const { ctx } = table;
  const rec = new Recording(ctx, 'embedding');
  rec.watch(table, options.out);
  const out = resultTensor(ctx, rec, 'embedding: out', options.out, [...ids.shape, E], 'f32');
  rec.dispatch({
    name: 'embedding',
    sources: [embeddingSource],
    constants: { WG },
    uniforms: { total: out.size, V, E },
    bindings: [ids.binding, table.binding, out.binding],
    workgroups: Math.ceil(out.size / WG),
  });
  await submitOrFree(rec, options.encoder, [out !== options.out ? out : undefined]);
  return out;
}

/**
 * Gradient of {@link embedding} with respect to its table: dOut [..., E] -> dTable [V, E], row v
 * the sum of dOut's rows whose id is v. Deterministic and without atomics: each element of dTable
 * scans the ids (O(V · E · rows) work, fine for the vocabularies of small models). Ids outside
 * [0, V) contribute nothing.
 */
export async function embeddingBackward(
  ids: IntTensor,
  dOut: Tensor,
  vocabSize: number,
  options: OutputOptions = {},
): Promise<Tensor> {
  checkOptions('embeddingBackward', options, OUTPUT_OPTION_KEYS);
  checkIds('embeddingBackward', ids, dOut);
  checkF32('embeddingBackward', 'dOut', dOut, ids.ctx);
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new Error(`embeddingBackward: vocabSize must be a positive integer, received ${String(vocabSize)}`);
  }
  const E = dOut.shape[dOut.rank - 1];
  if (fmt(dOut.shape) !== fmt([...ids.shape, E])) {
    throw new Error(
      `embeddingBackward: dOut must have shape [${[...ids.shape, 'E'].join(', ')}], received ${fmt(dOut.shape)}`,
    );
  }
  const { ctx } = dOut;
  const rec = new Recording(ctx, 'embeddingBackward');
  rec.watch(dOut, options.out);
  const dTable = resultTensor(ctx, rec, 'embeddingBackward: out', options.out, [vocabSize, E], 'f32');
  rec.dispatch({
    name: 'embedding_backward',
    sources: [embeddingBackwardSource],
    constants: { WG },
    uniforms: { total: vocabSize * E, E, rows: ids.size },
    bindings: [ids.binding, dOut.binding, dTable.binding],
    workgroups: Math.ceil((vocabSize * E) / WG),
  });
  await submitOrFree(rec, options.encoder, [dTable !== options.out ? dTable : undefined]);
  return dTable;
}
