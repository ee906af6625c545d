export {
  Context,
  type ContextLostInfo,
  type ContextOptions,
  createContext,
  DeviceLostError,
  type Limits,
} from './context';
export { f16ToFloat32, float32ToF16, fromF16Bits, toF16Bits } from './f16';
export { type AttentionOptions, type AttentionResult, attention } from './ops/attention';
export { type MatmulOptions, matmul } from './ops/matmul';
export { type SoftmaxOptions, softmax } from './ops/softmax';
export { type DType, Tensor, type TensorData } from './tensor';
