// The float64 references of the sparse and programmable options, each checked against an
// independent, straightforward computation (an explicit mask, a naive loop, an extra key...).
import { describe, expect, it } from 'vitest';
import {
  type AttentionCpuOptions,
  attentionCpu,
  BLOCK_EMPTY,
  BLOCK_FULL,
  BLOCK_PARTIAL,
  createBlockMaskCpu,
  type HostTensor,
  ropeCpu,
  ropeTablesCpu,
} from '../src/reference';
import { randomArray, randomMask, rng } from './helpers';

const TOL = 1e-12;

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tol = TOL) {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  for (let n = 0; n < expected.length; n++) {
    const a = actual[n];
    const e = expected[n];
    const ok = Number.isFinite(e) ? Math.abs(a - e) <= tol * (1 + Math.abs(e)) : Object.is(a, e);
    if (!ok) expect.fail(`${label}: [${n}] got ${a}, expected ${e}`);
  }
}

interface Inputs {
  q: HostTensor;
  k: HostTensor;
  v: HostTensor;
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
}

function inputs(
  seed: number,
  B: number,
  Hq: number,
  Hkv: number,
  Lq: number,
  Lk: number,
  D = 4,
  Dv = 3,
): Inputs {
  const random = rng(seed);
  return {
    q: { data: randomArray(random, B * Hq * Lq * D, 1.5), shape: [B, Hq, Lq, D] },
    k: { data: randomArray(random, B * Hkv * Lk * D, 1.5), shape: [B, Hkv, Lk, D] },
    v: { data: randomArray(random, B * Hkv * Lk * Dv), shape: [B, Hkv, Lk, Dv] },
    B,
    Hq,
    Hkv,
    Lq,
    Lk,
    D,
    Dv,
  };
}

/**
 * Naive attention: `logit(b, h, i, j, dot)` gives the final logit of a key (-Infinity = masked),
 * `sink(h)` an optional extra logit without value.
 */
function naive(
  x: Inputs,
  logit: (b: number, h: number, i: number, j: number, dot: number) => number,
  sink?: (h: number) => number,
) {
  const { B, Hq, Hkv, Lq, Lk, D, Dv } = x;
  const output = new Float64Array(B * Hq * Lq * Dv);
  const lse = new Float64Array(B * Hq * Lq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor((h * Hkv) / Hq);
      for (let i = 0; i < Lq; i++) {
        const row = (b * Hq + h) * Lq + i;
        const logits: number[] = [];
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) {
            dot += Number(x.q.data[row * D + d]) * Number(x.k.data[((b * Hkv + hk) * Lk + j) * D + d]);
          }
          logits.push(logit(b, h, i, j, dot));
        }
        const all = sink ? [...logits, sink(h)] : logits;
        const max = Math.max(...all);
        if (max === Number.NEGATIVE_INFINITY) {
          lse[row] = max;
          continue;
        }
        const sum = all.reduce((acc, l) => acc + Math.exp(l - max), 0);
        lse[row] = max + Math.log(sum);
        for (let j = 0; j < Lk; j++) {
          const p = Math.exp(logits[j] - max) / sum;
          for (let d = 0; d < Dv; d++) {
            output[row * Dv + d] += p * Number(x.v.data[((b * Hkv + hk) * Lk + j) * Dv + d]);
          }
        }
      }
    }
  }
  return { output, lse };
}

function same(x: Inputs, a: AttentionCpuOptions, b: AttentionCpuOptions, label: string) {
  const ra = attentionCpu(x.q, x.k, x.v, a);
  const rb = attentionCpu(x.q, x.k, x.v, b);
  expectNear(ra.output.data, rb.output.data, `${label}: output`);
  expectNear(ra.lse.data, rb.lse.data, `${label}: lse`);
  expectNear(ra.weights.data, rb.weights.data, `${label}: weights`);
}

