// Bindings shared by the flash kernels flash_attention.wgsl, flash_attention_registers.wgsl and
// flash_attention_matrix.wgsl (src/ops/flash_attention.ts appends this file to each). `Input` is the element type of the q,
// k and v arrays, aliased by the kernel. Uniforms (src/ops/flash_attention.ts): B, Hq, Hkv, Lq, Lk,
// D, Dv, causal, mask strides mask_b .. mask_j (of the mask broadcast to [B, Hq, Lq, Lk], 0 on
// broadcast dims), scale, the batch and head strides of q, k, v and out in elements (q_b, q_h,
// k_b, k_h, v_b, v_h, o_b, o_h: [B, H, L, D] and [B, L, H, D] tensors and KV-cache views are read
// in place), shift and the sparse rules' uniforms (see key_rules.wgsl). Elements from one row to
// the next: constants Q_ROW, K_ROW, V_ROW, O_ROW in the registers kernel (constant offsets in its
// key loop), uniforms q_l, k_l, v_l, o_l in the workgroup kernel (pipelines per D4, not per D).
// The rule data binding comes last: key_rules.wgsl declares it at RULES_BINDING. Bindings 5 and 6
// are the outputs: out and lse (flash_outputs.wgsl), or a split call's partials
// (flash_partials.wgsl).
@group(0) @binding(1) var<storage, read> q: array<Input>;
@group(0) @binding(2) var<storage, read> k: array<Input>;
@group(0) @binding(3) var<storage, read> v: array<Input>;
// bool: bytes packed four per word; additive: f32 bits
@group(0) @binding(4) var<storage, read> mask: array<u32>;
