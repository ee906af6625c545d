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
export { type AttentionOptions, type AttentionResult, attention } from './ops/attention';
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
export { type RopeOptions, rope } from './ops/rope';
export { type SoftmaxOptions, softmax } from './ops/softmax';
export { randomUniform, seededRandom } from './random';
export { type DType, type ReadType, Tensor, type TensorData } from './tensor';
export { type TuneOptions, type TuneResult, tuneAttention } from './tune';
export {
  clearTuning,
  exportTuning,
  importTuning,
  shapeClass,
  type TuningChoice,
  type TuningRecord,
  type TuningShape,
  tunedKernel,
} from './tune_table';
