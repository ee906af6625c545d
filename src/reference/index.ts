export { type DropoutOptions, dropoutKeeps, dropoutThreshold } from '../dropout';
export { type AdamWCpuState, type AdamWOptions, adamwStepCpu } from './adamw';
export {
  type AttentionCpuOptions,
  type AttentionCpuResult,
  type AttentionShape,
  attentionCpu,
  BLOCK_EMPTY,
  BLOCK_FULL,
  BLOCK_PARTIAL,
  type BlockMaskCpu,
  type CreateBlockMaskCpuOptions,
  createBlockMaskCpu,
  type MaskModFn,
  type ModDataGradFn,
  type ScoreModFn,
  type ScoreRules,
  scoreRules,
} from './attention';
export { type AttentionBackwardCpuResult, attentionBackwardCpu } from './attention_backward';
export { type SoftmaxCrossEntropyCpuResult, softmaxCrossEntropyCpu } from './cross_entropy';
export { embeddingBackwardCpu, embeddingCpu } from './embedding';
export type { HostResult, HostTensor } from './host';
export {
  layerNormBackwardCpu,
  layerNormCpu,
  type NormBackwardCpuResult,
  type NormCpuOptions,
  rmsNormBackwardCpu,
  rmsNormCpu,
} from './layer_norm';
export {
  geluGradCpu,
  type LinearBackwardCpuResult,
  type LinearCpuOptions,
  linearBackwardCpu,
  linearCpu,
} from './linear';
export { type MatmulOptions, matmulCpu } from './matmul';
export {
  type MultiHeadAttentionCpuOptions,
  type MultiHeadAttentionCpuResult,
  type MultiHeadAttentionCpuWeights,
  type MultiHeadAttentionCpuWeightsInput,
  multiHeadAttentionCpu,
} from './multi_head_attention';
export {
  type RopeOptions,
  type RopeTableOptions,
  ropeBackwardCpu,
  ropeCpu,
  ropeTablesCpu,
} from './rope';
export { type SoftmaxOptions, softmaxBackwardCpu, softmaxCpu } from './softmax';
export { type TransformerCpuResult, transformerCpu } from './transformer';
