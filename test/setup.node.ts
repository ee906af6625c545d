// Node project: put Dawn's WebGPU on navigator.gpu so the specs run unchanged.
import { nodeGpu } from '../src/node';

const gpu = await nodeGpu();
Object.defineProperty(globalThis, 'navigator', {
  value: { ...globalThis.navigator, gpu },
  configurable: true,
});
