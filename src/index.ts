export {
  type AdapterDescription,
  ATTENTION_KERNELS,
  type AttentionKernel,
  Context,
  ContextDestroyedError,
  type ContextLostInfo,
  type ContextOptions,
  createContext,
  DeviceLostError,
  deviceRequirements,
  type Limits,
  type SubgroupMatrixConfig,
} from './context';
export type { DropoutOptions } from './dropout';
export { type ElementStorage, f16ToFloat32, float32ToF16, fromF16Bits, toF16Bits } from './f16';
export { IntTensor, intTensor } from './int_tensor';
export { KVCache, type KVCacheOptions } from './kv_cache';
export {
  type AttentionCache,
  type LayerRopeTables,
  MultiHeadAttention,
  type MultiHeadAttentionForwardOptions,
  type MultiHeadAttentionInputGradients,
  type MultiHeadAttentionOptions,
  type MultiHeadAttentionResult,
  type MultiHeadAttentionScoring,
  type PyTorchAttentionWeights,
  type SeparateAttentionWeights,
} from './layers/multi_head_attention';
export { AdamW, type AdamWOptions } from './ops/adamw';
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
export type {
  BackwardPasses,
  EmptyBackwardPlan,
  SplitBackwardPlan,
  WholeBackwardPlan,
} from './ops/attention_backward_plan';
export {
  type AttentionLayout,
  type AttentionPlan,
  type AttentionShape,
  type BlocksPlan,
  type CorePlan,
  type DecodePlan,
  type EmptyPlan,
  type FlashPlan,
  type HeadsPlan,
  type ModData,
  planAttention,
  type ScoringOptionKey,
  type ScoringRules,
  type TiledProducts,
} from './ops/attention_plan';
export { type BlockMask, type CreateBlockMaskOptions, createBlockMask } from './ops/block_mask';
export {
  type SoftmaxCrossEntropyOptions,
  type SoftmaxCrossEntropyResult,
  softmaxCrossEntropy,
} from './ops/cross_entropy';
export { embedding, embeddingBackward } from './ops/embedding';
export { mergeHeads, splitHeads } from './ops/heads';
export {
  layerNorm,
  layerNormBackward,
  type NormBackwardCallOptions,
  type NormGradients,
  type NormOptions,
  rmsNorm,
  rmsNormBackward,
} from './ops/layer_norm';
export { type LinearOptions, linear } from './ops/linear';
export { type LinearBackwardOptions, type LinearGradients, linearBackward } from './ops/linear_backward';
export { type MatmulOptions, matmul } from './ops/matmul';
export type { MatrixTiles } from './ops/matrix_tiles';
export type { OutputOptions } from './ops/output';
export { type AttentionCallShape, prepareAttention } from './ops/prepare';
export { type RopeCallOptions, type RopeOptions, type RopeTables, rope, ropeBackward } from './ops/rope';
export { type SoftmaxOptions, softmax } from './ops/softmax';
export { type SoftmaxBackwardOptions, softmaxBackward } from './ops/softmax_backward';
export type { MatmulSettings, NormSettings, RunOptions, SoftmaxSettings } from './options';
export { randomUniform, seededRandom } from './random';
export { type DType, type ReadType, Tensor, type TensorData } from './tensor';
export {
  type AttentionSaved,
  type AttentionStep,
  composedAttention,
  fusedAttention,
} from './train/attention_step';
export {
  type ReverseDigitsOptions,
  type ReverseDigitsProgress,
  trainReverseDigits,
} from './train/reverse_digits';
export {
  type TransformerParams,
  type TransformerStepOptions,
  type TransformerStepResult,
  transformerStep,
  uploadTransformer,
} from './train/transformer';
export {
  checkTransformerConfig,
  initTransformerWeights,
  reverseDigitsBatch,
  type TransformerConfig,
  transformerParamShapes,
} from './train/transformer_config';
export { type AutotuneOptions, type TuneOptions, type TuneResult, tuneAttention } from './tune';
export {
  clearTuning,
  exportTuning,
  importTuning,
  shapeClass,
  type TuneShape,
  type TuningChoice,
  type TuningRecord,
  type TuningShape,
  tunedKernel,
} from './tune_table';
