export {
  type AdapterDescription,
  type AttentionKernel,
  Context,
  ContextDestroyedError,
  type ContextLostInfo,
  type ContextOptions,
  createContext,
  DeviceLostError,
  deviceRequirements,
  type Limits,
} from './context';
export { type ElementStorage, f16ToFloat32, float32ToF16, fromF16Bits, toF16Bits } from './f16';
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
export {
  type AttentionCallOptions,
  type AttentionOptions,
  type AttentionResult,
  type AttentionResultWith,
  attention,
} from './ops/attention';
export {
  type AttentionBackwardOptions,
  type AttentionBackwardPlan,
  type AttentionGradients,
  attentionBackward,
  planAttentionBackward,
} from './ops/attention_backward';
export {
  type AttentionPlan,
  type AttentionShape,
  type BlocksPlan,
  type CorePlan,
  type DecodePlan,
  type FlashPlan,
  type HeadsPlan,
  planAttention,
} from './ops/attention_plan';
export { type LinearOptions, linear } from './ops/linear';
export { type MatmulOptions, matmul } from './ops/matmul';
export { type AttentionCallShape, prepareAttention } from './ops/prepare';
export { type RopeOptions, rope } from './ops/rope';
export { type SoftmaxOptions, softmax } from './ops/softmax';
export { randomUniform, seededRandom } from './random';
export { type DType, type ReadType, Tensor, type TensorData } from './tensor';