/** A bool mask [B, Hq, Lq, Lk] from a predicate. */
function boolMask(x: Inputs, allow: (b: number, h: number, i: number, j: number) => boolean): HostTensor {
  const { B, Hq, Lq, Lk } = x;
  const data = new Uint8Array(B * Hq * Lq * Lk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Lq; i++)
        for (let j = 0; j < Lk; j++) data[((b * Hq + h) * Lq + i) * Lk + j] = allow(b, h, i, j) ? 1 : 0;
  return { data, shape: [B, Hq, Lq, Lk] };
}

function additiveMask(x: Inputs, bias: (b: number, h: number, i: number, j: number) => number): HostTensor {
  const { B, Hq, Lq, Lk } = x;
  const data = new Float64Array(B * Hq * Lq * Lk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Lq; i++)
        for (let j = 0; j < Lk; j++) data[((b * Hq + h) * Lq + i) * Lk + j] = bias(b, h, i, j);
  return { data, shape: [B, Hq, Lq, Lk], dtype: 'f32' };
}

const shapes: [number, number, number, number, number][] = [
  // B, Hq, Hkv, Lq, Lk
  [2, 4, 2, 5, 5],
  [1, 2, 1, 3, 7],
  [1, 3, 3, 7, 4],
];

describe('attentionCpu: plain behaviour is unchanged', () => {
  it('equals a naive loop, with and without causal and an additive mask', () => {
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(10 + n, B, Hq, Hkv, Lq, Lk);
      const scale = 1 / Math.sqrt(x.D);
      const ref = naive(x, (_b, _h, _i, _j, dot) => dot * scale);
      const got = attentionCpu(x.q, x.k, x.v);
      expectNear(got.output.data, ref.output, 'plain output');
      expectNear(got.lse.data, ref.lse, 'plain lse');
      const off = Lk - Lq;
      const causal = naive(x, (_b, _h, i, j, dot) => (j <= i + off ? dot * 0.3 : Number.NEGATIVE_INFINITY));
      const gotCausal = attentionCpu(x.q, x.k, x.v, { causal: true, scale: 0.3 });
      expectNear(gotCausal.output.data, causal.output, 'causal output');
      expectNear(gotCausal.lse.data, causal.lse, 'causal lse');
    }
  });
});

describe('attentionCpu: softcap and scoreMod', () => {
  it('softcap equals c · tanh(s / c) in a naive loop and scoreMod doing the same', () => {
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(20 + n, B, Hq, Hkv, Lq, Lk);
      const c = 0.7;
      const got = attentionCpu(x.q, x.k, x.v, { softcap: c, scale: 1.3 });
      const ref = naive(x, (_b, _h, _i, _j, dot) => c * Math.tanh((1.3 * dot) / c));
      expectNear(got.output.data, ref.output, 'softcap output');
      expectNear(got.lse.data, ref.lse, 'softcap lse');
      same(
        x,
        { softcap: c, scale: 1.3 },
        { scoreMod: (s) => c * Math.tanh(s / c), scale: 1.3 },
        'scoreMod = softcap',
      );
      // and the cap changes something (so the check can fail)
      const plain = attentionCpu(x.q, x.k, x.v, { scale: 1.3 });
      expect(Math.abs(plain.lse.data[0] - got.lse.data[0])).toBeGreaterThan(1e-3);
      // softcap 0 is none (FlashAttention's and onnxruntime's default)
      expectNear(
        attentionCpu(x.q, x.k, x.v, { softcap: 0, scale: 1.3 }).lse.data,
        plain.lse.data,
        'softcap 0',
      );
    }
  });

  it('scoreMod comes after the softcap and before the additive mask, with (s, b, h, i, j)', () => {
    const x = inputs(30, 2, 4, 2, 3, 5);
    const mod = (s: number, b: number, h: number, i: number, j: number) =>
      s * (1 + 0.1 * h) + 0.2 * b - 0.05 * i * j;
    const bias = additiveMask(x, (b, h, i, j) => 0.1 * ((b + h + i + j) % 3));
    const got = attentionCpu(x.q, x.k, x.v, { softcap: 2, scoreMod: mod, mask: bias, scale: 0.9 });
    const ref = naive(
      x,
      (b, h, i, j, dot) => mod(2 * Math.tanh((0.9 * dot) / 2), b, h, i, j) + 0.1 * ((b + h + i + j) % 3),
    );
    expectNear(got.output.data, ref.output, 'output');
    expectNear(got.lse.data, ref.lse, 'lse');
  });

  it('a scoreMod returning -Infinity masks like a bool mask', () => {
    const x = inputs(31, 1, 2, 1, 4, 6);
    const keep = (_b: number, h: number, i: number, j: number) => (i + j + h) % 3 !== 0;
    same(
      x,
      { scoreMod: (s, b, h, i, j) => (keep(b, h, i, j) ? s : Number.NEGATIVE_INFINITY) },
      { mask: boolMask(x, keep) },
      'scoreMod -inf',
    );
  });
});

