// Checks of attention's plans that need no GPU (issue 12, item 6), on a fake context whose limits
// are the WebGPU defaults (or smaller, so that calls split): every (row, key) pair a row may attend
// is scored by exactly one piece of work of every tiling the plans produce (flash row blocks x key
// tiles in both forms, decode chunks x key groups, heads groups, blocks x chunks), every decode
// partial is written once; and each program the plans record stays within the adapter's
// workgroup storage, invocations per workgroup and storage buffers per stage, computed from the
// programs' own WGSL and constants.
import { describe, expect, it } from 'vitest';
import type { AttentionKernel, Context, Limits } from '../src/context';
import {
  BACKWARD_REGISTERS_WG,
  BACKWARD_WG,
  type BackwardTarget,
  backwardPasses,
  backwardPlan,
  backwardWork,
  type SplitBackwardPlan,
} from '../src/ops/attention_backward_plan';
import {
  type AttentionOptions,
  type AttentionShape,
  corePlan,
  DECODE_REGISTERS_WG,
  DECODE_WG,
  type DecodePlan,
  denseStrides,
  type FlashPlan,
  plan,
} from '../src/ops/attention_plan';
import { recordCore } from '../src/ops/attention_split';
import type { Program, Recording } from '../src/program';

/** WebGPU's default limits (what every adapter offers). */
const DEFAULT_LIMITS: Limits = {
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupsPerDimension: 65535,
};

function fakeContext(kernel: AttentionKernel, limits: Partial<Limits> = {}): Context {
  return {
    limits: { ...DEFAULT_LIMITS, ...limits },
    attentionKernel: kernel,
    hasF16: false,
    hasSubgroups: false,
  } as unknown as Context;
}

interface Case extends AttentionShape {
  causal: boolean;
}

/** Counts, per (b, h, i, j), how many pieces of work score the pair. */
class Cover {
  readonly counts: Uint8Array;
  constructor(readonly s: AttentionShape) {
    this.counts = new Uint8Array(s.B * s.Hq * s.Lq * s.Lk);
  }
  add(b: number, h: number, i: number, j: number): void {
    const { Hq, Lq, Lk } = this.s;
    this.counts[((b * Hq + h) * Lq + i) * Lk + j]++;
  }
  /** The first pair not scored exactly once where allowed (and never where not), or undefined. */
  firstWrong(allowed: (i: number, j: number) => boolean): string | undefined {
    const { B, Hq, Lq, Lk } = this.s;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hq; h++)
        for (let i = 0; i < Lq; i++)
          for (let j = 0; j < Lk; j++) {
            const n = this.counts[((b * Hq + h) * Lq + i) * Lk + j];
            if (n !== (allowed(i, j) ? 1 : 0)) return `(b ${b}, h ${h}, i ${i}, j ${j}) scored ${n} times`;
          }
    return undefined;
  }
}

const causalAllows = (causal: boolean, shift: number) => (i: number, j: number) => !causal || j <= i + shift;
const causalEnd = (p: FlashPlan | DecodePlan, i: number) =>
  p.causal ? Math.min(Math.max(i + p.causalShift + 1, 0), p.shape.Lk) : p.shape.Lk;

/**
 * Calls `score(b, h, i, j)` for every pair the plan's kernels score, mirroring their index math
 * (flash_attention*.wgsl, decode_split*.wgsl: workgroup index -> rows, loop bounds -> keys);
 * keys a kernel masks (past Lk, causal) are not scored. Returns the decode partials written per
 * row (each must be written once).
 */
