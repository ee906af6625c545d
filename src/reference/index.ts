export { type AttentionCpuOptions, type AttentionCpuResult, attentionCpu } from './attention';
export type { HostResult, HostTensor } from './host';
export { type LinearCpuOptions, linearCpu } from './linear';
export { type MatmulOptions, matmulCpu } from './matmul';
export {
  type MultiHeadAttentionCpuOptions,
  type MultiHeadAttentionCpuResult,
  type MultiHeadAttentionCpuWeights,
  multiHeadAttentionCpu,
} from './multi_head_attention';
export { type RopeOptions, ropeCpu } from './rope';
export { type SoftmaxOptions, softmaxCpu } from './softmax';