describe('attentionCpu: alibi, window, maskMod', () => {
  it('alibiSlopes equal the additive mask -slope[h] · |i + off - j|', () => {
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(40 + n, B, Hq, Hkv, Lq, Lk);
      const slopes = Array.from({ length: Hq }, (_, h) => 2 ** -(h + 1));
      const off = Lk - Lq;
      const bias = additiveMask(x, (_b, h, i, j) => -slopes[h] * Math.abs(i + off - j));
      for (const causal of [false, true]) {
        same(x, { alibiSlopes: slopes, causal }, { mask: bias, causal }, `alibi causal ${causal}`);
      }
      const plain = attentionCpu(x.q, x.k, x.v);
      const alibi = attentionCpu(x.q, x.k, x.v, { alibiSlopes: Float32Array.from(slopes) });
      expect(Math.abs(plain.lse.data[1] - alibi.lse.data[1])).toBeGreaterThan(1e-3);
      // slopes [B, Hq] (batch-major): batch item b uses its own row
      const perBatch = Array.from({ length: B * Hq }, (_, n) => 0.1 + 0.07 * n);
      const biasB = additiveMask(x, (b, h, i, j) => -perBatch[b * Hq + h] * Math.abs(i + off - j));
      same(x, { alibiSlopes: perBatch, causal: true }, { mask: biasB, causal: true }, 'alibi [B, Hq]');
    }
  });

  it('window equals the explicit bool mask i + off - left <= j <= i + off + right', () => {
    const inf = Number.POSITIVE_INFINITY;
    const windows: [number, number][] = [
      [1, 1],
      [2, 0],
      [0, 2],
      [inf, 1],
      [1, inf],
      [0, 0],
      [inf, inf],
      // a negative side has no bound (FlashAttention's -1)
      [-1, 1],
      [2, -1],
      [-1, -1],
      [-5, 0],
    ];
    const bound = (x: number) => (x < 0 ? inf : x);
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(50 + n, B, Hq, Hkv, Lq, Lk);
      const off = Lk - Lq;
      for (const [left, right] of windows) {
        for (const causal of [false, true]) {
          const mask = boolMask(
            x,
            (_b, _h, i, j) => i + off - bound(left) <= j && j <= i + off + (causal ? 0 : bound(right)),
          );
          same(x, { window: [left, right], causal }, { mask }, `window [${left}, ${right}] causal ${causal}`);
        }
      }
    }
  });

  it('maskMod equal to causal is causal; maskMod equal to a bool mask is that mask; all rules intersect', () => {
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(60 + n, B, Hq, Hkv, Lq, Lk);
      const off = Lk - Lq;
      same(x, { maskMod: (_b, _h, i, j) => j <= i + off }, { causal: true }, 'maskMod causal');
      const random = rng(600 + n);
      const bits = randomMask(random, B * Hq * Lq * Lk, 0.6);
      const at = (b: number, h: number, i: number, j: number) => bits[((b * Hq + h) * Lq + i) * Lk + j] === 1;
      const mask = { data: bits, shape: [B, Hq, Lq, Lk] };
      same(x, { maskMod: at }, { mask }, 'maskMod = bool mask');
      // every rule at once equals one explicit mask
      const both = boolMask(
        x,
        (b, h, i, j) => at(b, h, i, j) && j <= i + off && i + off - 2 <= j && (i + j) % 2 === 0,
      );
      same(
        x,
        { maskMod: (_b, _h, i, j) => (i + j) % 2 === 0, mask, causal: true, window: [2, 5] },
        { mask: both },
        'intersection',
      );
    }
  });

  it('rows with no allowed key give zeros and lse -Infinity, never NaN', () => {
    const x = inputs(70, 1, 2, 1, 5, 3);
    const r = attentionCpu(x.q, x.k, x.v, { causal: true, alibiSlopes: [0.5, 0.25], softcap: 3 });
    // off = -2: rows 0 and 1 see nothing
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < 2; i++) {
        expect(r.lse.data[h * 5 + i]).toBe(Number.NEGATIVE_INFINITY);
        for (let d = 0; d < 3; d++) expect(r.output.data[(h * 5 + i) * 3 + d]).toBe(0);
      }
    }
    expect(Array.from(r.output.data).some(Number.isNaN)).toBe(false);
  });
});

