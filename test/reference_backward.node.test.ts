// attentionBackwardCpu against central finite differences of attentionCpu in float64, for every
// option and several combinations (GQA, Lq != Lk, Dv != D, masks with empty rows, sinks...).
import { describe, expect, it } from 'vitest';
import {
  type AttentionCpuOptions,
  attentionBackwardCpu,
  attentionCpu,
  type HostTensor,
} from '../src/reference';
import { rng } from './helpers';

interface Case {
  name: string;
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
  options?: (random: () => number) => AttentionCpuOptions;
  /** Query rows (b, h, i) that may attend nothing: their dq must be exactly 0. */
  emptyRows?: [number, number, number][];
}

function uniform(random: () => number, n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (random() * 2 - 1) * scale);
}

const EPS = 1e-5;
const ATOL = 1e-7;
const RTOL = 1e-6;

function loss(
  q: HostTensor,
  k: HostTensor,
  v: HostTensor,
  g: Float64Array,
  options: AttentionCpuOptions,
): number {
  const out = attentionCpu(q, k, v, options).output.data;
  let sum = 0;
  for (let n = 0; n < out.length; n++) sum += out[n] * g[n];
  return sum;
}

/** Central difference of `f` in each entry of `x` (perturbed in place and restored). */
function numericGrad(x: Float64Array, f: () => number): Float64Array {
  const grad = new Float64Array(x.length);
  for (let n = 0; n < x.length; n++) {
    const keep = x[n];
    x[n] = keep + EPS;
    const up = f();
    x[n] = keep - EPS;
    const down = f();
    x[n] = keep;
    grad[n] = (up - down) / (2 * EPS);
  }
  return grad;
}

function expectGrad(analytic: ArrayLike<number>, numeric: ArrayLike<number>, label: string) {
  expect(analytic.length, `${label}: length`).toBe(numeric.length);
  let max = 0;
  for (let n = 0; n < numeric.length; n++) {
    const a = analytic[n];
    const e = numeric[n];
    if (!(Math.abs(a - e) <= ATOL + RTOL * Math.abs(e))) {
      expect.fail(`${label}: [${n}] analytic ${a}, finite difference ${e}`);
    }
    max = Math.max(max, Math.abs(e));
  }
  // a gradient that is all zeros would pass vacuously
  expect(max, `${label}: gradient is not trivially zero`).toBeGreaterThan(1e-3);
}

function check(c: Case, seed: number) {
  const random = rng(seed);
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = c;
  const qd = uniform(random, B * Hq * Lq * D, 1.5);
  const kd = uniform(random, B * Hkv * Lk * D, 1.5);
  const vd = uniform(random, B * Hkv * Lk * Dv);
  const g = uniform(random, B * Hq * Lq * Dv);
  const q = { data: qd, shape: [B, Hq, Lq, D] };
  const k = { data: kd, shape: [B, Hkv, Lk, D] };
  const v = { data: vd, shape: [B, Hkv, Lk, Dv] };
  const options = c.options?.(random) ?? {};
  const sinks = options.sinks ? Float64Array.from(options.sinks) : undefined;
  const opts = () => (sinks ? { ...options, sinks } : options);
  const grads = attentionBackwardCpu(q, k, v, { data: g, shape: [B, Hq, Lq, Dv] }, opts());
  expect(grads.dq.shape).toEqual([B, Hq, Lq, D]);
  expect(grads.dk.shape).toEqual([B, Hkv, Lk, D]);
  expect(grads.dv.shape).toEqual([B, Hkv, Lk, Dv]);
  for (const t of [grads.dq, grads.dk, grads.dv]) expect(Array.from(t.data).some(Number.isNaN)).toBe(false);
  const f = () => loss(q, k, v, g, opts());
  expectGrad(grads.dq.data, numericGrad(qd, f), `${c.name}: dq`);
  expectGrad(grads.dk.data, numericGrad(kd, f), `${c.name}: dk`);
  expectGrad(grads.dv.data, numericGrad(vd, f), `${c.name}: dv`);
  if (sinks) {
    expect(grads.dsinks?.shape).toEqual([Hq]);
    expectGrad(grads.dsinks!.data, numericGrad(sinks, f), `${c.name}: dsinks`);
  } else {
    expect(grads.dsinks).toBeUndefined();
  }
  for (const [b, h, i] of c.emptyRows ?? []) {
    const row = (b * Hq + h) * Lq + i;
    expect(
      Array.from(grads.dq.data.slice(row * D, (row + 1) * D)),
      `${c.name}: empty row ${[b, h, i]}`,
    ).toEqual(new Array(D).fill(0));
  }
}

