import { fmt } from '../shape';
import type { HostResult, HostTensor } from './host';

/** Checks ids against a table of `V` rows; returns the ids as integers. */
function checkIds(what: string, ids: HostTensor, V: number): number[] {
  return Array.from(ids.data as ArrayLike<number>, (v, i) => {
    const id = Number(v);
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new Error(`${what}: ids[${i}] must be an integer in [0, ${V}), received ${String(v)}`);
    }
    return id;
  });
}

/** Token embedding in float64: ids [...], table [V, E] -> out [..., E], row n = table[ids[n]]. */
export function embeddingCpu(ids: HostTensor, table: HostTensor): HostResult {
  if (table.shape.length !== 2) {
    throw new Error(`embeddingCpu: table: expected rank 2 [V, E], received shape ${fmt(table.shape)}`);
  }
  const [V, E] = table.shape;
  const rows = checkIds('embeddingCpu', ids, V);
  const out = new Float64Array(rows.length * E);
  rows.forEach((id, n) => {
    for (let f = 0; f < E; f++) out[n * E + f] = Number(table.data[id * E + f]);
  });
  return { data: out, shape: [...ids.shape, E] };
}

/**
 * Gradient of {@link embeddingCpu} with respect to the table, in float64: dOut [..., E] ->
 * dTable [V, E], row v = the sum of dOut's rows n with ids[n] = v (zero where v never occurs).
 */
export function embeddingBackwardCpu(ids: HostTensor, dOut: HostTensor, V: number): HostResult {
  const E = dOut.shape[dOut.shape.length - 1];
  const rows = checkIds('embeddingBackwardCpu', ids, V);
  if (dOut.data.length !== rows.length * E) {
    throw new Error(
      `embeddingBackwardCpu: dOut must have shape [${[...ids.shape, E].join(', ')}], received ${fmt(dOut.shape)}`,
    );
  }
  const out = new Float64Array(V * E);
  rows.forEach((id, n) => {
    for (let f = 0; f < E; f++) out[id * E + f] += Number(dOut.data[n * E + f]);
  });
  return { data: out, shape: [V, E] };
}
