// Autotuning of attention's kernel form per adapter and shape class (issue 12, item 5): time each
// candidate form on the context's device, keep the fastest (src/tune_table.ts), which the planner
// takes instead of its rule where it asks `tunedKernel` (a hook in corePlan). On request
// (`tuneAttention`, `ctx.tune()`) or at the first call of each class (`createContext({ autotune })`).
// Timed with timestamp queries where the device has `timestamp-query`, else by the wall clock
// around onSubmittedWorkDone. Tunings of one device run one at a time.
import { checkOptions } from './checks';
import type { Context } from './context';
import { ATTENTION_KERNELS, type AttentionKernel } from './kernel_forms';
import { attention } from './ops/attention';
import { matrixConfig } from './ops/matrix_tiles';
import type { Tensor } from './tensor';
import {
  exportTuning,
  isSettled,
  recordChoice,
  recordUntuned,
  shapeClass,
  type TuneShape,
  type TuningChoice,
  type TuningRecord,
  type TuningShape,
} from './tune_table';

export interface TuneOptions {
  /**
   * Candidate kernel forms (default: every form, `'matrix'` only where the device runs it with
   * subgroup-matrix builtins, not their emulation). A form a shape cannot run is left out for it.
   */
  candidates?: readonly AttentionKernel[];
  /** Storage dtype of the calls to tune for, where a shape does not say (default 'f32'). */
  dtype?: 'f32' | 'f16';
  /** Causal calls, where a shape does not say (default false). */
  causal?: boolean;
  /** Upper bound of the whole tuning in ms, compiles included (default 2000). */
  budgetMs?: number;
  /** Timed calls per candidate at most, median taken (default 5; at least 1 within the budget). */
  repeats?: number;
  /** Hears each class as its timing starts, and each choice (or why the rule stays) as it is made. */
  progress?: (message: string) => void;
}

const TUNE_OPTION_KEYS = ['candidates', 'dtype', 'causal', 'budgetMs', 'repeats', 'progress'];
/** @internal the keys of {@link AutotuneOptions}. */
export const AUTOTUNE_OPTION_KEYS = ['candidates', 'budgetMs', 'repeats', 'progress'];

/**
 * How `createContext({ autotune })` tunes the first call of each shape class: as
 * {@link tuneAttention} with these options, `budgetMs` per class (default 500).
 */
export type AutotuneOptions = Pick<TuneOptions, 'candidates' | 'budgetMs' | 'repeats' | 'progress'>;

/** The per-class time bound of first-use tuning, ms, where `autotune` does not say. */
const FIRST_USE_BUDGET_MS = 500;