describe('attentionCpu: packed documents (cuSeqlensQ, cuSeqlensK)', () => {
  const cases = [
    { cq: [0, 2, 5, 6], ck: [0, 3, 5, 9] },
    { cq: [0, 3, 3, 7], ck: [0, 2, 4, 4] }, // an empty query doc, an empty key doc
    { cq: [0, 4], ck: [0, 4] },
  ];
  const docOf = (cu: number[], p: number) => {
    for (let d = 0; d + 1 < cu.length; d++) if (p >= cu[d] && p < cu[d + 1]) return d;
    return -1;
  };

  it('equal a block-diagonal mask with per-document causal, window and alibi', () => {
    for (const [n, { cq, ck }] of cases.entries()) {
      const Lq = cq[cq.length - 1];
      const Lk = ck[ck.length - 1];
      const x = inputs(80 + n, 1, 2, 1, Lq, Lk);
      // document-local positions and offset
      const local = (i: number, j: number) => {
        const d = docOf(cq, i);
        return { d, il: i - cq[d], jl: j - ck[d], off: ck[d + 1] - ck[d] - (cq[d + 1] - cq[d]) };
      };
      const inDoc = (i: number, j: number) => docOf(cq, i) === docOf(ck, j);
      const docs = { cuSeqlensQ: cq, cuSeqlensK: Int32Array.from(ck) };
      same(x, docs, { mask: boolMask(x, (_b, _h, i, j) => inDoc(i, j)) }, `docs ${n}`);
      const causalMask = boolMask(x, (_b, _h, i, j) => {
        const { il, jl, off } = local(i, j);
        return inDoc(i, j) && jl <= il + off;
      });
      same(x, { ...docs, causal: true }, { mask: causalMask }, `docs causal ${n}`);
      const windowMask = boolMask(x, (_b, _h, i, j) => {
        const { il, jl, off } = local(i, j);
        return inDoc(i, j) && il + off - 1 <= jl && jl <= il + off + 2;
      });
      same(x, { ...docs, window: [1, 2] }, { mask: windowMask }, `docs window ${n}`);
      const slopes = [0.3, 0.7];
      const alibi = naive(x, (_b, h, i, j, dot) => {
        if (!inDoc(i, j)) return Number.NEGATIVE_INFINITY;
        const { il, jl, off } = local(i, j);
        return dot / 2 - slopes[h] * Math.abs(il + off - jl);
      });
      const got = attentionCpu(x.q, x.k, x.v, { ...docs, alibiSlopes: slopes });
      expectNear(got.output.data, alibi.output, `docs alibi output ${n}`);
      expectNear(got.lse.data, alibi.lse, `docs alibi lse ${n}`);
    }
  });

  it('scoreMod and maskMod receive b = 0 and global (packed) positions', () => {
    const { cq, ck } = cases[0];
    const x = inputs(90, 1, 2, 1, 6, 9);
    const seen = new Set<string>();
    attentionCpu(x.q, x.k, x.v, {
      cuSeqlensQ: cq,
      cuSeqlensK: ck,
      scoreMod: (s, b, h, i, j) => {
        seen.add(`s ${b} ${h} ${i} ${j}`);
        return s;
      },
      maskMod: (b, h, i, j) => {
        seen.add(`m ${b} ${h} ${i} ${j}`);
        return true;
      },
    });
    // row 5 is the only row of document 2, whose keys are 5..8
    expect(seen.has('s 0 1 5 8')).toBe(true);
    expect(seen.has('m 0 1 5 5')).toBe(true);
    expect(seen.has('s 0 1 5 0')).toBe(false); // other documents' keys are never scored
  });
});

