// The choices of the attention autotuner (src/tune.ts), per context and shape class, and the one
// question the planner asks of them: `tunedKernel(ctx, shape, dtype, causal)`. A leaf module (no
// ops, the context's types only), so that the planner can import it without a cycle.
import type { AdapterDescription, Context } from './context';
import { ATTENTION_KERNELS, type AttentionKernel } from './kernel_forms';

/** The sizes that decide which kernel form is fastest (those of an attention call). */
export interface TuningShape {
  B: number;
  Hq: number;
  Hkv: number;
  Lq: number;
  Lk: number;
  D: number;
  Dv: number;
}

/** A shape to tune, with the dtype and causality of its calls where they differ from the tuning's. */
export interface TuneShape extends TuningShape {
  dtype?: 'f32' | 'f16';
  causal?: boolean;
}

/** What tuning found for one shape class. */
export interface TuningChoice {
  /** The fastest kernel form. */
  kernel: AttentionKernel;
  /** ms per call of each candidate timed (median). */
  ms: Partial<Record<AttentionKernel, number>>;
  /** How the calls were timed. */
  timing: 'timestamp-query' | 'wall clock';
  /** The shape that was timed for the class. */
  shape: TuningShape;
  dtype: 'f32' | 'f16';
  /** Causal calls (absent: not causal). */
  causal?: boolean;
}

/** A class tuning met and left to the rule, and why (kept so that it is not timed again per call). */
interface UntunedClass {
  shape: TuningShape;
  dtype: 'f32' | 'f16';
  causal: boolean;
  reason: string;
}

/** A context's tuning as plain JSON: persist it, and restore it with {@link importTuning}. */
export interface TuningRecord {
  version: 1;
  /** Choices apply only to a context on the same adapter. */
  adapter: Pick<AdapterDescription, 'vendor' | 'architecture' | 'description'>;
  /** By {@link shapeClass}. */
  choices: Record<string, TuningChoice>;
}

/** Per context: the choices, and the classes left to the rule (both by shapeClass). */
interface Table {
  choices: Map<string, TuningChoice>;
  untuned: Map<string, UntunedClass>;
}
const tables = new WeakMap<Context, Table>();

function table(ctx: Context): Table {
  let t = tables.get(ctx);
  if (!t) {
    t = { choices: new Map(), untuned: new Map() };
    tables.set(ctx, t);
  }
  return t;
}

/** Smallest power of two >= n (n >= 1). */
function pow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * The class a shape is tuned for: dtype, causality, head dims and GQA group exactly; query rows
 * (B·Hq), Lq and Lk rounded up to a power of two (Lq 1 to 8 exactly: decode steps differ there).
 *
 * @example
 * shapeClass({ B: 1, Hq: 32, Hkv: 8, Lq: 1, Lk: 3000, D: 128, Dv: 128 }, 'f16')
 * // 'f16 D128/128 g4 BH32 Lq1 Lk4096'
 * shapeClass({ B: 1, Hq: 8, Hkv: 8, Lq: 500, Lk: 500, D: 64, Dv: 64 }, 'f32', true)
 * // 'f32 D64/64 g1 BH8 Lq512 Lk512 causal'
 */
export function shapeClass(s: TuningShape, dtype: 'f32' | 'f16' = 'f32', causal = false): string {
  const lq = s.Lq <= 8 ? s.Lq : pow2(s.Lq);
  const cls = `${dtype} D${s.D}/${s.Dv} g${s.Hq / s.Hkv} BH${pow2(s.B * s.Hq)} Lq${lq} Lk${pow2(s.Lk)}`;
  return causal ? `${cls} causal` : cls;
}

/**
 * The kernel form tuning chose on `ctx` for this shape's class, or undefined where nothing was
 * tuned (the planner then keeps its rule, `ctx.attentionKernel`).
 */
export function tunedKernel(
  ctx: Context,
  shape: TuningShape,
  dtype: 'f32' | 'f16' | string = 'f32',
  causal = false,
): AttentionKernel | undefined {
  const t = tables.get(ctx);
  if (!t) return undefined;
  return t.choices.get(shapeClass(shape, dtype === 'f16' ? 'f16' : 'f32', causal))?.kernel;
}

/** @internal records a choice (src/tune.ts). */
export function recordChoice(ctx: Context, choice: TuningChoice): void {
  const cls = shapeClass(choice.shape, choice.dtype, choice.causal);
  const t = table(ctx);
  t.untuned.delete(cls);
  t.choices.set(cls, choice);
}

/** @internal records a class that tuning left to the rule, unless it has a choice (src/tune.ts). */
export function recordUntuned(ctx: Context, entry: UntunedClass): void {
  const cls = shapeClass(entry.shape, entry.dtype, entry.causal);
  const t = table(ctx);
  if (!t.choices.has(cls)) t.untuned.set(cls, entry);
}

/** @internal whether tuning has a choice for the class, or left it to the rule. */
export function isSettled(ctx: Context, cls: string): boolean {
  const t = tables.get(ctx);
  return t !== undefined && (t.choices.has(cls) || t.untuned.has(cls));
}

/** @internal the shapes of every class `ctx` has a choice for or left to the rule. */
export function knownShapes(ctx: Context): TuneShape[] {
  const t = tables.get(ctx);
  if (!t) return [];
  return [...t.choices.values(), ...t.untuned.values()].map((c) => ({
    ...c.shape,
    dtype: c.dtype,
    causal: c.causal ?? false,
  }));
}

/** `ctx`'s tuning choices, JSON-serialisable. */
export function exportTuning(ctx: Context): TuningRecord {
  const { vendor, architecture, description } = ctx.adapterInfo;
  return {
    version: 1,
    adapter: { vendor, architecture, description },
    choices: Object.fromEntries(tables.get(ctx)?.choices ?? []),
  };
}

/**
 * Restores choices saved by {@link exportTuning} into `ctx`. Returns how many were taken: none
 * when the record comes from another adapter (or another version of the record), since what is
 * fastest differs between adapters.
 */
export function importTuning(ctx: Context, record: TuningRecord): number {
  const { vendor, architecture, description } = ctx.adapterInfo;
  const a = record?.adapter;
  if (
    record?.version !== 1 ||
    !a ||
    a.vendor !== vendor ||
    a.architecture !== architecture ||
    a.description !== description
  ) {
    return 0;
  }
  let taken = 0;
  for (const choice of Object.values(record.choices ?? {})) {
    if (
      choice &&
      (ATTENTION_KERNELS as readonly string[]).includes(choice.kernel) &&
      choice.shape &&
      (choice.causal === undefined || typeof choice.causal === 'boolean')
    ) {
      recordChoice(ctx, choice);
      taken++;
    }
  }
  return taken;
}

/** Forgets `ctx`'s tuning: the planner's rule applies again (and first-use tuning times again). */
export function clearTuning(ctx: Context): void {
  tables.delete(ctx);
}