const mod = (s: number, b: number, h: number, i: number, j: number) =>
  s + 0.3 * Math.sin(2 * s) + 0.1 * h - 0.05 * (i - j) + 0.02 * b;
const modGrad = (s: number) => 1 + 0.6 * Math.cos(2 * s);

const cases: Case[] = [
  { name: 'plain', B: 2, Hq: 2, Hkv: 2, Lq: 3, Lk: 4, D: 3, Dv: 2 },
  { name: 'GQA, Dv > D', B: 1, Hq: 4, Hkv: 2, Lq: 3, Lk: 5, D: 3, Dv: 4 },
  { name: 'MQA, scale', B: 2, Hq: 3, Hkv: 1, Lq: 2, Lk: 3, D: 2, Dv: 2, options: () => ({ scale: 0.9 }) },
  {
    name: 'causal, Lq < Lk',
    B: 1,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 5,
    D: 3,
    Dv: 2,
    options: () => ({ causal: true }),
  },
  {
    name: 'causal, Lq > Lk (empty rows)',
    B: 1,
    Hq: 2,
    Hkv: 2,
    Lq: 5,
    Lk: 3,
    D: 2,
    Dv: 3,
    options: () => ({ causal: true }),
    emptyRows: [
      [0, 0, 0],
      [0, 1, 1],
    ],
  },
  {
    name: 'bool mask [Lq, Lk] broadcast, one empty row',
    B: 2,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 4,
    D: 3,
    Dv: 2,
    options: () => ({ mask: { data: Uint8Array.from([1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0]), shape: [3, 4] } }),
    emptyRows: [
      [0, 0, 1],
      [1, 1, 1],
    ],
  },
  {
    name: 'additive mask [1, Hq, 1, Lk] broadcast with -Infinity',
    B: 2,
    Hq: 2,
    Hkv: 2,
    Lq: 3,
    Lk: 4,
    D: 2,
    Dv: 2,
    options: () => ({
      mask: {
        data: [0.5, Number.NEGATIVE_INFINITY, -1, 0.2, 0, 0.3, -0.4, 1],
        shape: [1, 2, 1, 4],
        dtype: 'f32',
      },
    }),
  },
  {
    name: 'softcap',
    B: 1,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 4,
    D: 3,
    Dv: 2,
    options: () => ({ softcap: 0.8, scale: 1.5 }),
  },
  {
    name: 'scoreMod (finite difference)',
    B: 2,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 3,
    D: 2,
    Dv: 2,
    options: () => ({ scoreMod: mod }),
  },
  {
    name: 'scoreMod with scoreModGrad',
    B: 1,
    Hq: 2,
    Hkv: 2,
    Lq: 3,
    Lk: 4,
    D: 3,
    Dv: 2,
    options: () => ({ scoreMod: mod, scoreModGrad: modGrad }),
  },
  {
    name: 'alibi, causal, Lq < Lk',
    B: 1,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 5,
    D: 2,
    Dv: 2,
    options: () => ({ alibiSlopes: [0.5, 0.125], causal: true }),
  },
  { name: 'window', B: 1, Hq: 2, Hkv: 2, Lq: 5, Lk: 5, D: 2, Dv: 2, options: () => ({ window: [1, 2] }) },
  {
    name: 'maskMod',
    B: 2,
    Hq: 2,
    Hkv: 1,
    Lq: 4,
    Lk: 4,
    D: 2,
    Dv: 2,
    options: () => ({ maskMod: (b, h, i, j) => (i + j + b + h) % 3 !== 1 }),
  },
  {
    name: 'packed documents, causal, alibi (an empty query doc and rows with no keys)',
    B: 1,
    Hq: 2,
    Hkv: 1,
    Lq: 7,
    Lk: 6,
    D: 2,
    Dv: 3,
    options: () => ({
      cuSeqlensQ: [0, 2, 2, 7],
      cuSeqlensK: [0, 3, 4, 6],
      causal: true,
      alibiSlopes: [0.25, 0.5],
    }),
    // document 2: 5 rows, 2 keys, offset -3: rows 2, 3, 4 see nothing
    emptyRows: [
      [0, 0, 2],
      [0, 1, 4],
    ],
  },
  {
    name: 'sinks',
    B: 2,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 4,
    D: 2,
    Dv: 2,
    options: () => ({ sinks: [0.3, -0.5] }),
  },
  {
    name: 'sinks with empty rows (causal, Lq > Lk)',
    B: 1,
    Hq: 2,
    Hkv: 2,
    Lq: 4,
    Lk: 2,
    D: 2,
    Dv: 2,
    options: () => ({ sinks: [0, 1], causal: true }),
    emptyRows: [
      [0, 0, 0],
      [0, 1, 1],
    ],
  },
  {
    name: 'GQA + softcap + scoreMod + alibi + window + bool mask + sinks, Lq != Lk, Dv != D',
    B: 2,
    Hq: 4,
    Hkv: 2,
    Lq: 3,
    Lk: 5,
    D: 3,
    Dv: 2,
    options: (random) => ({
      softcap: 1.2,
      scoreMod: mod,
      alibiSlopes: [0.5, 0.25, 0.125, 0.0625],
      window: [2, 1],
      mask: {
        data: Uint8Array.from({ length: 2 * 3 * 5 }, () => (random() < 0.8 ? 1 : 0)),
        shape: [2, 1, 3, 5],
      },
      sinks: [0.1, -0.2, 0.3, 0],
    }),
  },
  {
    name: 'documents + sinks + softcap + maskMod + GQA',
    B: 1,
    Hq: 4,
    Hkv: 2,
    Lq: 5,
    Lk: 6,
    D: 2,
    Dv: 3,
    options: () => ({
      cuSeqlensQ: [0, 3, 5],
      cuSeqlensK: [0, 2, 6],
      softcap: 2,
      maskMod: (_b, h, i, j) => (h + i + j) % 4 !== 0,
      sinks: [0.5, 0, -0.5, 1],
      causal: true,
    }),
  },
  {
    // with its mask fixed by the seed, dropout is a fixed elementwise factor: differentiable
    name: 'dropout (a fixed mask), GQA, causal, bool mask',
    B: 2,
    Hq: 4,
    Hkv: 2,
    Lq: 4,
    Lk: 5,
    D: 3,
    Dv: 2,
    options: (random) => ({
      dropout: { p: 0.4, seed: 12345 },
      causal: true,
      mask: { data: Uint8Array.from({ length: 4 * 5 }, () => (random() < 0.8 ? 1 : 0)), shape: [4, 5] },
    }),
  },
  {
    name: 'dropout with sinks and softcap',
    B: 1,
    Hq: 2,
    Hkv: 1,
    Lq: 3,
    Lk: 6,
    D: 2,
    Dv: 3,
    options: () => ({ dropout: { p: 0.25, seed: 4000000000 }, sinks: [0.2, -0.4], softcap: 1.5 }),
  },
];