function scorePairs(p: FlashPlan | DecodePlan, score: (b: number, h: number, i: number, j: number) => void) {
  const { B, Hq, Hkv, Lq, Lk } = p.shape;
  const allows = causalAllows(p.causal, p.causalShift);
  const key = (b: number, h: number, i: number, j: number) => {
    if (j < Lk && allows(i, j)) score(b, h, i, j);
  };
  const partials = new Uint8Array(B * Hq * Lq * (p.path === 'decode' ? p.partials : 0));
  if (p.path === 'flash') {
    const rows = p.rowsPerWorkgroup;
    const blocks = Math.ceil(Lq / rows);
    const step = p.kernel === 'workgroup' ? p.keysPerTile : p.kernel === 'tiled' ? 32 : 8;
    for (let flat = 0; flat < p.workgroups; flat++) {
      // the tiled form's splits over keys: flat = block * keySplits + split
      const split = flat % p.keySplits;
      const w = Math.floor(flat / p.keySplits);
      const b = Math.floor(w / (blocks * Hq));
      const h = Math.floor(w / blocks) % Hq;
      const row0 = (w % blocks) * rows;
      const last = Math.min(row0 + rows, Lq) - 1;
      const jLo = split * p.splitKeys;
      const jHi = Math.min(jLo + p.splitKeys, causalEnd(p, last));
      for (let i = row0; i <= last; i++) {
        for (let j0 = jLo; j0 < jHi; j0 += step)
          for (let jj = 0; jj < step && j0 + jj < jHi; jj++) key(b, h, i, j0 + jj);
      }
    }
  } else if (p.kernel === 'registers') {
    const groups = Math.ceil(p.partials / DECODE_REGISTERS_WG);
    for (let flat = 0; flat < p.workgroups; flat++) {
      for (let t = 0; t < DECODE_REGISTERS_WG; t++) {
        const row = Math.floor(flat / groups);
        const chunk = (flat % groups) * DECODE_REGISTERS_WG + t;
        if (row >= B * Hq * Lq || chunk >= p.partials) continue;
        partials[row * p.partials + chunk]++;
        const [b, h, i] = [Math.floor(row / (Lq * Hq)), Math.floor(row / Lq) % Hq, row % Lq];
        const jStart = chunk * p.tilesPerChunk * 4;
        const jStop = Math.min(jStart + p.tilesPerChunk * 4, Lk, causalEnd(p, i));
        for (let j = jStart; j < jStop; j++) key(b, h, i, j);
      }
    }
  } else {
    const group = Hq / Hkv;
    const RQ = p.rowsPerBlock;
    const G = DECODE_WG / p.keyLanes;
    for (let w = 0; w < p.workgroups; w++) {
      const chunk = w % p.chunks;
      const ri0 = (Math.floor(w / p.chunks) % p.rowBlocks) * RQ;
      const bh = Math.floor(w / (p.chunks * p.rowBlocks));
      const [b, hk] = [Math.floor(bh / Hkv), bh % Hkv];
      const jStart = chunk * p.tilesPerChunk * DECODE_WG;
      const jStop = Math.min(jStart + p.tilesPerChunk * DECODE_WG, Lk);
      for (let r = 0; r < RQ; r++) {
        const ri = ri0 + r;
        if (ri >= group * Lq) continue;
        const h = hk * group + Math.floor(ri / Lq);
        const i = ri % Lq;
        const row = (b * Hq + h) * Lq + i;
        if (p.folded) partials[row * p.partials + chunk]++;
        for (let g = 0; g < G; g++) {
          if (!p.folded) partials[row * p.partials + chunk * G + g]++;
          for (let j0 = jStart; j0 < jStop; j0 += DECODE_WG) {
            for (let jj = g; jj < DECODE_WG && j0 + jj < jStop; jj += G) key(b, h, i, j0 + jj);
          }
        }
      }
    }
  }
  return partials;
}

function expectCovered(p: FlashPlan | DecodePlan, what: string) {
  const cover = new Cover(p.shape);
  const partials = scorePairs(p, (b, h, i, j) => cover.add(b, h, i, j));
  expect(cover.firstWrong(causalAllows(p.causal, p.causalShift)), what).toBeUndefined();
  if (p.path === 'decode') {
    expect(
      partials.findIndex((n) => n !== 1),
      `${what}: a decode partial not written exactly once`,
    ).toBe(-1);
  }
}

const describeCase = (c: Case, kernel: string) =>
  `${kernel} B ${c.B} Hq ${c.Hq} Hkv ${c.Hkv} Lq ${c.Lq} Lk ${c.Lk} D ${c.D} Dv ${c.Dv}${c.causal ? ' causal' : ''}`;

function cases(): Case[] {
  const out: Case[] = [];
  const heads = [
    [1, 1, 1],
    [2, 4, 2],
    [1, 8, 1],
  ];
  const dims = [
    [8, 8],
    [6, 10],
    [64, 64],
    [128, 64],
    [256, 256],
  ];
  const lengths = [
    [1, 1],
    [1, 300],
    [1, 2049],
    [2, 700],
    [3, 256],
    [5, 255],
    [8, 1000],
    [9, 300],
    [65, 65],
    [130, 77],
    [40, 200],
    [70, 600],
  ];
  for (const [B, Hq, Hkv] of heads)
    for (const [D, Dv] of dims)
      for (const [Lq, Lk] of lengths)
        for (const causal of [false, true]) out.push({ B, Hq, Hkv, Lq, Lk, D, Dv, causal });
  return out;
}

