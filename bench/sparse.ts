// The sparse section of the benchmark: sliding windows, block-sparse masks and packed documents,
// each timed against the same call with a dense bool mask (ours), against full attention (causal
// for the causal patterns, unmasked for block masks) and against the fastest peer that can express
// the pattern: onnxruntime-web's MultiHeadAttention with the pattern as a dense additive
// attention_bias [L, L], and for causal windows its GroupQueryAttention with local_window_size.
// Targets (issue 11): time scales with the computed tiles.
import { type AttentionOptions, attention, type Context, createBlockMask, type Tensor } from '../src';
import type { BenchInputs, Impl } from './impl/types';
import { median, timeCalls as timeRuns } from './timing';

export interface SparseCase {
  name: string;
  /** What the pattern is, in words. */
  pattern: string;
  L: number;
  heads: number;
  /** The sparse call's options (the block mask, when `blockMaskMod`, is built before timing). */
  options: AttentionOptions;
  /** mask_mod WGSL whose block mask (blocks of BLOCK) joins the options. */
  blockMaskMod?: string;
  /** Whether (i, j) is allowed: builds the dense bool mask and counts the density. */
  allowed: (i: number, j: number) => boolean;
  /** Also time the dense bool mask call and the peer's dense bias (too large at L = 16384). */
  dense: boolean;
}

const BLOCK = 128;
const D = 64;

/** Tiles of BLOCK x BLOCK kept with probability `percent` / 100 (the diagonal always). */
function blockPattern(percent: number): Pick<SparseCase, 'options' | 'blockMaskMod' | 'allowed'> {
  const wgsl = `fn mask_mod(b: u32, h: u32, i: u32, j: u32) -> bool {
  let qb = i / ${BLOCK}u;
  let kb = j / ${BLOCK}u;
  return qb == kb || ((qb * 977u + kb * 131u) * 2654435761u) % 100u < ${percent}u;
}`;
  const allowed = (i: number, j: number) => {
    const qb = Math.floor(i / BLOCK);
    const kb = Math.floor(j / BLOCK);
    // the same u32 arithmetic as the WGSL
    return qb === kb || (Math.imul(qb * 977 + kb * 131, 2654435761) >>> 0) % 100 < percent;
  };
  return { options: { maskMod: wgsl }, blockMaskMod: wgsl, allowed };
}

function windowCase(L: number, left: number): SparseCase {
  return {
    name: `window-${left}-L${L}`,
    pattern: `causal, window [${left}, 0]`,
    L,
    heads: L > 4096 ? 1 : 2,
    options: { causal: true, window: [left, 0] },
    allowed: (i, j) => j <= i && i - j <= left,
    dense: L <= 4096,
  };
}

export const SPARSE_CASES: SparseCase[] = [
  windowCase(4096, 256),
  windowCase(4096, 1024),
  windowCase(16384, 256),
  windowCase(16384, 1024),
  ...[50, 10, 2].map((percent) => ({
    name: `blocks-${percent}%-L4096`,
    pattern: `block mask, ${percent}% of ${BLOCK}x${BLOCK} tiles (+ diagonal)`,
    L: 4096,
    heads: 2,
    dense: true,
    ...blockPattern(percent),
  })),
  {
    name: 'documents-8x512',
    pattern: '8 packed documents of 512, causal',
    L: 4096,
    heads: 2,
    options: {
      causal: true,
      cuSeqlensQ: Array.from({ length: 9 }, (_, d) => d * 512),
      cuSeqlensK: Array.from({ length: 9 }, (_, d) => d * 512),
    },
    allowed: (i, j) => Math.floor(i / 512) === Math.floor(j / 512) && j <= i,
    dense: true,
  },
];

export interface SparseRow {
  name: string;
  pattern: string;
  L: number;
  heads: number;
  status: 'ok' | 'wrong' | 'error';
  note?: string;
  /** Fraction of (row, key) pairs allowed. */
  density?: number;
  sparseMs?: number;
  /** The same call with a dense bool mask. */
  denseMs?: number;
  /** Full attention at the same size: causal for causal patterns, else unmasked. */
  fullMs?: number;
  /** The fastest peer that expressed the pattern (which: peerNote): its median ms. */
  peerMs?: number;
  peerStatus?: 'ok' | 'wrong' | 'error' | 'skipped';
  peerNote?: string;
  /** createBlockMask, once (not in sparseMs). */
  blockMaskMs?: number;
  /** Largest |sparse - dense| / (1 + |dense|), or against a float64 spot check of a few rows. */
  checkErr?: number;
}

