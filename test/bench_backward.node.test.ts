// The backward section of the benchmark (bench/backward.ts): which shapes a --shapes list selects,
// what a row and a target say, and that the two implementations of ours it times give the float64
// reference's gradients (the same check the bench makes before timing, here at a tiny shape).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BACKWARD_FLOP_FACTOR,
  type BackwardImpl,
  type BackwardRow,
  backwardFlops,
  gradientError,
  makeBackwardInputs,
  oursComposedBackward,
  oursFusedBackward,
  sumHeads,
} from '../bench/backward';
import { BACKWARD_COLUMN_NOTES, BACKWARD_HEADER, backwardCells, COLUMN_NOTES } from '../bench/format';
import { repeatHeads } from '../bench/impl/types';
import { type BenchShape, flops, SHAPES, selectBackward, selectShapes, selectsLayer } from '../bench/shapes';
import { backwardTargets } from '../bench/targets';
import type { Context } from '../src';
import { attentionBackwardCpu } from '../src/reference';
import { testContext } from './helpers';

const names = (s: BenchShape[]) => s.map((x) => x.name);

describe('bench backward: selection', () => {
  it('selects its four shapes for all, empty and backward; backward:NAME picks by name or group', () => {
    const four = ['prefill-512', 'prefill-1024', 'causal-1024', 'gqa-512'];
    expect(names(selectBackward(''))).toEqual(four);
    expect(names(selectBackward('all'))).toEqual(four);
    expect(names(selectBackward('backward'))).toEqual(four);
    expect(names(selectBackward('backward:prefill-512,backward:causal-1024'))).toEqual([
      'prefill-512',
      'causal-1024',
    ]);
    expect(names(selectBackward('backward:gqa'))).toEqual(['gqa-512']);
    expect(names(selectBackward('prefill,layer'))).toEqual([]);
    expect(() => selectBackward('backward:decode-512')).toThrow(/unknown backward shape decode-512/);
  });

  it('backward words select no forward shape and no decode layer', () => {
    expect(selectShapes('backward')).toEqual([]);
    expect(names(selectShapes('backward:prefill-512,gqa'))).toEqual(['gqa-512']);
    expect(selectsLayer('backward')).toBe(false);
  });

  it("counts the backward as FlashAttention-2 does: 2.5x the forward's flops", () => {
    const causal = SHAPES.find((s) => s.name === 'causal-1024')!;
    expect(BACKWARD_FLOP_FACTOR).toBe(2.5);
    expect(backwardFlops(causal)).toBe(2.5 * flops(causal));
    expect(backwardFlops(causal)).toBe((10 * 12 * 1024 * 1024 * 64) / 2);
  });
});

describe('bench backward: helpers and text', () => {
  it('sumHeads is the gradient of repeatHeads: each kv head gets the sum over its group', () => {
    const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const repeated = repeatHeads(x, 1, 2, 3, 4, 3);
    expect(Array.from(sumHeads(repeated, 1, 2, 3, 4, 3))).toEqual(Array.from(x, (v) => 3 * v));
    expect(sumHeads(x, 1, 2, 3, 4, 1)).toBe(x);
  });

  it('gradientError is the worst relative error over dq, dk, dv; NaN and length mismatches are Infinity', () => {
    const f = (xs: number[]) => Float32Array.from(xs);
    const d = (xs: number[]) => Float64Array.from(xs);
    const ref = { dq: d([1, 2]), dk: d([0]), dv: d([3]) };
    expect(gradientError({ dq: f([1, 2]), dk: f([0.5]), dv: f([3]) }, ref)).toBeCloseTo(0.5, 6);
    expect(gradientError({ dq: f([1, Number.NaN]), dk: f([0]), dv: f([3]) }, ref)).toBe(
      Number.POSITIVE_INFINITY,
    );
    expect(gradientError({ dq: f([1]), dk: f([0]), dv: f([3]) }, ref)).toBe(Number.POSITIVE_INFINITY);
  });

  it('explains every column of the backward table and names a status in place of GFLOP/s', () => {
    const generic = ['shape', 'implementation', 'note'];
    expect(BACKWARD_HEADER.filter((h) => !BACKWARD_COLUMN_NOTES[h] && !generic.includes(h))).toEqual([]);
    expect(generic.every((h) => COLUMN_NOTES[h])).toBe(true);
    const wrong: BackwardRow = {
      shape: 'prefill-512',
      impl: 'tfjs',
      label: 'tfjs',
      kind: 'library',
      status: 'wrong',
      checkErr: 0.5,
      llBytes: 8 * 2 ** 20,
    };
    const cells = backwardCells(wrong);
    expect(cells).toHaveLength(BACKWARD_HEADER.length);
    expect(cells[BACKWARD_HEADER.indexOf('GFLOP/s')]).toBe('wrong');
    expect(cells[BACKWARD_HEADER.indexOf('backward ms')]).toBe('');
    expect(cells[BACKWARD_HEADER.indexOf('L×L MiB')]).toBe('8.00');
  });

  it('targets: fused backward <= 3x our forward, fused peak below one L x L buffer; none without our row', () => {
    const row = (impl: string, ratio: number, peakBytes: number): BackwardRow => ({
      shape: 'prefill-512',
      impl,
      label: impl,
      kind: 'ours',
      status: 'ok',
      ratio,
      peakBytes,
      llBytes: 1000,
    });
    const t = backwardTargets([row('ours', 2.5, 300), row('composed', 4, 2000)]);
    expect(t.map((x) => [x.value, x.goal, x.atMost, x.met])).toEqual([
      [2.5, 3, true, true],
      [0.3, 1, true, true],
    ]);
    expect(backwardTargets([row('ours', 3.5, 1200)]).map((x) => x.met)).toEqual([false, false]);
    expect(backwardTargets([row('composed', 2, 1)])).toEqual([]);
  });
});