describe('tilings cover every allowed (row, key) pair exactly once', () => {
  for (const kernel of ['workgroup', 'registers', 'tiled'] as const) {
    it(`flash and decode plans, ${kernel} form (and the decode kernel forced on any shape)`, () => {
      const ctx = fakeContext(kernel);
      let decodes = 0;
      for (const c of cases()) {
        const { causal, ...shape } = c;
        const inputs = { ctx, shape, dtype: 'f32' as const };
        for (const force of [undefined, 'decode'] as const) {
          const p = corePlan(inputs, { causal }, c.Lk - c.Lq, force);
          if (p.path === 'decode') decodes++;
          expectCovered(p, describeCase(c, `${p.path} (${p.kernel})`));
        }
      }
      expect(decodes).toBeGreaterThan(cases().length);
    });
  }

  it('catches a tiling that misses keys or rows', () => {
    const shape = { B: 1, Hq: 2, Hkv: 1, Lq: 1, Lk: 2000, D: 64, Dv: 64 };
    for (const kernel of ['workgroup', 'registers'] as const) {
      const p = corePlan({ ctx: fakeContext(kernel), shape, dtype: 'f32' }, {}, shape.Lk - shape.Lq);
      expect(p.path).toBe('decode');
      if (p.path !== 'decode') continue;
      expect(() => expectCovered({ ...p, tilesPerChunk: p.tilesPerChunk - 1 }, 'short chunks')).toThrow();
      // (longer chunks stay correct: the last ones score no key)
    }
    const flash = corePlan(
      { ctx: fakeContext('workgroup'), shape: { ...shape, Lq: 100 }, dtype: 'f32' },
      {},
      0,
    );
    expect(() =>
      expectCovered({ ...flash, rowsPerWorkgroup: 32 } as FlashPlan, 'short row blocks'),
    ).toThrow();
    const tiled = corePlan(
      { ctx: fakeContext('tiled'), shape: { ...shape, Lq: 100 }, dtype: 'f32' },
      {},
      0,
    ) as FlashPlan;
    expect(tiled.keySplits).toBeGreaterThan(1);
    expect(() => expectCovered({ ...tiled, splitKeys: tiled.splitKeys - 32 }, 'short splits')).toThrow();
  });

  it('tiled form: f16 products where the storage is native f16 (shader-f16), else f32', () => {
    const shape = { B: 1, Hq: 2, Hkv: 1, Lq: 40, Lk: 40, D: 64, Dv: 64 };
    const products = (kernel: AttentionKernel, hasF16: boolean, dtype: 'f32' | 'f16') => {
      const ctx = { ...fakeContext(kernel), hasF16 } as unknown as Context;
      return (corePlan({ ctx, shape, dtype }, {}, 0) as FlashPlan).products;
    };
    expect(products('tiled', true, 'f16')).toBe('f16');
    expect(products('tiled', true, 'f32')).toBe('f32');
    expect(products('tiled', false, 'f16')).toBe('f32');
    expect(products('workgroup', true, 'f16')).toBe('f32');
  });

  it('tiled form: calls with few blocks split over keys, at least 256 keys per split', () => {
    const split = (B: number, Hq: number, Lq: number, Lk: number) => {
      const shape = { B, Hq, Hkv: 1, Lq, Lk, D: 64, Dv: 64 };
      const p = corePlan({ ctx: fakeContext('tiled'), shape, dtype: 'f32' }, {}, 0) as FlashPlan;
      return [p.keySplits, p.splitKeys, p.workgroups];
    };
    // 8 blocks of 64 rows (fewer than 128 workgroups): 16 splits wanted, 4096 / 256 allowed
    expect(split(1, 8, 64, 4096)).toEqual([16, 256, 128]);
    // 64 blocks: 2 splits of 256 keys
    expect(split(1, 8, 512, 512)).toEqual([2, 256, 128]);
    // 2 blocks, 600 keys: two splits (320 and 280 keys)
    expect(split(1, 2, 40, 600)).toEqual([2, 320, 4]);
    // enough blocks, or too few keys: none
    expect(split(2, 32, 256, 4096)).toEqual([1, 4096, 256]);
    expect(split(1, 1, 64, 511)).toEqual([1, 511, 1]);
  });

  it('workgroup form: calls with few blocks split over keys (parts of >= 64 keys), never with returnWeights', () => {
    const split = (B: number, Hq: number, Lq: number, Lk: number, options: AttentionOptions = {}) => {
      const shape = { B, Hq, Hkv: 1, Lq, Lk, D: 64, Dv: 64 };
      const p = corePlan({ ctx: fakeContext('workgroup'), shape, dtype: 'f32' }, options, 0) as FlashPlan;
      return [p.keySplits, p.splitKeys, p.workgroups];
    };
    // 8 heads x 512 rows: 64 blocks, 16 splits wanted, 8 of 64 keys allowed
    expect(split(1, 8, 512, 512)).toEqual([8, 64, 512]);
    // 512 blocks: 2 splits
    expect(split(1, 8, 4096, 4096)).toEqual([2, 2048, 1024]);
    // 600 keys over 4 blocks: splits of 80 keys (a multiple of the 16-key tile), the last of 40
    expect(split(1, 4, 20, 600)).toEqual([8, 80, 32]);
    // 1024 blocks or more, returnWeights, or fewer than 128 keys: none
    expect(split(1, 16, 4096, 4096)).toEqual([1, 4096, 1024]);
    expect(split(1, 8, 512, 512, { returnWeights: true })).toEqual([1, 512, 64]);
    expect(split(1, 1, 64, 127)).toEqual([1, 127, 1]);
  });

  it('heads groups: each query head in one group, reading its own kv head', () => {
    // bindings of 4 KiB: q, k, v of a few heads at most per group
    for (const kernel of ['workgroup', 'registers'] as const) {
      const ctx = fakeContext(kernel, { maxStorageBufferBindingSize: 4096 });
      for (const c of [
        { B: 2, Hq: 8, Hkv: 2, Lq: 5, Lk: 40, D: 8, Dv: 8, causal: true },
        { B: 1, Hq: 6, Hkv: 3, Lq: 9, Lk: 60, D: 8, Dv: 4, causal: false },
        { B: 2, Hq: 4, Hkv: 4, Lq: 1, Lk: 100, D: 4, Dv: 4, causal: false },
      ]) {
        const { causal, ...shape } = c;
        const p = plan({ ctx, shape, dtype: 'f32' }, { causal });
        expect(p.path, describeCase(c, kernel)).toBe('heads');
        if (p.path !== 'heads') continue;
        const cover = new Cover(shape);
        const group = c.Hq / c.Hkv;
        for (let b = 0; b < c.B; b++) {
          for (let h0 = 0; h0 < c.Hq; h0 += p.heads) {
            const hk0 = Math.floor(h0 / group);
            const innerGroup = p.group.shape.Hq / p.group.shape.Hkv;
            scorePairs(p.group, (bi, hl, i, j) => {
              expect(bi).toBe(0);
              // the kv head the group's kernel reads is the one the query head must read
              expect(hk0 + Math.floor(hl / innerGroup)).toBe(Math.floor((h0 + hl) / group));
              cover.add(b, h0 + hl, i, j);
            });
          }
        }
        expect(
          cover.firstWrong(causalAllows(c.causal, c.Lk - c.Lq)),
          describeCase(c, kernel),
        ).toBeUndefined();
      }
    }
  });

  it('blocks x chunks: each pair in one block of rows and one chunk of keys, scored there once', () => {
    for (const kernel of ['workgroup', 'registers'] as const) {
      const ctx = fakeContext(kernel, { maxStorageBufferBindingSize: 1024 });
      for (const c of [
        { B: 1, Hq: 2, Hkv: 1, Lq: 70, Lk: 90, D: 8, Dv: 8, causal: true },
        { B: 1, Hq: 1, Hkv: 1, Lq: 33, Lk: 200, D: 16, Dv: 8, causal: false },
        { B: 1, Hq: 1, Hkv: 1, Lq: 3, Lk: 500, D: 8, Dv: 8, causal: true },
      ]) {
        const { causal, ...shape } = c;
        const options: AttentionOptions = { causal };
        const p = plan({ ctx, shape, dtype: 'f32' }, options);
        expect(p.path, describeCase(c, kernel)).toBe('blocks');
        if (p.path !== 'blocks') continue;
        const cover = new Cover(shape);
        // the loops of recordBlocks (attention_split.ts)
        for (let h = 0; h < c.Hq; h++) {
          for (let i0 = 0; i0 < c.Lq; i0 += p.rows) {
            const n = Math.min(p.rows, c.Lq - i0);
            for (let j0 = 0; j0 < c.Lk; j0 += p.keys) {
              if (causal && j0 > 0 && j0 > i0 + n - 1 + c.Lk - c.Lq) break;
              const m = Math.min(p.keys, c.Lk - j0);
              const inner = corePlan(
                { ctx, shape: { B: 1, Hq: 1, Hkv: 1, Lq: n, Lk: m, D: c.D, Dv: c.Dv }, dtype: 'f32' },
                { ...options, returnLse: true },
                c.Lk - c.Lq + i0 - j0,
              );
              scorePairs(inner, (_b, _h, i, j) => cover.add(0, h, i0 + i, j0 + j));
            }
          }
        }
        expect(
          cover.firstWrong(causalAllows(c.causal, c.Lk - c.Lq)),
          describeCase(c, kernel),
        ).toBeUndefined();
      }
    }
  });
});

