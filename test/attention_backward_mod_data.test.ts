// attentionBackward's modDataGrad: gradients of the f32 data that scoreMod reads (a learned
// relative-position bias table, a per-head gain), in both kernel forms and in the split paths,
// against the float64 reference backward (whose modDataGrad twin adds the same terms), which is
// itself checked against central finite differences of the float64 forward.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AttentionKernel,
  type AttentionOptions,
  attention,
  attentionBackward,
  type Context,
  planAttentionBackward,
  type AttentionShape as Shape,
  type Tensor,
} from '../src';
import {
  type AttentionCpuOptions,
  attentionBackwardCpu,
  attentionCpu,
  type HostTensor,
} from '../src/reference';
import { caseInputs, roundToF16 } from './attention_cases';
import { checked, expectClose, F16_TOL, F32_TOL, randomArray, rng, testContext } from './helpers';

/**
 * T5-style bias learned per head and distance (table [Hq, Lq + Lk - 1], an f32 tensor on the GPU)
 * times a learned gain per head (an array), plus an i32 entry (read, not trained): the WGSL
 * snippets and their float64 twins, which add into `grads`.
 */
function relativeBias(shape: Shape, seed: number) {
  const { Hq, Lq, Lk } = shape;
  const width = Lq + Lk - 1;
  const bias = randomArray(rng(seed), Hq * width);
  const gain = Array.from({ length: Hq }, (_, h) => 0.5 + 0.25 * h);
  const phase = Int32Array.of(0, 1, 3);
  const at = (h: number, i: number, j: number) => h * width + i + Lk - 1 - j;
  const grads = { bias: new Float64Array(bias.length), gain: new Float64Array(gain.length) };
  const gpu = {
    scoreMod: `fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 {
  return s * gain(h) + bias(h * ${width}u + i + ${Lk - 1}u - j) + 0.125 * f32(phase(j % 3u));
}`,
    scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return gain(h); }',
    modDataGrad: `fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) {
  gain_grad(h, ds * s);
  bias_grad(h * ${width}u + i + ${Lk - 1}u - j, ds);
}`,
  };
  const cpu: AttentionCpuOptions = {
    scoreMod: (s, _b, h, i, j) => s * gain[h]! + bias[at(h, i, j)]! + 0.125 * phase[j % 3]!,
    scoreModGrad: (_s, _b, h) => gain[h]!,
    modDataGrad: (s, _b, h, i, j, ds) => {
      grads.gain[h]! += ds * s;
      grads.bias[at(h, i, j)]! += ds;
    },
  };
  return { bias, gain, phase, width, gpu, cpu, grads };
}

/** q, k, v and dO of a case (f16: rounded to f16, as the GPU stores them). */
function problem(shape: Shape, dtype: 'f32' | 'f16' = 'f32') {
  const { B, Hq, Lq, Dv } = shape;
  const dO = randomArray(rng(77), B * Hq * Lq * Dv);
  return {
    ...caseInputs({ ...shape, dtype, seed: 3 }),
    dO: { data: dtype === 'f16' ? roundToF16(dO) : dO, shape: [B, Hq, Lq, Dv] },
  };
}

/** Runs forward and backward on the GPU with `options` plus the snippets; returns dModData read back. */
async function gpuGradients(
  ctx: Context,
  shape: Shape,
  options: Omit<AttentionOptions, 'returnLse' | 'returnWeights'>,
  snippets: { scoreModGrad: string; modDataGrad: string },
  dtype: 'f32' | 'f16' = 'f32',
  path?: string,
): Promise<Record<string, Float32Array>> {
  const inputs = problem(shape, dtype);
  const made: Tensor[] = [];
  const up = (h: HostTensor) => {
    const t = ctx.tensor(Float32Array.from(h.data as ArrayLike<number>), h.shape, { dtype });
    made.push(t);
    return t;
  };
  try {
    return await checked(ctx, async () => {
      const [q, k, v] = [inputs.q, inputs.k, inputs.v].map(up);
      const f = await attention(q!, k!, v!, { ...options, returnLse: true });
      made.push(f.output, f.lse!);
      const dO = up(inputs.dO);
      const backward = { ...options, ...snippets, lse: f.lse! };
      if (path) expect(planAttentionBackward(q!, k!, v!, f.output, dO, backward).path).toBe(path);
      const g = await attentionBackward(q!, k!, v!, f.output, dO, backward);
      made.push(g.dq, g.dk, g.dv);
      const out: Record<string, Float32Array> = {};
      for (const [name, t] of Object.entries(g.dModData ?? {})) {
        made.push(t);
        out[name] = await t.read();
      }
      return out;
    });
  } finally {
    for (const t of made) t.destroy();
  }
}

/** The reference backward on the same inputs: its modDataGrad twin adds the gradients. */
function cpuGradients(shape: Shape, options: AttentionCpuOptions, dtype: 'f32' | 'f16' = 'f32'): void {
  const { q, k, v, dO } = problem(shape, dtype);
  attentionBackwardCpu(q, k, v, dO, options);
}