describe('attentionCpu: sinks', () => {
  it('equal an extra key with logit sink[h] and a zero value', () => {
    for (const [n, [B, Hq, Hkv, Lq, Lk]] of shapes.entries()) {
      const x = inputs(100 + n, B, Hq, Hkv, Lq, Lk);
      const sinks = Array.from({ length: Hq }, (_, h) => 0.5 * h - 0.3);
      const { D, Dv } = x;
      // append key Lk: k = 0 (q·k = 0), v = 0, additive mask sink[h] on that key, 0 elsewhere
      const kx = new Float64Array(B * Hkv * (Lk + 1) * D);
      const vx = new Float64Array(B * Hkv * (Lk + 1) * Dv);
      for (let r = 0; r < B * Hkv; r++) {
        for (let j = 0; j < Lk; j++) {
          for (let d = 0; d < D; d++) kx[(r * (Lk + 1) + j) * D + d] = Number(x.k.data[(r * Lk + j) * D + d]);
          for (let d = 0; d < Dv; d++)
            vx[(r * (Lk + 1) + j) * Dv + d] = Number(x.v.data[(r * Lk + j) * Dv + d]);
        }
      }
      const extended = { ...x, Lk: Lk + 1 };
      const bias = additiveMask(extended, (_b, h, _i, j) => (j === Lk ? sinks[h] : 0));
      const ref = attentionCpu(
        x.q,
        { data: kx, shape: [B, Hkv, Lk + 1, D] },
        { data: vx, shape: [B, Hkv, Lk + 1, Dv] },
        { mask: bias },
      );
      const got = attentionCpu(x.q, x.k, x.v, { sinks });
      expectNear(got.output.data, ref.output.data, 'sinks output');
      expectNear(got.lse.data, ref.lse.data, 'sinks lse');
      for (let row = 0; row < B * Hq * Lq; row++) {
        for (let j = 0; j < Lk; j++) {
          expect(got.weights.data[row * Lk + j]).toBeCloseTo(ref.weights.data[row * (Lk + 1) + j], 12);
        }
      }
      // and with a naive loop
      const nv = naive(
        x,
        (_b, _h, _i, _j, dot) => dot / 2,
        (h) => sinks[h],
      );
      expectNear(got.output.data, nv.output, 'sinks naive output');
      expectNear(got.lse.data, nv.lse, 'sinks naive lse');
    }
  });

  it('sink 0 is smooth softmax; an empty row gives zeros and lse = sink', () => {
    const x = inputs(110, 1, 2, 1, 4, 2);
    const got = attentionCpu(x.q, x.k, x.v, { sinks: [0, 1.5], causal: true });
    const ref = naive(
      x,
      (_b, _h, i, j, dot) => (j <= i - 2 ? dot / 2 : Number.NEGATIVE_INFINITY),
      (h) => [0, 1.5][h],
    );
    expectNear(got.output.data, ref.output, 'output');
    expectNear(got.lse.data, ref.lse, 'lse');
    for (let h = 0; h < 2; h++) {
      for (let i = 0; i < 2; i++) {
        expect(got.lse.data[h * 4 + i]).toBe([0, 1.5][h]);
        for (let d = 0; d < 3; d++) expect(got.output.data[(h * 4 + i) * 3 + d]).toBe(0);
      }
    }
  });
});

