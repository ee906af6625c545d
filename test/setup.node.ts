// Node project: put Dawn's WebGPU on navigator.gpu so the specs run unchanged.
import { nodeGpu } from '../src/node';

// WEBGPU_ATTENTION_DAWN_FLAGS: comma-separated flags for Dawn, e.g.
// enable-dawn-features=allow_unsafe_apis, with which a GPU's adapter lists subgroup matrices (then
// test/matrix.test.ts runs the 'matrix' form's builtins instead of their emulation)
const gpu = await nodeGpu(process.env.WEBGPU_ATTENTION_DAWN_FLAGS?.split(',').filter(Boolean) ?? []);
Object.defineProperty(globalThis, 'navigator', {
  value: { ...globalThis.navigator, gpu },
  configurable: true,
});
