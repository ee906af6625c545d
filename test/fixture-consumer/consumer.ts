// A strict consumer of the packed package. scripts/check-package.mjs typechecks it under
// `moduleResolution` `nodenext` and `bundler`, then runs the nodenext build under Node.
import {
  type AttentionOptions,
  attention,
  type Context,
  createContext,
  KVCache,
  MultiHeadAttention,
  Tensor,
} from 'webgpu-attention';
import { createNodeContext, nodeGpu } from 'webgpu-attention/node';
import { attentionCpu, type HostTensor } from 'webgpu-attention/reference';

type IsAny<T> = 0 extends 1 & T ? true : false;
// The declarations resolve: none of these is `any`.
const typed: [IsAny<typeof attention>, IsAny<Context>, IsAny<Tensor>, IsAny<GPUBuffer>] = [
  false,
  false,
  false,
  false,
];

// @ts-expect-error a typo in an option name does not compile
const typo: AttentionOptions = { casual: true };
const options: AttentionOptions = { causal: true };

/** Typechecks the calls a WebGPU app makes (not run: it needs an adapter). */
export async function decodeStep(ctx: Context, q: Tensor, k: Tensor, v: Tensor): Promise<number> {
  const { output } = await attention(q, k, v, options);
  const data: Float32Array | Uint8Array = await output.read();
  const buffer: GPUBuffer = output.buffer;
  return data.length + buffer.size + ctx.liveBytes;
}

const exported = {
  attention,
  createContext,
  createNodeContext,
  nodeGpu,
  KVCache,
  MultiHeadAttention,
  Tensor,
};
for (const [name, value] of Object.entries(exported)) {
  if (typeof value !== 'function')
    throw new Error(`webgpu-attention: ${name} is ${typeof value}, expected a function`);
}

// The float64 reference runs anywhere: one query, two keys, the second value wins by weight.
const t = (data: number[], shape: number[]): HostTensor => ({ data: Float64Array.from(data), shape });
const ref = attentionCpu(t([1, 0], [1, 1, 1, 2]), t([1, 0, -1, 0], [1, 1, 2, 2]), t([0, 1], [1, 1, 2, 1]));
const expected = 1 / (1 + Math.exp(Math.SQRT2));
if (Math.abs(ref.output.data[0] - expected) > 1e-12) throw new Error(`attentionCpu: ${ref.output.data[0]}`);

void [typed, typo];
console.log(`consumer ok: ${Object.keys(exported).length} exports are functions, attentionCpu agrees`);