describe('attentionBackwardCpu equals central finite differences of attentionCpu', () => {
  for (const [n, c] of cases.entries()) {
    it(c.name, () => check(c, 1000 + n));
  }
});

describe('attentionBackwardCpu: structure', () => {
  it('GQA dk, dv are the sums over the query heads of a repeated-kv computation', () => {
    const random = rng(7);
    const [B, Hq, Hkv, Lq, Lk, D, Dv] = [2, 4, 2, 3, 4, 3, 2];
    const q = { data: uniform(random, B * Hq * Lq * D), shape: [B, Hq, Lq, D] };
    const kd = uniform(random, B * Hkv * Lk * D);
    const vd = uniform(random, B * Hkv * Lk * Dv);
    const dO = { data: uniform(random, B * Hq * Lq * Dv), shape: [B, Hq, Lq, Dv] };
    const repeat = (x: Float64Array, F: number) => {
      const out = new Float64Array(B * Hq * Lk * F);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < Hq; h++)
          out.set(
            x.subarray((b * Hkv + Math.floor(h / 2)) * Lk * F, (b * Hkv + Math.floor(h / 2) + 1) * Lk * F),
            (b * Hq + h) * Lk * F,
          );
      return out;
    };
    const options = { causal: true, softcap: 1.5 };
    const grouped = attentionBackwardCpu(
      q,
      { data: kd, shape: [B, Hkv, Lk, D] },
      { data: vd, shape: [B, Hkv, Lk, Dv] },
      dO,
      options,
    );
    const full = attentionBackwardCpu(
      q,
      { data: repeat(kd, D), shape: [B, Hq, Lk, D] },
      { data: repeat(vd, Dv), shape: [B, Hq, Lk, Dv] },
      dO,
      options,
    );
    for (const [name, F] of [
      ['dk', D],
      ['dv', Dv],
    ] as const) {
      const g = grouped[name].data;
      const f = full[name].data;
      for (let b = 0; b < B; b++)
        for (let hk = 0; hk < Hkv; hk++)
          for (let n = 0; n < Lk * F; n++) {
            const sum = f[(b * Hq + 2 * hk) * Lk * F + n] + f[(b * Hq + 2 * hk + 1) * Lk * F + n];
            expect(g[(b * Hkv + hk) * Lk * F + n]).toBeCloseTo(sum, 12);
          }
    }
    expect(Array.from(grouped.dq.data)).toEqual(Array.from(full.dq.data));
  });

  it('a fully masked input gives all-zero gradients, no NaN', () => {
    const q = { data: new Float64Array(2 * 3 * 2).fill(1), shape: [1, 2, 3, 2] };
    const k = { data: new Float64Array(4 * 2).fill(1), shape: [1, 1, 4, 2] };
    const v = { data: new Float64Array(4 * 2).fill(1), shape: [1, 1, 4, 2] };
    const dO = { data: new Float64Array(2 * 3 * 2).fill(1), shape: [1, 2, 3, 2] };
    const r = attentionBackwardCpu(q, k, v, dO, { mask: { data: [false], shape: [1] }, sinks: [0, 2] });
    for (const t of [r.dq, r.dk, r.dv, r.dsinks!])
      expect(Array.from(t.data).every((x) => x === 0)).toBe(true);
  });

  it('rejects a dOutput of the wrong shape and bad options, naming them', () => {
    const q = { data: new Float64Array(6), shape: [1, 1, 3, 2] };
    const k = { data: new Float64Array(8), shape: [1, 1, 4, 2] };
    const v = { data: new Float64Array(12), shape: [1, 1, 4, 3] };
    expect(() => attentionBackwardCpu(q, k, v, { data: new Float64Array(6), shape: [1, 1, 3, 2] })).toThrow(
      "attentionBackwardCpu dOutput: expected shape [1, 1, 3, 3] (the output's), received [1, 1, 3, 2]",
    );
    const dO = { data: new Float64Array(9), shape: [1, 1, 3, 3] };
    expect(() => attentionBackwardCpu(q, k, v, dO, { softcap: -1 })).toThrow(
      'attentionBackwardCpu: softcap must be a finite number >= 0 (0: none), received -1',
    );
    expect(() => attentionBackwardCpu(q, k, v, dO, { sinks: [0, 1] })).toThrow(
      'attentionBackwardCpu: sinks must have length 1 (Hq), received length 2',
    );
  });
});