/**
 * Calls `score(b, h, i, j)` (indices of the full call) for every pair the backward kernels of a
 * split plan's `targets` score, mirroring their index math (attention_backward_dq*.wgsl: a
 * workgroup's rows of one head against all the unit's keys; attention_backward_dkdv*.wgsl: a
 * workgroup's keys of one kv head against all rows of the kv head's query heads), unit by unit.
 * Checks that every unit lies in its target and reads the kv heads its query heads must read.
 */
function scoreBackward(
  ctx: Context,
  plan: SplitBackwardPlan,
  targets: BackwardTarget[],
  pass: 'dq' | 'dkdv',
  causal: boolean,
  score: (b: number, h: number, i: number, j: number) => void,
) {
  const s = plan.shape;
  const group = s.Hq / s.Hkv;
  for (const { target: t, units } of targets) {
    for (const u of units) {
      expect([
        u.b,
        u.i >= t.i,
        u.i + u.rows <= t.i + t.rows,
        u.j >= t.j,
        u.j + u.keys <= t.j + t.keys,
      ]).toEqual([t.b, true, true, true, true]);
      expect(u.h >= t.h && u.h + u.heads <= t.h + t.heads).toBe(true);
      const shape = { ...s, B: 1, Hq: u.heads, Hkv: u.kvHeads, Lq: u.rows, Lk: u.keys };
      const core = corePlan({ ctx, shape, dtype: 'f32' }, { causal }, s.Lk - s.Lq + u.i - u.j, 'flash');
      const passes = backwardPasses(ctx, core);
      const allows = causalAllows(causal, core.causalShift);
      const per = passes.kernel === 'registers' ? 4 * BACKWARD_REGISTERS_WG : BACKWARD_WG;
      const unitGroup = u.heads / u.kvHeads;
      // the kv head the unit's kernels read for each query head is the one the full call's reads
      for (let hl = 0; hl < u.heads; hl++) {
        expect(u.hk + Math.floor(hl / unitGroup)).toBe(Math.floor((u.h + hl) / group));
      }
      const pair = (hl: number, i: number, j: number) => {
        if (allows(i, j)) score(u.b, u.h + hl, u.i + i, u.j + j);
      };
      if (pass === 'dq') {
        const blocks = Math.ceil(u.rows / per);
        for (let w = 0; w < passes.dqWorkgroups; w++) {
          const hl = Math.floor(w / blocks) % u.heads;
          for (let i = (w % blocks) * per; i < Math.min(((w % blocks) + 1) * per, u.rows); i++) {
            for (let j = 0; j < u.keys; j++) pair(hl, i, j);
          }
        }
      } else {
        const blocks = Math.ceil(u.keys / per);
        for (let w = 0; w < passes.dkdvWorkgroups; w++) {
          const hk = Math.floor(w / blocks) % u.kvHeads;
          for (let j = (w % blocks) * per; j < Math.min(((w % blocks) + 1) * per, u.keys); j++) {
            for (let g = 0; g < unitGroup; g++)
              for (let i = 0; i < u.rows; i++) pair(hk * unitGroup + g, i, j);
          }
        }
      }
    }
  }
}

