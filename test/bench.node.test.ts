// The benchmark's own pieces that decide what a row means: shape selection, flop counts, the
// layout helpers its peers use, and the one-node ONNX model (run by onnxruntime-web's wasm
// build in Node and compared with the float64 reference).
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { adapterKind, COLUMN_NOTES, HEADER, rowClass } from '../bench/format';
import { causalBias, repeatHeads, toBsd } from '../bench/impl/types';
import { multiHeadAttentionModel } from '../bench/onnx';
import { flops, SHAPES, selectShapes, selectsLayer } from '../bench/shapes';
import type { Row } from '../bench/suite';
import { attentionCpu } from '../src/reference';
import { expectClose, F32_TOL, randomArray, rng } from './helpers';

describe('bench shapes', () => {
  it('selects by name and by group, and names what it does not know', () => {
    expect(selectShapes('').length).toBe(SHAPES.length);
    expect(selectShapes('decode').map((s) => s.name)).toEqual(['decode-512', 'decode-2048', 'decode-8192']);
    expect(selectShapes('prefill-512,gqa').map((s) => s.name)).toEqual(['prefill-512', 'gqa-512']);
    expect(() => selectShapes('prefill-513')).toThrow(/--shapes: unknown prefill-513; expected names/);
    expect(selectShapes('layer')).toEqual([]);
    expect(selectShapes('decode-512,layer').map((s) => s.name)).toEqual(['decode-512']);
    expect([selectsLayer(''), selectsLayer('all'), selectsLayer('gqa,layer'), selectsLayer('gqa')]).toEqual([
      true,
      true,
      true,
      false,
    ]);
  });

  it('counts 4·B·H·Lq·Lk·D flops, halved when causal', () => {
    const causal = SHAPES.find((s) => s.name === 'causal-1024')!;
    expect(flops(causal)).toBe((4 * 12 * 1024 * 1024 * 64) / 2);
    expect(flops(SHAPES.find((s) => s.name === 'decode-2048')!)).toBe(4 * 32 * 2048 * 128);
  });
});

describe('bench layouts', () => {
  it('toBsd moves [B, H, L, D] to [B, L, H·D] and back', () => {
    const x = Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i);
    const bsd = toBsd(x, 2, 3, 4, 5);
    // element (b=1, h=2, l=3, d=4) sits at ((1·4 + 3)·3 + 2)·5 + 4
    expect(bsd[((1 * 4 + 3) * 3 + 2) * 5 + 4]).toBe(((1 * 3 + 2) * 4 + 3) * 5 + 4);
    expect(toBsd(bsd, 2, 3, 4, 5, true)).toEqual(x);
  });

  it('repeatHeads repeats each kv head in place (repeat_interleave)', () => {
    const x = Float32Array.from([1, 2, 3, 4]); // [1, 2, 1, 2]
    expect([...repeatHeads(x, 1, 2, 1, 2, 3)]).toEqual([1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4]);
  });
});

describe('bench ONNX model (onnxruntime-web wasm)', () => {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';

  for (const causal of [false, true]) {
    it(`MultiHeadAttention equals attentionCpu (causal: ${causal}, Lq != Lk)`, async () => {
      const [B, H, Lq, Lk, D] = [2, 3, 5, 7, 8];
      const random = rng(11);
      const q = randomArray(random, B * H * Lq * D);
      const k = randomArray(random, B * H * Lk * D);
      const v = randomArray(random, B * H * Lk * D);
      const scale = 0.3;
      const session = await ort.InferenceSession.create(
        multiHeadAttentionModel({ B, H, Lq, Lk, D, scale, attentionBias: causal }),
        { executionProviders: ['wasm'] },
      );
      const feeds: Record<string, ort.Tensor> = {
        query: new ort.Tensor('float32', toBsd(q, B, H, Lq, D), [B, Lq, H * D]),
        key: new ort.Tensor('float32', toBsd(k, B, H, Lk, D), [B, Lk, H * D]),
        value: new ort.Tensor('float32', toBsd(v, B, H, Lk, D), [B, Lk, H * D]),
      };
      if (causal) feeds.attention_bias = new ort.Tensor('float32', causalBias(Lq, Lk), [1, 1, Lq, Lk]);
      const { output, present_key } = await session.run(feeds);
      await session.release();
      expect(present_key.dims).toEqual([B, H, Lk, D]);
      const expected = attentionCpu(
        { data: q, shape: [B, H, Lq, D] },
        { data: k, shape: [B, H, Lk, D] },
        { data: v, shape: [B, H, Lk, D] },
        { scale, causal },
      );
      const actual = toBsd(output.data as Float32Array<ArrayBuffer>, B, H, Lq, D, true);
      expectClose(actual, expected.output.data, F32_TOL, 'output');
    });
  }
});

describe('bench page text', () => {
  it('explains every column of the results table', () => {
    expect(HEADER.filter((h) => !COLUMN_NOTES[h])).toEqual([]);
  });

  it('says whether the adapter is CPU emulation or a GPU', () => {
    const swiftshader = adapterKind({ vendor: 'google', architecture: 'swiftshader', description: '' });
    expect(swiftshader.cpu).toBe(true);
    expect(swiftshader.text).toMatch(/SwiftShader.*expected/s);
    expect(adapterKind({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H200' }).cpu).toBe(
      false,
    );
  });

  it('marks wrong and failed rows', () => {
    const row = (impl: string, status: Row['status']) => ({ impl, status }) as Row;
    expect(
      [row('ours', 'ok'), row('tfjs', 'wrong'), row('ours', 'error'), row('ort', 'skipped')].map(rowClass),
    ).toEqual(['ours', 'wrong', 'ours error', '']);
  });
});
