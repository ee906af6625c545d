// Autotuning of attention's kernel form per adapter and shape class (issue 12, item 5): time each
// candidate form on the context's device, keep the fastest (src/tune_table.ts), which the planner
// takes instead of its rule where it asks `tunedKernel` (a hook in corePlan). Timed with timestamp
// queries where the device has `timestamp-query`, else by the wall clock around onSubmittedWorkDone.
import { ATTENTION_KERNELS, type AttentionKernel, type Context, createContext } from './context';
import { attention } from './ops/attention';
import { matrixConfig } from './ops/matrix_tiles';
import type { Tensor } from './tensor';
import {
  exportTuning,
  recordChoice,
  shapeClass,
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
  /** Storage dtype of the calls to tune for (default 'f32'). */
  dtype?: 'f32' | 'f16';
  /** Causal calls (default false). */
  causal?: boolean;
  /** Upper bound of the whole tuning in ms, compiles included (default 2000). */
  budgetMs?: number;
  /** Timed calls per candidate at most, median taken (default 5; at least 1 within the budget). */
  repeats?: number;
  /** Hears each choice as it is made. */
  progress?: (message: string) => void;
}

/** The outcome of {@link tuneAttention}: the context's whole tuning, and what this run did. */
export interface TuneResult extends TuningRecord {
  /** Classes tuned by this run, in the order of the shapes given. */
  tuned: string[];
  /** Shapes left untuned: out of budget, one candidate only, or every candidate failed. */
  skipped: { shape: TuningShape; reason: string }[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

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
    try {
      await call();
    } finally {
      device.createCommandEncoder = create;
    }
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

/**
 * Times attention's candidate kernel forms on `ctx`'s device for each shape's class (see
 * `shapeClass`), and keeps the fastest for `ctx`: `tunedKernel(ctx, shape)` then names it, and
 * the planner plans calls of a tuned class with it where it asks `tunedKernel`; other classes
 * keep the rule. Stays within `budgetMs` (shapes left when it is spent are skipped, and say so). Persist
 * the result (plain JSON) and restore it in a later session with `importTuning`.
 *
 * @example
 * const tuning = await tuneAttention(ctx, [{ B: 1, Hq: 32, Hkv: 8, Lq: 1, Lk: 4096, D: 128, Dv: 128 }]);
 * localStorage.setItem('attention-tuning', JSON.stringify(tuning));
 * // later: importTuning(ctx, JSON.parse(localStorage.getItem('attention-tuning')));
 */
export async function tuneAttention(
  ctx: Context,
  shapes: readonly TuningShape[],
  options: TuneOptions = {},
): Promise<TuneResult> {
  const candidates =
    options.candidates ?? ATTENTION_KERNELS.filter((f) => f !== 'matrix' || matrixConfig(ctx) !== undefined);
  const dtype = options.dtype ?? 'f32';
  const causal = options.causal ?? false;
  const budgetMs = options.budgetMs ?? 2000;
  const repeats = Math.max(1, options.repeats ?? 5);
  const say = options.progress ?? (() => {});
  const start = performance.now();
  const left = () => budgetMs - (performance.now() - start);
  const tuned: string[] = [];
  const skipped: TuneResult['skipped'] = [];
  const timer = new CallTimer(ctx.device);
  // One context per form on the same device: the calls differ only in the form.
  const forms = new Map<AttentionKernel, Context>();
  try {
    for (const form of candidates) {
      forms.set(
        form,
        await createContext({ device: ctx.device, attentionKernel: form, label: `tune:${form}` }),
      );
    }
    for (const [index, shape] of shapes.entries()) {
      const cls = shapeClass(shape, dtype);
      if (tuned.includes(cls)) continue;
      const runnable = candidates.filter((f) => applicable(f, shape));
      if (runnable.length < 2) {
        skipped.push({ shape, reason: `one candidate only (${runnable.join(', ') || 'none'})` });
        continue;
      }
      if (left() <= 0) {
        skipped.push({ shape, reason: `time budget of ${budgetMs} ms spent` });
        continue;
      }
      const ms: Partial<Record<AttentionKernel, number>> = {};
      const { B, Hq, Hkv, Lq, Lk, D, Dv } = shape;
      const made: Tensor[] = [];
      try {
        const q = ctx.zeros([B, Hq, Lq, D], dtype, 'tune:q');
        const k = ctx.zeros([B, Hkv, Lk, D], dtype, 'tune:k');
        const v = ctx.zeros([B, Hkv, Lk, Dv], dtype, 'tune:v');
        made.push(q, k, v);
        for (const form of runnable) {
          const fc = forms.get(form)!;
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
            const share = left() / (shapes.length - index) / (runnable.length - runnable.indexOf(form));
            const until = performance.now() + share;
            while (times.length < repeats && (times.length === 0 || performance.now() < until)) {
              times.push(await timer.time(call));
            }
            ms[form] = median(times);
          } catch (e) {
            say(`tune ${cls}: ${form} failed: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
      } finally {
        for (const t of made) t.destroy();
      }
      const timedForms = Object.entries(ms) as [AttentionKernel, number][];
      if (timedForms.length < 2) {
        skipped.push({ shape, reason: 'fewer than two candidates ran' });
        continue;
      }
      const [kernel] = timedForms.reduce((best, x) => (x[1] < best[1] ? x : best));
      recordChoice(ctx, { kernel, ms, timing: timer.timing, shape: { ...shape }, dtype });
      tuned.push(cls);
      say(`tune ${cls}: ${kernel} (${timedForms.map(([f, t]) => `${f} ${t.toPrecision(3)} ms`).join(', ')})`);
    }
  } finally {
    for (const c of forms.values()) c.destroy();
    timer.destroy();
  }
  return { ...exportTuning(ctx), tuned, skipped };
}