describe('bench backward: ours fused and composed give the float64 gradients', () => {
  let ctx: Context;
  beforeAll(async () => {
    ctx = await testContext();
  });
  afterAll(() => ctx?.destroy());

  const shapes: BenchShape[] = [
    { name: 't-prefill', group: 'prefill', B: 1, Hq: 2, Hkv: 2, Lq: 33, Lk: 33, D: 16, causal: false },
    { name: 't-causal', group: 'causal', B: 1, Hq: 2, Hkv: 2, Lq: 33, Lk: 33, D: 16, causal: true },
    { name: 't-gqa', group: 'gqa', B: 1, Hq: 4, Hkv: 2, Lq: 21, Lk: 21, D: 16, causal: false },
  ];
  for (const s of shapes) {
    // (the trained bias on one shape: its kernels are the same on the others)
    type Maker = [string, (ctx: Context) => BackwardImpl];
    const trained: Maker = [
      'oursFusedBackward with a trained bias',
      (c) => oursFusedBackward(c, undefined, true),
    ];
    const makers: Maker[] = [
      ['oursFusedBackward', (c) => oursFusedBackward(c)],
      ...(s.name === 't-gqa' ? [trained] : []),
      ['oursComposedBackward', (c) => oursComposedBackward(c)],
    ];
    for (const [name, make] of makers) {
      it(`${name} on ${s.name}: gradients, and a forward and backward call with peak bytes`, async () => {
        const impl: BackwardImpl = make(ctx);
        const inputs = makeBackwardInputs(s, 3);
        const { B, Hq, Hkv, Lq, Lk, D } = s;
        const ref = attentionBackwardCpu(
          { data: inputs.q, shape: [B, Hq, Lq, D] },
          { data: inputs.k, shape: [B, Hkv, Lk, D] },
          { data: inputs.v, shape: [B, Hkv, Lk, D] },
          { data: inputs.dO, shape: [B, Hq, Lq, D] },
          { causal: s.causal },
        );
        const prepared = await impl.prepare(inputs);
        try {
          const err = gradientError(await prepared.grads(), {
            dq: ref.dq.data,
            dk: ref.dk.data,
            dv: ref.dv.data,
          });
          expect(err).toBeLessThan(1e-4);
          const f = await prepared.forward();
          const b = await prepared.backward();
          // The backward allocates dq, dk, dv at least; composed also dP and dS (two L x L buffers).
          const grads = 4 * (B * Hq * Lq * D + 2 * B * Hkv * Lk * D);
          expect(b?.peakBytes).toBeGreaterThanOrEqual(grads);
          if (impl.id === 'composed')
            expect(b!.peakBytes!).toBeGreaterThanOrEqual(grads + 4 * B * Hq * Lq * Lk);
          expect(f?.peakBytes).toBeGreaterThan(0);
        } finally {
          prepared.dispose();
        }
      });
    }
  }
});