function randomData(seed: number, n: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Median ms of `repeats` calls after `warmup`, each waited for on the GPU. */
async function timeCalls(ctx: Context, call: () => Promise<Tensor>, repeats: number, warmup: number) {
  const times: number[] = [];
  let last: Float32Array | undefined;
  for (let n = 0; n < warmup + repeats; n++) {
    const t0 = performance.now();
    const out = await call();
    await ctx.device.queue.onSubmittedWorkDone();
    if (n >= warmup) times.push(performance.now() - t0);
    if (n === warmup + repeats - 1) last = (await out.read()) as Float32Array;
    out.destroy();
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], last: last! };
}

function maxError(a: Float32Array, b: Float32Array): number {
  let err = 0;
  for (let i = 0; i < a.length; i++) err = Math.max(err, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return err;
}

/**
 * Times one sparse case: the sparse call, the dense bool mask call, full attention and the fastest
 * of the `peers` that can express it (timePeers).
 */
export async function timeSparse(
  ctx: Context,
  c: SparseCase,
  o: { repeats: number; warmup: number; rowBudgetS: number },
  peers?: SparsePeers,
): Promise<SparseRow> {
  const base = { name: c.name, pattern: c.pattern, L: c.L, heads: c.heads };
  const { L, heads } = c;
  const made: Tensor[] = [];
  try {
    const shape = [1, heads, L, D];
    const [q, k, v] = [1, 2, 3].map((seed) => ctx.tensor(randomData(seed, heads * L * D), shape));
    made.push(q, k, v);
    // density: counted exactly for L <= 4096, else from the window's shape
    let allowedPairs = 0;
    let dense: Tensor | undefined;
    if (c.dense) {
      const mask = new Uint8Array(L * L);
      for (let i = 0; i < L; i++) {
        for (let j = 0; j < L; j++) {
          if (!c.allowed(i, j)) continue;
          mask[i * L + j] = 1;
          allowedPairs++;
        }
      }
      dense = ctx.tensor(mask, [L, L], { dtype: 'bool' });
      made.push(dense);
    } else {
      const reach = c.options.window?.[0] ?? L;
      for (let i = 0; i < L; i++) {
        for (let j = Math.max(0, i - reach); j <= i; j++) if (c.allowed(i, j)) allowedPairs++;
      }
    }
    let options = c.options;
    let blockMaskMs: number | undefined;
    if (c.blockMaskMod) {
      const t0 = performance.now();
      const blockMask = await createBlockMask(ctx, {
        maskMod: c.blockMaskMod,
        Lq: L,
        Lk: L,
        blockSize: BLOCK,
      });
      await ctx.device.queue.onSubmittedWorkDone();
      blockMaskMs = performance.now() - t0;
      made.push(blockMask.states);
      options = { ...options, blockMask };
    }
    const sparse = await timeCalls(
      ctx,
      async () => (await attention(q, k, v, options)).output,
      o.repeats,
      o.warmup,
    );
    const row: SparseRow = {
      ...base,
      status: 'ok',
      density: allowedPairs / (L * L),
      sparseMs: sparse.ms,
      blockMaskMs,
    };
    let d: { ms: number; last: Float32Array } | undefined;
    if (dense) {
      d = await timeCalls(
        ctx,
        async () => (await attention(q, k, v, { mask: dense })).output,
        o.repeats,
        o.warmup,
      );
      row.denseMs = d.ms;
      row.checkErr = maxError(sparse.last, d.last);
      if (!(row.checkErr <= 1e-3)) {
        row.status = 'wrong';
        row.note = `differs from the dense mask: ${row.checkErr.toExponential(1)}`;
      }
    }
    const causal = c.options.causal ?? false;
    row.fullMs = (
      await timeCalls(ctx, async () => (await attention(q, k, v, { causal })).output, o.repeats, o.warmup)
    ).ms;
    // the peers are checked against our dense call, or the sparse one where there is none
    if (peers) Object.assign(row, await timePeers(peers, c, [q, k, v], d?.last ?? sparse.last, o));
    return row;
  } catch (e) {
    return { ...base, status: 'error', note: e instanceof Error ? e.message : String(e) };
  } finally {
    for (const t of made) t.destroy();
  }
}

/** The sparse section's peers: each expresses the patterns it can. */
export interface SparsePeers {
  /** Any pattern as a dense additive attention_bias [L, L] (MultiHeadAttention). */
  bias?: Impl;
  /** Causal sliding windows as local_window_size (GroupQueryAttention), at any L. */
  window?: Impl;
}

/**
 * The fastest of the `peers` that can express the case's pattern, each checked against
 * `expected` first (an error above 1e-3 is 'wrong', not timed); the others in the note.
 */
async function timePeers(
  peers: SparsePeers,
  c: SparseCase,
  qkv: Tensor[],
  expected: Float32Array,
  o: { repeats: number; warmup: number; rowBudgetS: number },
): Promise<Pick<SparseRow, 'peerMs' | 'peerStatus' | 'peerNote'>> {
  const { L, heads } = c;
  const shape = {
    name: c.name,
    group: 'sparse',
    B: 1,
    Hq: heads,
    Hkv: heads,
    Lq: L,
    Lk: L,
    D,
    causal: false,
  };
  const [q, k, v] = (await Promise.all(qkv.map((t) => t.read()))) as Float32Array<ArrayBuffer>[];
  const ways: { how: string; impl: Impl; inputs: () => BenchInputs }[] = [];
  const w = c.options.window;
  if (peers.window && c.options.causal && w?.[1] === 0 && Number.isFinite(w[0]) && !c.options.cuSeqlensQ) {
    // local_window_size W: each row attends itself and the W - 1 keys before it
    ways.push({
      how: `GroupQueryAttention local_window_size ${w[0] + 1}`,
      impl: peers.window,
      inputs: () => ({ shape: { ...shape, causal: true }, q, k, v, window: w[0] + 1 }),
    });
  }
  if (peers.bias && c.dense) {
    ways.push({
      how: 'MultiHeadAttention dense attention_bias',
      impl: peers.bias,
      inputs: () => {
        const bias = new Float32Array(L * L);
        for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) if (!c.allowed(i, j)) bias[i * L + j] = -1e9;
        return { shape, q, k, v, bias };
      },
    });
  }
  if (!ways.length) {
    return {
      peerStatus: 'skipped',
      peerNote: `a dense bias [${L}, ${L}] f32 is ${(L * L * 4) / 2 ** 20} MiB`,
    };
  }
  const timed: { how: string; ms?: number; status: 'ok' | 'wrong' | 'error'; note?: string }[] = [];
  for (const way of ways) {
    try {
      const prepared = await way.impl.prepare(way.inputs());
      try {
        const err = maxError(await prepared.output(), expected);
        if (!(err <= 1e-3)) {
          timed.push({ how: way.how, status: 'wrong', note: `differs from ours: ${err.toExponential(1)}` });
          continue;
        }
        // slow peers get fewer timed runs (--row-budget-s), at least 2
        const t = await timeRuns(() => prepared.run(), o);
        timed.push({ how: way.how, status: 'ok', ms: median(t.samples) });
      } finally {
        prepared.dispose();
      }
    } catch (e) {
      // the first line of the message (WebGPU validation errors go on for pages)
      const note = (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);
      timed.push({ how: way.how, status: 'error', note });
    }
  }
  const ok = timed.filter((t) => t.status === 'ok').sort((a, b) => a.ms! - b.ms!);
  const others = timed
    .filter((t) => t !== ok[0])
    .map((t) => `${t.how}: ${t.status === 'ok' ? `${Math.round(t.ms!)} ms` : `${t.status}, ${t.note}`}`);
  if (!ok.length) return { peerStatus: timed[0].status, peerNote: others.join('; ') };
  return { peerStatus: 'ok', peerMs: ok[0].ms, peerNote: [`peer: ${ok[0].how}`, ...others].join('; ') };
}