describe('the reference backward of modData', () => {
  it('adds what central finite differences of the float64 forward give', () => {
    const shape = { B: 2, Hq: 2, Hkv: 1, Lq: 5, Lk: 7, D: 4, Dv: 3 };
    const r = relativeBias(shape, 11);
    const options: AttentionCpuOptions = { causal: true, softcap: 3, ...r.cpu };
    cpuGradients(shape, options);
    const inputs = problem(shape);
    // loss = Σ dO · output, a function of the bias table and the gains through scoreMod
    const loss = (bias: readonly number[], gain: readonly number[]) => {
      const width = r.width;
      const { output } = attentionCpu(inputs.q, inputs.k, inputs.v, {
        causal: true,
        softcap: 3,
        scoreMod: (s, _b, h, i, j) =>
          s * gain[h]! + bias[h * width + i + shape.Lk - 1 - j]! + 0.125 * r.phase[j % 3]!,
      });
      return output.data.reduce((sum, x, n) => sum + Number(x) * inputs.dO.data[n]!, 0);
    };
    const step = 1e-6;
    const numeric = (which: 'bias' | 'gain', n: number) => {
      const plus = { bias: [...r.bias], gain: [...r.gain] };
      const minus = { bias: [...r.bias], gain: [...r.gain] };
      plus[which][n]! += step;
      minus[which][n]! -= step;
      return (loss(plus.bias, plus.gain) - loss(minus.bias, minus.gain)) / (2 * step);
    };
    for (let n = 0; n < r.bias.length; n++) {
      expect(r.grads.bias[n]).toBeCloseTo(numeric('bias', n), 6);
    }
    for (let h = 0; h < shape.Hq; h++) expect(r.grads.gain[h]).toBeCloseTo(numeric('gain', h), 6);
    // the table's entries that no attended (i, j) reads get nothing, others something
    expect(r.grads.bias.some((x) => x === 0)).toBe(true);
    expect(r.grads.bias.some((x) => x !== 0)).toBe(true);
  });
});