describe('attentionBackward split plans: each pass scores every allowed pair exactly once', () => {
  const cases: (Case & { limit: number; path: 'heads' | 'blocks' })[] = [
    { B: 2, Hq: 8, Hkv: 2, Lq: 9, Lk: 40, D: 8, Dv: 8, causal: true, limit: 4096, path: 'heads' },
    { B: 1, Hq: 4, Hkv: 1, Lq: 40, Lk: 24, D: 8, Dv: 4, causal: false, limit: 4096, path: 'heads' },
    { B: 1, Hq: 2, Hkv: 1, Lq: 70, Lk: 90, D: 8, Dv: 8, causal: true, limit: 1024, path: 'blocks' },
    { B: 2, Hq: 1, Hkv: 1, Lq: 130, Lk: 33, D: 16, Dv: 8, causal: true, limit: 2048, path: 'blocks' },
    { B: 1, Hq: 3, Hkv: 3, Lq: 5, Lk: 300, D: 4, Dv: 4, causal: false, limit: 1024, path: 'blocks' },
  ];
  const check = (ctx: Context, p: SplitBackwardPlan, work: ReturnType<typeof backwardWork>, c: Case) => {
    for (const pass of ['dq', 'dkdv'] as const) {
      const cover = new Cover(p.shape);
      scoreBackward(ctx, p, work[pass], pass, c.causal, (b, h, i, j) => cover.add(b, h, i, j));
      const wrong = cover.firstWrong(causalAllows(c.causal, c.Lk - c.Lq));
      if (wrong) throw new Error(`${pass}: ${wrong}`);
    }
  };
  for (const kernel of ['workgroup', 'registers'] as const) {
    it(`heads and blocks units, ${kernel} form`, () => {
      for (const c of cases) {
        const { causal, limit, path, ...shape } = c;
        const ctx = fakeContext(kernel, { maxStorageBufferBindingSize: limit });
        const p = backwardPlan({ ctx, shape, dtype: 'f32' }, { causal });
        expect(p.path, describeCase(c, kernel)).toBe(path);
        if (p.path === 'whole' || p.path === 'empty') continue;
        check(ctx, p, backwardWork(p, { causal }), c);
      }
    });
  }

  it('catches work that misses a unit or a target', () => {
    const c = cases[2];
    const { causal, limit, path: _, ...shape } = c;
    const ctx = fakeContext('registers', { maxStorageBufferBindingSize: limit });
    const p = backwardPlan({ ctx, shape, dtype: 'f32' }, { causal }) as SplitBackwardPlan;
    const work = backwardWork(p, { causal });
    const lastUnit = work.dkdv.map((t) => (t === work.dkdv[1] ? { ...t, units: t.units.slice(1) } : t));
    expect(() => check(ctx, p, { ...work, dkdv: lastUnit }, c)).toThrow('dkdv');
    expect(() => check(ctx, p, { ...work, dq: work.dq.slice(1) }, c)).toThrow('dq');
  });
});