describe('createBlockMaskCpu', () => {
  function brute(
    allow: (b: number, h: number, i: number, j: number) => boolean,
    B: number,
    H: number,
    Lq: number,
    Lk: number,
    bq: number,
    bk: number,
  ) {
    const nq = Math.ceil(Lq / bq);
    const nk = Math.ceil(Lk / bk);
    const out: number[] = [];
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let qb = 0; qb < nq; qb++)
          for (let kb = 0; kb < nk; kb++) {
            let count = 0;
            let total = 0;
            for (let i = qb * bq; i < Math.min(Lq, (qb + 1) * bq); i++)
              for (let j = kb * bk; j < Math.min(Lk, (kb + 1) * bk); j++) {
                total++;
                if (allow(b, h, i, j)) count++;
              }
            out.push(count === 0 ? 0 : count === total ? 2 : 1);
          }
    return out;
  }

  it('causal maskMod with tiles dividing the lengths: full below the diagonal, partial on it, empty above', () => {
    const m = createBlockMaskCpu({ maskMod: (_b, _h, i, j) => j <= i, Lq: 8, Lk: 8, blockSize: 4 });
    expect(m.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(m.data)).toEqual([BLOCK_PARTIAL, BLOCK_EMPTY, BLOCK_FULL, BLOCK_PARTIAL]);
    const c = createBlockMaskCpu({ causal: true, Lq: 8, Lk: 8, blockSize: 4 });
    expect(Array.from(c.data)).toEqual(Array.from(m.data));
  });

  it('matches a brute-force classification for maskMod, bool masks, short last tiles, B and H', () => {
    const mod = (b: number, h: number, i: number, j: number) =>
      (i * 3 + j * 5 + b + h) % 7 < 3 || Math.abs(i - j) < 2;
    const m = createBlockMaskCpu({ maskMod: mod, B: 2, H: 3, Lq: 11, Lk: 13, blockSize: [4, 3] });
    expect(m.shape).toEqual([2, 3, 3, 5]);
    expect(Array.from(m.data)).toEqual(brute(mod, 2, 3, 11, 13, 4, 3));
    const random = rng(5);
    const bits = randomMask(random, 3 * 9 * 10, 0.9);
    bits.fill(0, (1 * 9 + 2) * 10, (1 * 9 + 4) * 10); // head 1, rows 2 and 3: nothing allowed
    const at = (_b: number, h: number, i: number, j: number) => bits[(h * 9 + i) * 10 + j] === 1;
    const fromMask = createBlockMaskCpu({
      mask: { data: bits, shape: [3, 9, 10] },
      H: 3,
      Lq: 9,
      Lk: 10,
      blockSize: 2,
    });
    expect(Array.from(fromMask.data)).toEqual(brute(at, 1, 3, 9, 10, 2, 2));
    expect(new Set(fromMask.data).size).toBe(3); // all three kinds occur
  });

  it('as an option of attentionCpu, equal to its maskMod (empty tiles drop keys)', () => {
    const x = inputs(120, 1, 2, 1, 9, 9);
    const mod = (_b: number, _h: number, i: number, j: number) => Math.floor(i / 3) === Math.floor(j / 3);
    const blockMask = createBlockMaskCpu({ maskMod: mod, Lq: 9, Lk: 9, blockSize: 3 });
    same(x, { maskMod: mod, blockMask }, { maskMod: mod }, 'block mask + maskMod');
    same(x, { blockMask }, { maskMod: mod }, 'block mask alone, tiles exact');
    expect(() =>
      attentionCpu(x.q, x.k, x.v, {
        blockMask: createBlockMaskCpu({ maskMod: mod, Lq: 8, Lk: 9, blockSize: 3 }),
      }),
    ).toThrow(
      'attentionCpu: blockMask must be made for B 1 (or 1), H 2 (or 1), Lq 9, Lk 9, received shape [1, 1, 3, 3] for Lq 8',
    );
  });

  it('rejects bad arguments', () => {
    expect(() => createBlockMaskCpu({ Lq: 4, Lk: 4, blockSize: 0 })).toThrow(
      'createBlockMaskCpu: blockSize must be a positive integer or [rows, keys] of positive integers, received 0',
    );
    expect(() => createBlockMaskCpu({ Lq: 0, Lk: 4, blockSize: 2 })).toThrow(
      'createBlockMaskCpu: Lq must be a positive integer, received 0',
    );
    expect(() =>
      createBlockMaskCpu({ mask: { data: [0.5], shape: [1], dtype: 'f32' }, Lq: 4, Lk: 4, blockSize: 2 }),
    ).toThrow('createBlockMaskCpu: mask must be boolean');
  });
});

