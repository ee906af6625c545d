// The choices of the attention autotuner (src/tune.ts), per context and shape class, and the one
// question the planner asks of them: `tunedKernel(ctx, shape, dtype)`. A leaf module (no ops), so
// that the planner can import it without a cycle.
import { type AdapterDescription, ATTENTION_KERNELS, type AttentionKernel, type Context } from './context';

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
}

/** A context's tuning as plain JSON: persist it, and restore it with {@link importTuning}. */
export interface TuningRecord {
  version: 1;
  /** Choices apply only to a context on the same adapter. */
  adapter: Pick<AdapterDescription, 'vendor' | 'architecture' | 'description'>;
  /** By {@link shapeClass}. */
  choices: Record<string, TuningChoice>;
}

const tables = new WeakMap<Context, Map<string, TuningChoice>>();

/** Smallest power of two >= n (n >= 1). */
function pow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * The class a shape is tuned for: dtype, head dims and GQA group exactly; query rows (B·Hq),
 * Lq and Lk rounded up to a power of two (Lq 1 to 8 exactly: decode steps differ there).
 *
 * @example
 * shapeClass({ B: 1, Hq: 32, Hkv: 8, Lq: 1, Lk: 3000, D: 128, Dv: 128 }, 'f16')
 * // 'f16 D128/128 g4 BH32 Lq1 Lk4096'
 */
export function shapeClass(s: TuningShape, dtype: 'f32' | 'f16' = 'f32'): string {
  const lq = s.Lq <= 8 ? s.Lq : pow2(s.Lq);
  return `${dtype} D${s.D}/${s.Dv} g${s.Hq / s.Hkv} BH${pow2(s.B * s.Hq)} Lq${lq} Lk${pow2(s.Lk)}`;
}

/**
 * The kernel form tuning chose on `ctx` for this shape's class, or undefined where nothing was
 * tuned (the planner then keeps its rule, `ctx.attentionKernel`).
 */
export function tunedKernel(
  ctx: Context,
  shape: TuningShape,
  dtype: 'f32' | 'f16' | string = 'f32',
): AttentionKernel | undefined {
  const table = tables.get(ctx);
  if (!table) return undefined;
  return table.get(shapeClass(shape, dtype === 'f16' ? 'f16' : 'f32'))?.kernel;
}

/** @internal records a choice (src/tune.ts). */
export function recordChoice(ctx: Context, choice: TuningChoice): void {
  let table = tables.get(ctx);
  if (!table) {
    table = new Map();
    tables.set(ctx, table);
  }
  table.set(shapeClass(choice.shape, choice.dtype), choice);
}

/** `ctx`'s tuning choices, JSON-serialisable. */
export function exportTuning(ctx: Context): TuningRecord {
  const { vendor, architecture, description } = ctx.adapterInfo;
  return {
    version: 1,
    adapter: { vendor, architecture, description },
    choices: Object.fromEntries(tables.get(ctx) ?? []),
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
    if (choice && (ATTENTION_KERNELS as readonly string[]).includes(choice.kernel) && choice.shape) {
      recordChoice(ctx, choice);
      taken++;
    }
  }
  return taken;
}

/** Forgets `ctx`'s tuning: the planner's rule applies again. */
export function clearTuning(ctx: Context): void {
  tables.delete(ctx);
}