/** Bytes of one WGSL type in workgroup memory (the types the kernels use there). */
const TYPE_BYTES: Record<string, number> = {
  f32: 4,
  u32: 4,
  i32: 4,
  'atomic<u32>': 4,
  f16: 2,
  'vec2<f32>': 8,
  'vec4<f32>': 16,
  'vec4<u32>': 16,
};

/** Evaluates a WGSL constant expression of integers (`BC * D4`, `64u`) with the program's constants. */
function evaluate(expr: string, constants: Record<string, number | boolean>): number {
  const js = expr.replace(/\b([A-Za-z_]\w*)\b/g, (name) => {
    const v = constants[name];
    if (typeof v !== 'number') throw new Error(`unknown constant ${name} in '${expr}'`);
    return String(v);
  });
  const cleaned = js.replace(/(\d+)u\b/g, '$1');
  if (!/^[\d\s+*/()-]+$/.test(cleaned)) throw new Error(`cannot evaluate '${expr}'`);
  return Math.floor(Function(`return (${cleaned});`)() as number);
}

/** Workgroup storage bytes, invocations per workgroup and storage bindings of a program. */
function programResources(program: Program) {
  const constants = program.constants ?? {};
  const code = program.sources.join('\n');
  let storage = 0;
  for (const m of code.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)) {
    const type = m[1].trim();
    const array = /^array<(.+),\s*([^,>]+)>$/.exec(type);
    const element = array ? array[1].trim() : type;
    const bytes = TYPE_BYTES[element];
    if (bytes === undefined) throw new Error(`${program.name}: unknown workgroup type ${element}`);
    storage += bytes * (array ? evaluate(array[2], constants) : 1);
  }
  const size = /@workgroup_size\(([^)]+)\)/.exec(code);
  if (!size) throw new Error(`${program.name}: no @workgroup_size`);
  const invocations = size[1]
    .split(',')
    .map((e) => evaluate(e.trim(), constants))
    .reduce((a, b) => a * b, 1);
  return { storage, invocations, bindings: program.bindings.length };
}