describe('attentionCpu: option validation names the argument, the expected and the received value', () => {
  const x = inputs(130, 1, 2, 1, 3, 4);
  const bad: [AttentionCpuOptions, string][] = [
    [{ softcap: -1 }, 'attentionCpu: softcap must be a finite number >= 0 (0: none), received -1'],
    [
      { softcap: Number.POSITIVE_INFINITY },
      'attentionCpu: softcap must be a finite number >= 0 (0: none), received Infinity',
    ],
    [{ scoreMod: 3 as never }, 'attentionCpu: scoreMod must be a function, received 3'],
    [{ maskMod: 'j <= i' as never }, 'attentionCpu: maskMod must be a function, received j <= i'],
    [{ scoreModGrad: () => 1 }, 'attentionCpu: scoreModGrad needs scoreMod, received scoreMod undefined'],
    [{ alibiSlopes: [1] }, 'attentionCpu: alibiSlopes must have length 2 (Hq), received length 1'],
    [{ alibiSlopes: [1, 2, 3] }, 'attentionCpu: alibiSlopes must have length 2 (Hq), received length 3'],
    [{ alibiSlopes: [1, Number.NaN] }, 'attentionCpu: alibiSlopes[1] must be a finite number, received NaN'],
    [
      { alibiSlopes: 0.5 as never },
      'attentionCpu: alibiSlopes must be an array of 2 numbers (one per query head), received 0.5',
    ],
    [{ sinks: [0, 0, 0] }, 'attentionCpu: sinks must have length 2 (Hq), received length 3'],
    [
      { window: [1.5, 2] },
      'attentionCpu: window must be [left, right], each an integer (negative: no bound) or Infinity, received [1.5, 2]',
    ],
    [
      { window: 3 as never },
      'attentionCpu: window must be [left, right], each an integer (negative: no bound) or Infinity, received 3',
    ],
    [
      { cuSeqlensQ: [0, 3] },
      'attentionCpu: cuSeqlensQ needs cuSeqlensK (packed documents need both), received cuSeqlensK undefined',
    ],
    [
      { cuSeqlensK: [0, 4] },
      'attentionCpu: cuSeqlensK needs cuSeqlensQ (packed documents need both), received cuSeqlensQ undefined',
    ],
    [
      { cuSeqlensQ: [0, 2], cuSeqlensK: [0, 4] },
      'attentionCpu: cuSeqlensQ must start with 0 and end with 3 (Lq), with at least 2 entries, received [0, 2]',
    ],
    [
      { cuSeqlensQ: [0, 3], cuSeqlensK: [1, 4] },
      'attentionCpu: cuSeqlensK must start with 0 and end with 4 (Lk), with at least 2 entries, received [1, 4]',
    ],
    [
      { cuSeqlensQ: [0, 2, 1, 3], cuSeqlensK: [0, 1, 2, 4] },
      'attentionCpu: cuSeqlensQ must be non-decreasing integers, received [0, 2, 1, 3]',
    ],
    [
      { cuSeqlensQ: [0, 1, 3], cuSeqlensK: [0, 4] },
      'attentionCpu: cuSeqlensK must have the length of cuSeqlensQ (3, one more than the documents), received length 2',
    ],
  ];
  for (const [options, message] of bad) {
    it(message, () => {
      expect(() => attentionCpu(x.q, x.k, x.v, options)).toThrow(message);
    });
  }
  it('packed documents need B = 1', () => {
    const y = inputs(131, 2, 2, 1, 3, 4);
    expect(() => attentionCpu(y.q, y.k, y.v, { cuSeqlensQ: [0, 3], cuSeqlensK: [0, 4] })).toThrow(
      'attentionCpu: cuSeqlensQ/cuSeqlensK (packed documents) need B = 1, received B = 2',
    );
  });
});