describe.each<AttentionKernel>(['workgroup', 'registers'])(
  'attentionBackward modDataGrad, %s form',
  (kernel) => {
    let ctx: Context;
    let small: Context;
    beforeAll(async () => {
      ctx = await testContext({ attentionKernel: kernel });
      small = await testContext({ attentionKernel: kernel, limits: { maxStorageBufferBindingSize: 4096 } });
    });
    afterAll(() => {
      ctx?.destroy();
      small?.destroy();
    });

    // (head dims 8 in every spec of a context: each registers-form variant compiles once, seconds on
    // SwiftShader)
    /** GPU and reference gradients of the relative bias under `options` (on `on`), compared. */
    async function compare(
      on: Context,
      shape: Shape,
      options: Omit<AttentionOptions, 'returnLse' | 'returnWeights' | 'scoreMod' | 'modData'>,
      cpuOptions: AttentionCpuOptions,
      { dtype = 'f32', path }: { dtype?: 'f32' | 'f16'; path?: string } = {},
    ) {
      const r = relativeBias(shape, 5);
      const biasTensor = on.tensor(Float32Array.from(r.bias), [shape.Hq, r.width]);
      try {
        const got = await gpuGradients(
          on,
          shape,
          {
            ...options,
            scoreMod: r.gpu.scoreMod,
            modData: { bias: biasTensor, gain: r.gain, phase: r.phase },
          },
          r.gpu,
          dtype,
          path,
        );
        cpuGradients(shape, { ...cpuOptions, ...r.cpu }, dtype);
        // one gradient per f32 entry, in its shape; none for the i32 entry
        expect(Object.keys(got).sort()).toEqual(['bias', 'gain']);
        const tol = dtype === 'f16' ? F16_TOL : F32_TOL;
        expectClose(got.bias!, r.grads.bias, tol, `${JSON.stringify(options)} dModData.bias`);
        expectClose(got.gain!, r.grads.gain, tol, `${JSON.stringify(options)} dModData.gain`);
        expect(r.grads.bias.some((x) => x !== 0)).toBe(true);
      } finally {
        biasTensor.destroy();
      }
    }

    it('a relative-position bias table and a gain per head, with causal, GQA and odd sizes', () =>
      compare(ctx, { B: 2, Hq: 4, Hkv: 2, Lq: 9, Lk: 13, D: 8, Dv: 8 }, { causal: true }, { causal: true }));

    it('with softcap (mod_data_grad hears the capped score), a mask and dropout', () => {
      const shape = { B: 1, Hq: 2, Hkv: 1, Lq: 7, Lk: 7, D: 8, Dv: 8 };
      const mask = Array.from({ length: 49 }, (_, n) => (n * 5) % 7 !== 1);
      const t = ctx.tensor(Uint8Array.from(mask, Number), [7, 7], { dtype: 'bool' });
      const dropout = { p: 0.25, seed: 9 };
      return compare(
        ctx,
        shape,
        { softcap: 2, mask: t, dropout },
        {
          softcap: 2,
          mask: { data: mask, shape: [7, 7] },
          dropout,
        },
      ).finally(() => t.destroy());
    });

    it('with packed documents (b = 0, i and j positions in the packed rows and keys)', () => {
      const shape = { B: 1, Hq: 2, Hkv: 2, Lq: 10, Lk: 12, D: 8, Dv: 8 };
      const docs = { cuSeqlensQ: [0, 4, 4, 10], cuSeqlensK: [0, 5, 7, 12] };
      return compare(ctx, shape, { causal: true, ...docs }, { causal: true, ...docs });
    });

    it('in f16 storage', () =>
      compare(
        ctx,
        { B: 1, Hq: 2, Hkv: 1, Lq: 6, Lk: 9, D: 8, Dv: 8 },
        { causal: true },
        { causal: true },
        {
          dtype: 'f16',
        },
      ));

    it('split to fit small bindings: units of heads and blocks of rows and keys', async () => {
      const heads = { B: 2, Hq: 4, Hkv: 1, Lq: 24, Lk: 32, D: 8, Dv: 8 };
      await compare(small, heads, { causal: true }, { causal: true }, { path: 'heads' });
      const blocks = { B: 1, Hq: 2, Hkv: 1, Lq: 72, Lk: 100, D: 16, Dv: 8 };
      await compare(small, blocks, { causal: true }, { causal: true }, { path: 'blocks' });
    });

    it('an index past the end adds to the last element, as the read returned it', async () => {
      const shape = { B: 1, Hq: 1, Hkv: 1, Lq: 5, Lk: 6, D: 8, Dv: 8 };
      const table = [0.5, -0.25, 0.75];
      const grads = new Float64Array(3);
      const got = await gpuGradients(
        ctx,
        shape,
        {
          scoreMod: 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + t(i + j); }',
          modData: { t: table },
        },
        {
          scoreModGrad: 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }',
          modDataGrad:
            'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { t_grad(i + j, ds); }',
        },
      );
      cpuGradients(shape, {
        scoreMod: (s, _b, _h, i, j) => s + table[Math.min(i + j, 2)]!,
        scoreModGrad: () => 1,
        modDataGrad: (_s, _b, _h, i, j, ds) => {
          grads[Math.min(i + j, 2)]! += ds;
        },
      });
      expectClose(got.t!, grads, F32_TOL, 'dModData.t');
    });

    it('refuses what it cannot train, naming the option and what it needs', async () => {
      const t = ctx.tensor(new Float32Array(16), [1, 1, 2, 8]);
      const lse = ctx.tensor(new Float32Array(2), [1, 1, 2]);
      const scoreMod = 'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + w(j); }';
      const scoreModGrad = 'fn score_mod_grad(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return 1.0; }';
      const modDataGrad =
        'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) { w_grad(j, ds); }';
      const run = (options: Partial<Parameters<typeof attentionBackward>[5]>) =>
        attentionBackward(t, t, t, t, t, { lse, ...options }).then(
          () => 'resolved',
          (e: Error) => e.message,
        );
      try {
        expect(await run({ modDataGrad })).toBe(
          "attentionBackward: options.modDataGrad trains modData's f32 entries that scoreMod reads: it needs options.scoreMod and an f32 entry in options.modData, received no scoreMod",
        );
        expect(await run({ scoreMod, scoreModGrad, modDataGrad, modData: { w: Int32Array.of(1, 2) } })).toBe(
          "attentionBackward: options.modDataGrad trains modData's f32 entries that scoreMod reads: it needs options.scoreMod and an f32 entry in options.modData, received no f32 entry",
        );
        expect(
          await run({
            scoreMod,
            scoreModGrad,
            modData: { w: [1, 2] },
            modDataGrad: 'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32) { w_grad(j, s); }',
          }),
        ).toMatch(
          /^attentionBackward: options.modDataGrad must be WGSL text defining 'fn mod_data_grad\(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32\)'/,
        );
        expect(await run({ scoreMod, scoreModGrad, modDataGrad, modData: { w: [1, 2], w_grad: [0] } })).toBe(
          "attentionBackward: options.modDataGrad adds to 'w' through a function named w_grad, which options.modData also names: rename one of them",
        );
        // calling the gradient function of an entry that has none (an i32 entry): the compiler's message
        const error = await run({
          scoreMod:
            'fn score_mod(s: f32, b: u32, h: u32, i: u32, j: u32) -> f32 { return s + w(j) + f32(n(j)); }',
          scoreModGrad,
          modData: { w: [1, 2], n: Int32Array.of(3) },
          modDataGrad:
            'fn mod_data_grad(s: f32, b: u32, h: u32, i: u32, j: u32, ds: f32) {\n  n_grad(j, ds);\n}',
        });
        expect(error).toMatch(/^attentionBackward: options.modDataGrad does not compile:\nline 2:\d+: /);
        expect(error).toContain('n_grad(j, ds);');
      } finally {
        for (const x of [t, lse]) x.destroy();
      }
    });
  },
);
