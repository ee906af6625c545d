// The interop examples (examples/interop) in headless Chromium: attention on tfjs-webgpu's and
// onnxruntime-web's GPU tensors, on their own devices, checked against the float64 reference.
// Browser only (vitest.config.ts keeps *.browser.test.ts out of the node project). A library that
// cannot get a WebGPU device fails the spec; nothing is skipped.
import { describe, expect, it } from 'vitest';
import type { InteropResult } from '../examples/interop/common';
import { ortInterop } from '../examples/interop/ort';
import { tfjsInterop } from '../examples/interop/tfjs';
import { attentionCpu } from '../src/reference';
import { expectClose, F32_TOL } from './helpers';

function check(result: InteropResult, label: string): void {
  const { B, H, L, D, causal } = result.shape;
  const shape = [B, H, L, D];
  const ref = attentionCpu(
    { data: result.q, shape },
    { data: result.k, shape },
    { data: result.v, shape },
    { causal },
  );
  expect(result.output.length).toBe(B * H * L * D);
  expectClose(result.output, ref.output.data, F32_TOL, label);
}

describe('interop examples', () => {
  it('tfjs-webgpu: dataToGPU buffers in, our output back as a zero-copy tf.tensor', async () => {
    const result = await tfjsInterop();
    expect(result.adapter).toMatch(/\S/);
    check(result, 'tfjs');
  });

  it('onnxruntime-web webgpu: gpu-buffer outputs in, our output to the next session via fromGpuBuffer', async () => {
    // vitest's browser mode serves the repository through Vite, node_modules included.
    const wasmPaths = new URL('/node_modules/onnxruntime-web/dist/', location.href).href;
    const result = await ortInterop({ wasmPaths });
    expect(result.adapter).toMatch(/\S/);
    check(result, 'onnxruntime-web');
  });
});