describe('ropeCpu with cos/sin tables', () => {
  const random = rng(140);
  const shape: [number, number, number, number] = [2, 3, 5, 10];
  const data = randomArray(
    random,
    shape.reduce((a, b) => a * b, 1),
  );
  const x = { data, shape };

  it('equals the base/theta form for tables built from the same theta, half and interleaved, partial dims', () => {
    for (const [style, dims, base, offset] of [
      ['half', 10, 10000, 0],
      ['interleaved', 10, 10000, 3],
      ['half', 6, 500, 7],
      ['interleaved', 4, 1e6, 11],
    ] as const) {
      const { cos, sin } = ropeTablesCpu(32, dims, base);
      const interleaved = style === 'interleaved';
      const want = ropeCpu(x, { style, dims, base, offset });
      expectNear(ropeCpu(x, { cos, sin, interleaved, offset }).data, want.data, `${style} ${dims} offset`);
      const ids = { data: Int32Array.from({ length: 5 }, (_, l) => offset + l), shape: [5] };
      expectNear(
        ropeCpu(x, { cos, sin, interleaved, positionIds: ids }).data,
        want.data,
        `${style} ${dims} ids [L]`,
      );
      // the rotation does something
      expect(Math.abs(want.data[shape[3] + 1] - data[shape[3] + 1])).toBeGreaterThan(1e-6);
    }
  });

  it('position ids [B, L] give each batch its own positions', () => {
    const { cos, sin } = ropeTablesCpu(40, 8);
    const ids = { data: [4, 5, 6, 7, 8, 20, 21, 22, 23, 24], shape: [2, 5] };
    const got = ropeCpu(x, { cos, sin, positionIds: ids });
    const per = 3 * 5 * 10;
    const b0 = ropeCpu(
      { data: data.slice(0, per), shape: [1, 3, 5, 10] },
      { style: 'half', dims: 8, offset: 4 },
    );
    const b1 = ropeCpu(
      { data: data.slice(per), shape: [1, 3, 5, 10] },
      { style: 'half', dims: 8, offset: 20 },
    );
    expectNear(got.data.slice(0, per), b0.data, 'batch 0');
    expectNear(got.data.slice(per), b1.data, 'batch 1');
  });

  it('rejects bad tables and position ids', () => {
    const { cos, sin } = ropeTablesCpu(8, 8);
    expect(() => ropeCpu(x, { cos, sin: { data: [0], shape: [8, 3] } })).toThrow(
      "ropeCpu sin: expected shape [8, 4] (cos's), received [8, 3]",
    );
    expect(() => ropeCpu(x, { cos: { data: [], shape: [8, 6] }, sin })).toThrow(
      'ropeCpu cos: expected shape [maxPositions, rotaryDim / 2] with rotaryDim <= 10 (the head dim), received [8, 6]',
    );
    expect(() => ropeCpu(x, { cos, sin, positionIds: { data: [0, 1, 2], shape: [3] } })).toThrow(
      'ropeCpu positionIds: expected shape [2, 5] ([B, L]) or [5] ([L]), received [3]',
    );
    expect(() => ropeCpu(x, { cos, sin, positionIds: { data: [0, 1, 2, 3, 8], shape: [5] } })).toThrow(
      'ropeCpu positionIds: entries must be integers in [0, 8) (cos/sin rows), received 8 at index 4',
    );
    expect(() => ropeCpu(x, { cos, sin, offset: 4 })).toThrow(
      'ropeCpu: offset must be an integer in [0, 3] (positions offset..offset+L-1 within the 8 table rows), received 4',
    );
  });
});
