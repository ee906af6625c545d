// The forms of attention's kernels, in a leaf module: the tuner, which the context calls, names
// them without importing the context.

/** The forms of `attention`'s kernels. See `ContextOptions.attentionKernel`. */
export const ATTENTION_KERNELS = ['workgroup', 'registers', 'tiled', 'matrix'] as const;
/** See `ContextOptions.attentionKernel`. */
export type AttentionKernel = (typeof ATTENTION_KERNELS)[number];

/** The experimental WebGPU feature of the `'matrix'` form's builtins (Dawn and Chrome). */
export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;