/** The programs a core plan records, captured by a recording that only collects them. */
function programsOf(p: FlashPlan | DecodePlan): Program[] {
  const programs: Program[] = [];
  const fake = {} as GPUBuffer;
  const rec = {
    // a GPU's context: the executors pick GPU-sized variants (the merge's 256 invocations)
    ctx: fakeContext('workgroup'),
    dispatch: (program: Program) => programs.push(program),
    buffer: () => fake,
  } as unknown as Recording;
  recordCore(rec, p, {
    q: fake,
    k: fake,
    v: fake,
    strides: denseStrides(p.shape, 'bhld'),
    output: fake,
    lse: p.lse ? fake : undefined,
  });
  return programs;
}

describe('every attention program fits the adapter limits', () => {
  // The decode pass's workgroup memory is fixed (at most 10 KiB, with 8 rows per block), within
  // WebGPU's minimum of 16 KiB; the flash kernel sizes its key tile by the limit, also when a context lowers it.
  for (const [name, limits, only] of [
    ['WebGPU defaults', {}, undefined],
    [
      'a context lowered to 4 KiB workgroup storage (flash kernel)',
      { maxComputeWorkgroupStorageSize: 4096 },
      'flash',
    ],
  ] as const) {
    it(`workgroup storage, invocations and storage buffers within ${name}`, () => {
      const seen = new Set<string>();
      for (const kernel of ['workgroup', 'registers'] as const) {
        const ctx = fakeContext(kernel, limits);
        for (const c of cases()) {
          const { causal, ...shape } = c;
          for (const force of [undefined, 'decode'] as const) {
            for (const returnLse of [false, true]) {
              const p = corePlan({ ctx, shape, dtype: 'f32' }, { causal, returnLse }, c.Lk - c.Lq, force);
              for (const program of programsOf(p)) {
                if (only && !program.name.startsWith(only)) continue;
                const r = programResources(program);
                const what = `${program.name} for ${describeCase(c, kernel)}: ${JSON.stringify(r)}`;
                expect(r.storage, what).toBeLessThanOrEqual(ctx.limits.maxComputeWorkgroupStorageSize);
                expect(r.invocations, what).toBeLessThanOrEqual(ctx.limits.maxComputeInvocationsPerWorkgroup);
                expect(r.invocations, what).toBeLessThanOrEqual(ctx.limits.maxComputeWorkgroupSizeX);
                expect(r.bindings, what).toBeLessThanOrEqual(ctx.limits.maxStorageBuffersPerShaderStage);
                seen.add(program.name);
              }
            }
          }
        }
      }
      const names = [
        'decode_merge',
        'decode_split',
        'decode_split_registers',
        'flash_attention',
        'flash_attention_registers',
      ];
      expect([...seen].sort()).toEqual(names.filter((n) => !only || n.startsWith(only)));
    });
  }

  it('computes workgroup storage from the WGSL and constants', () => {
    const ctx = fakeContext('workgroup');
    const shape = { B: 1, Hq: 1, Hkv: 1, Lq: 64, Lk: 64, D: 64, Dv: 64 };
    const [flash] = programsOf(corePlan({ ctx, shape, dtype: 'f32' }, {}, 0));
    // kt and vt: BC (16) keys x 16 vec4s each, and 3 u32 flags; q, k, v, mask, out, lse, weights, rules
    expect(programResources(flash)).toEqual({ storage: 2 * 16 * 16 * 16 + 12, invocations: 64, bindings: 8 });
  });
});
