// The benchmark's problem sizes (issue 3) and how to pick them from a command line.

import { SPARSE_CASES, type SparseCase } from './sparse';

/** One attention problem: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D]. */
export interface BenchShape {
  name: string;
  /** Selects shapes together: prefill, causal, d128, gqa, decode. */
  group: string;
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  causal: boolean;
}

function shape(name: string, group: string, s: Omit<BenchShape, 'name' | 'group'>): BenchShape {
  return { name, group, ...s };
}

export const SHAPES: readonly BenchShape[] = [
  ...[128, 512, 1024, 2048].map((L) =>
    shape(`prefill-${L}`, 'prefill', { B: 1, Hq: 8, Hkv: 8, Lq: L, Lk: L, D: 64, causal: false }),
  ),
  shape('causal-1024', 'causal', { B: 1, Hq: 12, Hkv: 12, Lq: 1024, Lk: 1024, D: 64, causal: true }),
  shape('d128-512', 'd128', { B: 1, Hq: 8, Hkv: 8, Lq: 512, Lk: 512, D: 128, causal: false }),
  shape('gqa-512', 'gqa', { B: 1, Hq: 32, Hkv: 8, Lq: 512, Lk: 512, D: 64, causal: false }),
  ...[512, 2048, 8192].map((Lk) =>
    shape(`decode-${Lk}`, 'decode', { B: 1, Hq: 32, Hkv: 32, Lq: 1, Lk, D: 128, causal: false }),
  ),
];

/** Floating-point operations of one call: 4·B·Hq·Lq·Lk·D, halved when causal. */
export function flops(s: BenchShape): number {
  return (4 * s.B * s.Hq * s.Lq * s.Lk * s.D) / (s.causal ? 2 : 1);
}

/** The --shapes word that selects the decode-layer section (a small transformer generating tokens). */
export const LAYER = 'layer';
/** The --shapes word that selects the sparse section (windows, block masks, documents). */
export const SPARSE = 'sparse';

/**
 * The --shapes word that selects the backward section (gradients of attention, then training
 * steps of the demo model) on all of {@link BACKWARD_SHAPES}; `backward:NAME` (a name or group of
 * those) selects some of them.
 */
export const BACKWARD = 'backward';

/** The shapes of the backward section (issue 10): prefill 512 and 1024, causal 1024, GQA 512. */
export const BACKWARD_SHAPES = ['prefill-512', 'prefill-1024', 'causal-1024', 'gqa-512'] as const;

const isBackwardWord = (w: string) => w === BACKWARD || w.startsWith(`${BACKWARD}:`);

function shapeWords(spec: string): string[] {
  return spec
    .split(',')
    .map((w) => w.trim())
    .filter(Boolean);
}

/**
 * Attention shapes named by a comma list of names or groups ('all' or empty: every shape);
 * {@link LAYER} and {@link SPARSE} are accepted and select none of them.
 */
export function selectShapes(spec: string): BenchShape[] {
  const words = shapeWords(spec);
  if (words.length === 0 || words.includes('all')) return [...SHAPES];
  const unknown = words.filter(
    (w) =>
      w !== LAYER &&
      !isSparseWord(w) &&
      !isBackwardWord(w) &&
      !SHAPES.some((s) => s.name === w || s.group === w),
  );
  if (unknown.length) {
    const groups = [...new Set(SHAPES.map((s) => s.group)), LAYER, SPARSE, BACKWARD, `${BACKWARD}:NAME`];
    throw new Error(
      `--shapes: unknown ${unknown.join(', ')}; expected names (${[...SHAPES, ...SPARSE_CASES].map((s) => s.name).join(', ')}) or groups (${groups.join(', ')})`,
    );
  }
  return SHAPES.filter((s) => words.includes(s.name) || words.includes(s.group));
}

/** Whether a --shapes list runs the decode-layer section: 'all', empty, or naming {@link LAYER}. */
export function selectsLayer(spec: string): boolean {
  const words = shapeWords(spec);
  return words.length === 0 || words.includes('all') || words.includes(LAYER);
}

/** Whether a --shapes list runs the sparse section: 'all', empty, or naming {@link SPARSE}. */
export function selectsSparse(spec: string): boolean {
  const words = shapeWords(spec);
  return words.length === 0 || words.includes('all') || words.some(isSparseWord);
}

/** The sparse cases a --shapes list names: all of them for 'all', empty or {@link SPARSE}. */
export function selectSparseCases(spec: string): SparseCase[] {
  const words = shapeWords(spec);
  if (words.length === 0 || words.includes('all') || words.includes(SPARSE)) return SPARSE_CASES;
  return SPARSE_CASES.filter((c) => words.includes(c.name));
}

/** Whether a --shapes word names the sparse section or one of its cases. */
export function isSparseWord(w: string): boolean {
  return w === SPARSE || SPARSE_CASES.some((c) => c.name === w);
}

/**
 * Shapes of the backward section a --shapes list selects: all of {@link BACKWARD_SHAPES} for 'all',
 * empty or {@link BACKWARD}; those named by `backward:NAME` words (a name or group); else none.
 */
export function selectBackward(spec: string): BenchShape[] {
  const words = shapeWords(spec);
  const candidates = SHAPES.filter((s) => (BACKWARD_SHAPES as readonly string[]).includes(s.name));
  if (words.length === 0 || words.includes('all') || words.includes(BACKWARD)) return candidates;
  const named = words.filter((w) => w.startsWith(`${BACKWARD}:`)).map((w) => w.slice(BACKWARD.length + 1));
  const unknown = named.filter((n) => !candidates.some((s) => s.name === n || s.group === n));
  if (unknown.length) {
    throw new Error(
      `--shapes: unknown backward shape ${unknown.join(', ')}; expected ${BACKWARD}:NAME with NAME one of ${BACKWARD_SHAPES.join(', ')} (or their groups)`,
    );
  }
  return candidates.filter((s) => named.includes(s.name) || named.includes(s.group));
}

/**
 * The same kind of problem at a size the float64 reference computes in a moment: every head
 * count, head dim, causal flag and GQA ratio kept, lengths cut to odd sizes that are not a
 * multiple of any tile.
 */
export function checkShape(s: BenchShape): BenchShape {
  const Lq = s.Lq === 1 ? 1 : 77;
  const Lk = s.Lq === 1 ? 333 : 77;
  return { ...s, name: `${s.name}:check`, Lq, Lk };
}

/** Key of the check a shape shares with others of its kind (prefill lengths share one). */
export function checkKey(s: BenchShape): string {
  const c = checkShape(s);
  return `${c.B},${c.Hq},${c.Hkv},${c.Lq},${c.Lk},${c.D},${c.causal}`;
}
