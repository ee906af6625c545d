import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Context, embedding, embeddingBackward, intTensor } from '../src';
import { embeddingBackwardCpu, embeddingCpu } from '../src/reference';
import { checked, expectClose, F32_TOL, randomArray, rng, testContext } from './helpers';

let ctx: Context;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx?.destroy());

interface Case {
  idShape: number[];
  V: number;
  E: number;
  seed?: number;
}

async function check(c: Case) {
  const random = rng(c.seed ?? 3);
  const rows = c.idShape.reduce((a, b) => a * b, 1);
  const idData = Array.from({ length: rows }, () => Math.floor(random() * c.V));
  const tableData = randomArray(random, c.V * c.E);
  const dOutData = randomArray(random, rows * c.E);
  const ids = { data: idData, shape: c.idShape };
  const ref = embeddingCpu(ids, { data: tableData, shape: [c.V, c.E] });
  const refGrad = embeddingBackwardCpu(ids, { data: dOutData, shape: [...c.idShape, c.E] }, c.V);
  await checked(ctx, async () => {
    const idT = intTensor(ctx, idData, c.idShape);
    const table = ctx.tensor(tableData, [c.V, c.E]);
    const dOut = ctx.tensor(dOutData, [...c.idShape, c.E]);
    const out = await embedding(idT, table);
    expect(out.shape).toEqual([...c.idShape, c.E]);
    expectClose(await out.read(), ref.data, F32_TOL, `forward ${JSON.stringify(c)}`);
    const dTable = await embeddingBackward(idT, dOut, c.V);
    expect(dTable.shape).toEqual([c.V, c.E]);
    expectClose(await dTable.read(), refGrad.data, F32_TOL, `backward ${JSON.stringify(c)}`);
    for (const t of [idT, table, dOut, out, dTable]) t.destroy();
  });
}

describe('embedding and its scatter-add backward match float64', () => {
  it('one id, one feature', () => check({ idShape: [1], V: 1, E: 1 }));
  it('odd sizes, repeated ids, unused rows', () => check({ idShape: [3, 7], V: 5, E: 13 }));
  it('more elements than a workgroup, vocabulary larger than the ids', () =>
    check({ idShape: [2, 33], V: 100, E: 70 }));
  it('many repeats of few ids (sums of 300 rows)', () => check({ idShape: [300], V: 3, E: 5, seed: 8 }));
  it('same inputs, same bits (deterministic)', async () => {
    const random = rng(4);
    const idT = intTensor(
      ctx,
      Array.from({ length: 200 }, () => Math.floor(random() * 4)),
      [200],
    );
    const dOut = ctx.tensor(randomArray(random, 200 * 9), [200, 9]);
    const a = await embeddingBackward(idT, dOut, 4);
    const b = await embeddingBackward(idT, dOut, 4);
    expect(Array.from(await a.read())).toEqual(Array.from(await b.read()));
    for (const t of [idT, dOut, a, b]) t.destroy();
  });
  it('an id outside [0, V) gives a NaN row on the GPU, an error in the reference', async () => {
    const idT = intTensor(ctx, [1, 7, -2], [3]);
    const table = ctx.tensor([1, 2, 3, 4], [2, 2]);
    const out = await embedding(idT, table);
    const data = Array.from(await out.read());
    expect(data.slice(0, 2)).toEqual([3, 4]);
    expect(data.slice(2).every(Number.isNaN)).toBe(true);
    expect(() => embeddingCpu({ data: [1, 7], shape: [2] }, { data: [1, 2, 3, 4], shape: [2, 2] })).toThrow(
      'embeddingCpu: ids[1] must be an integer in [0, 2), received 7',
    );
    for (const t of [idT, table, out]) t.destroy();
  });
});

describe('the float64 backward equals central differences of the forward', () => {
  it('d/dtable of Σ dOut · embedding(ids, table)', () => {
    const random = rng(9);
    const V = 4;
    const E = 3;
    const ids = { data: [2, 0, 2, 3, 2], shape: [5] };
    const table = Float64Array.from(randomArray(random, V * E));
    const dOut = Float64Array.from(randomArray(random, 5 * E));
    const f = (t: Float64Array) =>
      embeddingCpu(ids, { data: t, shape: [V, E] }).data.reduce((s, y, i) => s + y * dOut[i], 0);
    const grad = embeddingBackwardCpu(ids, { data: dOut, shape: [5, E] }, V).data;
    const h = 1e-6;
    const fd = table.map((_, i) => {
      const up = table.slice();
      const down = table.slice();
      up[i] += h;
      down[i] -= h;
      return (f(up) - f(down)) / (2 * h);
    });
    expectClose(grad, fd, { atol: 1e-7, rtol: 1e-7 }, 'finite differences');
  });
});

describe('bad input throws an error naming the argument', () => {
  it('ids that are not an IntTensor, a table of the wrong rank, a dOut of the wrong shape', async () => {
    const table = ctx.tensor([1, 2, 3, 4], [2, 2]);
    const f = ctx.tensor([0, 1], [2]);
    await expect(embedding(f as never, table)).rejects.toThrow(
      "embedding: ids must be an IntTensor (see intTensor), received a Tensor of dtype 'f32'",
    );
    const idT = intTensor(ctx, [0, 1], [2]);
    await expect(embedding(idT, f)).rejects.toThrow(
      'embedding: table: expected rank 2 [V, E], received shape [2]',
    );
    await expect(embeddingBackward(idT, table, 0)).rejects.toThrow(
      'embeddingBackward: vocabSize must be a positive integer, received 0',
    );
    const dOut = ctx.tensor(new Float32Array(6), [3, 2]);
    await expect(embeddingBackward(idT, dOut, 2)).rejects.toThrow(
      'embeddingBackward: dOut must have shape [2, E], received [3, 2]',
    );
    expect(() => intTensor(ctx, [0.5], [1])).toThrow(
      'intTensor: data[0] must be an integer in [-2^31, 2^31), received 0.5',
    );
    idT.destroy();
    await expect(embedding(idT, table)).rejects.toThrow('embedding: ids: tensor [2] was destroyed');
    for (const t of [table, f, dOut]) t.destroy();
  });
});