/** The outcome of {@link tuneAttention}: the context's whole tuning, and what this run did. */
export interface TuneResult extends TuningRecord {
  /** Classes tuned by this run, in the order of the shapes given. */
  tuned: string[];
  /**
   * Shapes left untuned: out of budget, one candidate only, fewer than two candidates ran, no
   * working clock, or timings that did not tell the candidates apart.
   */
  skipped: { shape: TuneShape; reason: string }[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Whether a form can run a shape at all ('registers' needs head dims that are multiples of 4). */
function applicable(form: AttentionKernel, s: TuningShape): boolean {
  return form !== 'registers' || (s.D % 4 === 0 && s.Dv % 4 === 0);
}

/**
 * Times one call at a time on `device`: GPU time of the call's compute passes from timestamp
 * queries while `time` runs (the device's command encoders are instrumented meanwhile, so tune
 * when the device is otherwise idle), or wall time to onSubmittedWorkDone.
 */
class CallTimer {
  private static readonly MAX_PASSES = 16;
  private readonly querySet?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;
  private readonly readback?: GPUBuffer;

  constructor(private readonly device: GPUDevice) {
    if (device.features.has('timestamp-query')) {
      const count = CallTimer.MAX_PASSES * 2;
      this.querySet = device.createQuerySet({ type: 'timestamp', count, label: 'tune' });
      this.resolve = device.createBuffer({
        size: count * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        label: 'tune:resolve',
      });
      this.readback = device.createBuffer({
        size: count * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: 'tune:readback',
      });
    }
  }

  get timing(): TuningChoice['timing'] {
    return this.querySet ? 'timestamp-query' : 'wall clock';
  }

  /**
   * Times `call`, which must submit its work before it returns its promise (as attention does
   * once its pipelines are compiled): the device's command encoders are instrumented only while
   * it runs synchronously, so other work in flight meanwhile is not timed.
   */
  async time(call: () => Promise<void>): Promise<number> {
    const { device, querySet } = this;
    let passes = 0;
    const create = device.createCommandEncoder;
    if (querySet) {
      device.createCommandEncoder = (descriptor?: GPUCommandEncoderDescriptor) => {
        const encoder = create.call(device, descriptor);
        const begin = encoder.beginComputePass.bind(encoder);
        encoder.beginComputePass = (d: GPUComputePassDescriptor = {}) => {
          const i = passes++;
          if (i >= CallTimer.MAX_PASSES || d.timestampWrites) return begin(d);
          const timestampWrites = {
            querySet,
            beginningOfPassWriteIndex: 2 * i,
            endOfPassWriteIndex: 2 * i + 1,
          };
          return begin({ ...d, timestampWrites });
        };
        return encoder;
      };
    }
    const t0 = performance.now();
    let submitted: Promise<void>;
    try {
      submitted = call();
    } finally {
      device.createCommandEncoder = create;
    }
    await submitted;
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    const timed = Math.min(passes, CallTimer.MAX_PASSES);
    if (!querySet || !this.resolve || !this.readback || timed === 0 || passes > timed) return wall;
    const encoder = device.createCommandEncoder({ label: 'tune:resolve' });
    encoder.resolveQuerySet(querySet, 0, 2 * timed, this.resolve, 0);
    encoder.copyBufferToBuffer(this.resolve, 0, this.readback, 0, 16 * timed);
    device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ, 0, 16 * timed);
    const ns = new BigInt64Array(this.readback.getMappedRange(0, 16 * timed).slice(0));
    this.readback.unmap();
    let total = 0;
    for (let i = 0; i < timed; i++) {
      const d = Number(ns[2 * i + 1] - ns[2 * i]);
      if (!(d > 0)) return wall; // a driver that writes no timestamps
      total += d;
    }
    return total / 1e6;
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolve?.destroy();
    this.readback?.destroy();
  }
}

/** Whether performance.now() advances: the budget and wall-clock timings need it. */
function clockAdvances(): boolean {
  const t0 = performance.now();
  for (let i = 0; i < 100_000; i++) if (performance.now() !== t0) return true;
  return false;
}

/**
 * @internal checks tuning options: `tuneAttention`'s, or (`path` 'options.autotune', `keys`)
 * `createContext`'s `autotune`.
 */
export function checkTuneOptions(
  where: string,
  path: string,
  options: TuneOptions,
  keys = TUNE_OPTION_KEYS,
): void {
  checkOptions(path === 'options' ? where : `${where}: ${path}`, options, keys);
  const { candidates, dtype, causal, budgetMs, repeats, progress } = options;
  const known = ATTENTION_KERNELS.map((k) => `'${k}'`).join(', ');
  if (
    candidates !== undefined &&
    (!Array.isArray(candidates) ||
      !candidates.length ||
      !candidates.every((c) => (ATTENTION_KERNELS as readonly string[]).includes(c)))
  ) {
    throw new Error(
      `${where}: ${path}.candidates must be a non-empty array of ${known}, received ${JSON.stringify(candidates)}`,
    );
  }
  if (dtype !== undefined && dtype !== 'f32' && dtype !== 'f16') {
    throw new Error(`${where}: ${path}.dtype must be 'f32' or 'f16', received ${JSON.stringify(dtype)}`);
  }
  if (causal !== undefined && typeof causal !== 'boolean') {
    throw new Error(`${where}: ${path}.causal must be a boolean, received ${JSON.stringify(causal)}`);
  }
  if (budgetMs !== undefined && !(typeof budgetMs === 'number' && budgetMs >= 0)) {
    throw new Error(`${where}: ${path}.budgetMs must be a number >= 0, received ${String(budgetMs)}`);
  }
  if (repeats !== undefined && !(Number.isInteger(repeats) && repeats >= 1)) {
    throw new Error(`${where}: ${path}.repeats must be an integer >= 1, received ${String(repeats)}`);
  }
  if (progress !== undefined && typeof progress !== 'function') {
    throw new Error(`${where}: ${path}.progress must be a function, received ${typeof progress}`);
  }
}

function checkShapes(where: string, shapes: readonly TuneShape[]): void {
  if (!Array.isArray(shapes)) {
    throw new Error(
      `${where}: shapes must be an array of { B, Hq, Hkv, Lq, Lk, D, Dv }, received ${typeof shapes}`,
    );
  }
  for (const [i, s] of shapes.entries()) {
    if (s === null || typeof s !== 'object') {
      throw new Error(
        `${where}: shapes[${i}] must be an object { B, Hq, Hkv, Lq, Lk, D, Dv }, received ${s}`,
      );
    }
    for (const dim of ['B', 'Hq', 'Hkv', 'Lq', 'Lk', 'D', 'Dv'] as const) {
      if (!(Number.isInteger(s[dim]) && s[dim] >= 1)) {
        throw new Error(`${where}: shapes[${i}].${dim} must be a positive integer, received ${s[dim]}`);
      }
    }
    if (s.Hq % s.Hkv !== 0) {
      throw new Error(
        `${where}: shapes[${i}].Hq must be a multiple of shapes[${i}].Hkv (${s.Hkv}), received ${s.Hq}`,
      );
    }
    if (s.dtype !== undefined && s.dtype !== 'f32' && s.dtype !== 'f16') {
      throw new Error(
        `${where}: shapes[${i}].dtype must be 'f32' or 'f16', received ${JSON.stringify(s.dtype)}`,
      );
    }
    if (s.causal !== undefined && typeof s.causal !== 'boolean') {
      throw new Error(
        `${where}: shapes[${i}].causal must be a boolean, received ${JSON.stringify(s.causal)}`,
      );
    }
  }
}

/** The tuning in progress or last queued per device: tunings of one device run one at a time. */
const queues = new WeakMap<GPUDevice, Promise<unknown>>();

function serially<T>(device: GPUDevice, fn: () => Promise<T>): Promise<T> {
  const run = (queues.get(device) ?? Promise.resolve()).then(fn);
  queues.set(
    device,
    run.catch(() => {}),
  );
  return run;
}

/**
 * Times attention's candidate kernel forms on `ctx`'s device for each shape's class (see
 * `shapeClass`; a shape's `dtype` and `causal` default to the options'), and keeps the fastest
 * for `ctx`: `tunedKernel(ctx, shape, dtype, causal)` then names it, and the planner plans calls of
 * a tuned class with it where it asks `tunedKernel`; other classes keep the rule. The rule's form
 * is timed first. Stays within `budgetMs` (compiles included; a candidate started in time may
 * finish after it): shapes, and candidates, left when it is spent are skipped, and say so.
 * Tunings of one device run one after another. Persist the result (plain JSON) and restore it in
 * a later session with `importTuning`. `ctx.tune(shapes, options)` is the same call.
 *
 * @example
 * const tuning = await tuneAttention(ctx, [{ B: 1, Hq: 32, Hkv: 8, Lq: 1, Lk: 4096, D: 128, Dv: 128 }]);
 * localStorage.setItem('attention-tuning', JSON.stringify(tuning));
 * // later: importTuning(ctx, JSON.parse(localStorage.getItem('attention-tuning')));
 */
export function tuneAttention(
  ctx: Context,
  shapes: readonly TuneShape[],
  options: TuneOptions = {},
): Promise<TuneResult> {
  try {
    checkShapes('tuneAttention', shapes);
    checkTuneOptions('tuneAttention', 'options', options);
    ctx.assertAlive('tuneAttention');
  } catch (e) {
    return Promise.reject(e);
  }
  return serially(ctx.device, () => timeShapes(ctx, shapes, options));
}

async function timeShapes(
  ctx: Context,
  shapes: readonly TuneShape[],
  options: TuneOptions,
): Promise<TuneResult> {
  const given =
    options.candidates ?? ATTENTION_KERNELS.filter((f) => f !== 'matrix' || matrixConfig(ctx) !== undefined);
  // the rule's form first: if the budget ends after one candidate, its compile was not wasted
  const candidates = [...given].sort((a, b) => +(b === ctx.attentionKernel) - +(a === ctx.attentionKernel));
  const budgetMs = options.budgetMs ?? 2000;
  const repeats = options.repeats ?? 5;
  const say = options.progress ?? (() => {});
  const start = performance.now();
  const left = () => budgetMs - (performance.now() - start);
  const tuned: string[] = [];
  const skipped: TuneResult['skipped'] = [];
  const skip = (shape: TuneShape, cls: string, reason: string) => {
    skipped.push({ shape, reason });
    say(`tune ${cls}: the rule stays (${reason})`);
  };
  const clock = clockAdvances();
  let timer: CallTimer | undefined; // made when a first call is timed
  // One context per form on the same device (made when first timed): the calls differ only in the form.
  const forms = new Map<AttentionKernel, Context>();
  const formContext = (form: AttentionKernel) => {
    let fc = forms.get(form);
    if (!fc) {
      fc = ctx.withAttentionKernel(form);
      forms.set(form, fc);
    }
    return fc;
  };
  try {
    for (const [index, shape] of shapes.entries()) {
      const dtype = shape.dtype ?? options.dtype ?? 'f32';
      const causal = shape.causal ?? options.causal ?? false;
      const cls = shapeClass(shape, dtype, causal);
      if (tuned.includes(cls)) continue;
      const runnable = candidates.filter((f) => applicable(f, shape));
      if (runnable.length < 2) {
        skip(shape, cls, `one candidate only (${runnable.join(', ') || 'none'})`);
        continue;
      }
      if (!clock) {
        skip(shape, cls, 'timing unavailable: performance.now() does not advance');
        continue;
      }
      if (left() <= 0) {
        skip(shape, cls, `time budget of ${budgetMs} ms spent`);
        continue;
      }
      say(`tune ${cls}: timing ${runnable.join(', ')}`);
      const ms: Partial<Record<AttentionKernel, number>> = {};
      const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
      const made: Tensor[] = [];
      let outOfTime = false;
      try {
        const q = ctx.zeros([B, Hq, Lq, D], dtype, 'tune:q');
        const k = ctx.zeros([B, Hkv, Lk, D], dtype, 'tune:k');
        const v = ctx.zeros([B, Hkv, Lk, Dv], dtype, 'tune:v');
        made.push(q, k, v);
        for (const [i, form] of runnable.entries()) {
          if (i > 0 && left() <= 0) {
            outOfTime = true;
            break;
          }
          const fc = formContext(form);
          const [fq, fk, fv] = [q, k, v].map((t) =>
            fc.wrap(t.buffer, t.shape, { dtype, offset: t.byteOffset }),
          );
          const call = async () => {
            const { output } = await attention(fq, fk, fv, { causal });
            output.destroy();
          };
          try {
            await call(); // compiles
            await fc.sync();
            const times: number[] = [];
            // Each shape, and each form of it, gets its share of what is left; at least one call.
            const share = left() / (shapes.length - index) / (runnable.length - i);
            const until = performance.now() + share;
            while (times.length < repeats && (times.length === 0 || performance.now() < until)) {
              timer ??= new CallTimer(ctx.device);
              times.push(await timer.time(call));
            }
            ms[form] = median(times);
          } catch (e) {
            say(`tune ${cls}: ${form} failed: ${message(e)}`);
          }
        }
      } finally {
        for (const t of made) t.destroy();
      }
      const timedForms = Object.entries(ms) as [AttentionKernel, number][];
      if (timedForms.length < 2) {
        const why = outOfTime ? `time budget of ${budgetMs} ms spent` : 'candidates failed';
        skip(shape, cls, `${why}: ${timedForms.length} of ${runnable.length} candidates timed`);
        continue;
      }
      const [kernel, best] = timedForms.reduce((b, x) => (x[1] < b[1] ? x : b));
      const timings = timedForms.map(([f, t]) => `${f} ${t.toPrecision(3)} ms`).join(', ');
      if (timedForms.filter(([, t]) => t === best).length > 1) {
        skip(shape, cls, `the timings did not tell the candidates apart: ${timings}`);
        continue;
      }
      const { B: b, Hq: hq, Hkv: hkv, Lq: lq, Lk: lk, D: d, Dv: dv } = shape;
      const timedShape = { B: b, Hq: hq, Hkv: hkv, Lq: lq, Lk: lk, D: d, Dv: dv };
      recordChoice(ctx, { kernel, ms, timing: timer!.timing, shape: timedShape, dtype, causal });
      tuned.push(cls);
      say(`tune ${cls}: ${kernel} (${timings})`);
    }
  } finally {
    for (const c of forms.values()) c.destroy();
    timer?.destroy();
  }
  return { ...exportTuning(ctx), tuned, skipped };
}

/** First calls of each class in flight, per context: concurrent ones share one tuning. */
const firstUses = new WeakMap<Context, Map<string, Promise<void>>>();

/**
 * @internal `createContext({ autotune })`'s hook in `attention` (through `ctx.tuneFirstUse`):
 * undefined where the call's class has a choice or was left to the rule (a Map lookup), else the
 * tuning of its class, shared by the calls that wait for it. Settles the class either way: where
 * tuning cannot choose (no working clock, one candidate, budget spent, candidates failed), the
 * rule stays and is recorded, not timed again.
 */
export function tuneAtFirstUse(
  ctx: Context,
  shape: TuningShape,
  dtype: string,
  causal: boolean,
  options: AutotuneOptions,
): Promise<void> | undefined {
  const storage = dtype === 'f16' ? 'f16' : 'f32';
  const cls = shapeClass(shape, storage, causal);
  if (isSettled(ctx, cls)) return undefined;
  let calls = firstUses.get(ctx);
  if (!calls) {
    calls = new Map();
    firstUses.set(ctx, calls);
  }
  let pending = calls.get(cls);
  if (!pending) {
    const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
    const one = { B, Hq, Hkv, Lq, Lk, D, Dv };
    const done = calls;
    pending = tuneAttention(ctx, [{ ...one, dtype: storage, causal }], {
      ...options,
      budgetMs: options.budgetMs ?? FIRST_USE_BUDGET_MS,
    }).then(
      (result) => {
        const reason = result.skipped[0]?.reason;
        if (reason) recordUntuned(ctx, { shape: one, dtype: storage, causal, reason });
        done.delete(cls);
      },
      (e: unknown) => {
        const reason = `tuning failed: ${message(e)}`;
        recordUntuned(ctx, { shape: one, dtype: storage, causal, reason });
        options.progress?.(`tune ${cls}: the rule stays (${reason})`);
        done.delete(cls);
      },
    );
    calls.set(cls, pending);
  }
  return pending;
}
