export {
  type AdapterDescription,
  type AttentionKernel,
  Context,
  type ContextLostInfo,
  type ContextOptions,
  createContext,
  DeviceLostError,
  type Limits,
} from './context';
export { f16ToFloat32, float32ToF16, fromF16Bits, toF16Bits } from './f16';
export { KVCache, type KVCacheOptions } from './kv_cache';
export {
  type AttentionCache,
  MultiHeadAttention,
  type MultiHeadAttentionForwardOptions,
  type MultiHeadAttentionOptions,
  type MultiHeadAttentionResult,
  type PyTorchAttentionWeights,
  type SeparateAttentionWeights,
} from './layers/multi_head_attention';
export { type AttentionOptions, type AttentionResult, attention } from './ops/attention';
export { type AttentionPlan, type AttentionShape, planAttention } from './ops/attention_plan';
export { type BlockMask, type CreateBlockMaskOptions, createBlockMask } from './ops/block_mask';
export { type LinearOptions, linear } from './ops/linear';
export { type MatmulOptions, matmul } from './ops/matmul';
export { type RopeOptions, type RopeTables, rope } from './ops/rope';
export { type SoftmaxOptions, softmax } from './ops/softmax';
export { type DType, Tensor, type TensorData } from './tensor';
