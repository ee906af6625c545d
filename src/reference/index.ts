export { type AttentionCpuOptions, type AttentionCpuResult, attentionCpu } from './attention';
export type { HostResult, HostTensor } from './host';
export { type MatmulOptions, matmulCpu } from './matmul';
export { type SoftmaxOptions, softmaxCpu } from './softmax';
