// One-node ONNX models (com.microsoft MultiHeadAttention, GroupQueryAttention) written as protobuf
// bytes, so that the benchmark needs no model file and no protobuf library. Field numbers are those
// of onnx.proto.

/** Appends protobuf fields to a growing byte list. */
class ProtoWriter {
  private readonly bytes: number[] = [];

  private varint(value: number): void {
    let v = value;
    while (v >= 0x80) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** An int32/int64/enum field (non-negative values only, which is all a model here needs). */
  int(field: number, value: number): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([value]).buffer);
    this.bytes.push(...b);
    return this;
  }

  bytesField(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.varint(value.length);
    for (const b of value) this.bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytesField(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytesField(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT
const INT32 = 6; // TensorProto.DataType.INT32
const ATTR_FLOAT = 1;
const ATTR_INT = 2;

function valueInfo(
  w: ProtoWriter,
  field: number,
  name: string,
  dims: readonly number[],
  elemType = FLOAT,
): void {
  w.message(field, (vi) =>
    vi.string(1, name).message(2, (type) =>
      type.message(1, (tensor) =>
        tensor.int(1, elemType).message(2, (shape) => {
          for (const d of dims) shape.message(1, (dim) => dim.int(1, d));
        }),
      ),
    ),
  );
}

export interface MhaModelOptions {
  B: number;
  H: number;
  Lq: number;
  Lk: number;
  D: number;
  scale: number;
  /**
   * Add an input `attention_bias` [1, 1, Lq, Lk] (additive). MultiHeadAttention's `unidirectional`
   * attribute is rejected by onnxruntime's WebGPU kernel, so causal runs pass a causal bias here.
   */
  attentionBias?: boolean;
}

/**
 * ModelProto bytes of one com.microsoft MultiHeadAttention node: inputs query [B, Lq, H*D],
 * key [B, Lk, H*D], value [B, Lk, H*D] (and attention_bias [1, 1, Lq, Lk]); outputs output
 * [B, Lq, H*D] and present_key/present_value [B, H, Lk, D] (onnxruntime's WebGPU EP takes its
 * flash-attention path only when the present outputs exist).
 */
export function multiHeadAttentionModel(o: MhaModelOptions): Uint8Array {
  const hidden = o.H * o.D;
  const present = [o.B, o.H, o.Lk, o.D];
  const w = new ProtoWriter();
  w.int(1, 8); // ir_version
  w.string(2, 'webgpu-attention-bench');
  w.message(7, (g) => {
    g.message(1, (node) => {
      // An empty name skips an optional input (bias, key_padding_mask).
      const inputs = ['query', 'key', 'value', ...(o.attentionBias ? ['', '', 'attention_bias'] : [])];
      for (const input of inputs) node.string(1, input);
      for (const output of ['output', 'present_key', 'present_value']) node.string(2, output);
      node.string(3, 'mha');
      node.string(4, 'MultiHeadAttention');
      node.message(5, (a) => a.string(1, 'num_heads').int(3, o.H).int(20, ATTR_INT));
      node.message(5, (a) => a.string(1, 'scale').float(2, o.scale).int(20, ATTR_FLOAT));
      node.string(7, 'com.microsoft');
    });
    g.string(2, 'mha');
    valueInfo(g, 11, 'query', [o.B, o.Lq, hidden]);
    valueInfo(g, 11, 'key', [o.B, o.Lk, hidden]);
    valueInfo(g, 11, 'value', [o.B, o.Lk, hidden]);
    if (o.attentionBias) valueInfo(g, 11, 'attention_bias', [1, 1, o.Lq, o.Lk]);
    valueInfo(g, 12, 'output', [o.B, o.Lq, hidden]);
    valueInfo(g, 12, 'present_key', present);
    valueInfo(g, 12, 'present_value', present);
  });
  w.message(8, (op) => op.string(1, '').int(2, 17));
  w.message(8, (op) => op.string(1, 'com.microsoft').int(2, 1));
  return w.finish();
}

export interface GqaModelOptions {
  B: number;
  Hq: number;
  Hkv: number;
  /** Query and key length (a prompt: no past). */
  L: number;
  D: number;
  scale: number;
  /** local_window_size: each row attends itself and the `window` keys before it (-1: all). */
  window: number;
}

/**
 * ModelProto bytes of one com.microsoft GroupQueryAttention node (always causal): inputs query
 * [B, L, Hq*D], key and value [B, L, Hkv*D], seqlens_k [B] (int32, total length - 1) and
 * total_sequence_length [] (int32); outputs output [B, L, Hq*D] and present_key/present_value
 * [B, Hkv, L, D].
 */
export function groupQueryAttentionModel(o: GqaModelOptions): Uint8Array {
  const present = [o.B, o.Hkv, o.L, o.D];
  const w = new ProtoWriter();
  w.int(1, 8); // ir_version
  w.string(2, 'webgpu-attention-bench');
  w.message(7, (g) => {
    g.message(1, (node) => {
      // empty names skip past_key and past_value
      for (const input of ['query', 'key', 'value', '', '', 'seqlens_k', 'total_sequence_length']) {
        node.string(1, input);
      }
      for (const output of ['output', 'present_key', 'present_value']) node.string(2, output);
      node.string(3, 'gqa');
      node.string(4, 'GroupQueryAttention');
      node.message(5, (a) => a.string(1, 'num_heads').int(3, o.Hq).int(20, ATTR_INT));
      node.message(5, (a) => a.string(1, 'kv_num_heads').int(3, o.Hkv).int(20, ATTR_INT));
      node.message(5, (a) => a.string(1, 'scale').float(2, o.scale).int(20, ATTR_FLOAT));
      if (o.window >= 0) {
        node.message(5, (a) => a.string(1, 'local_window_size').int(3, o.window).int(20, ATTR_INT));
      }
      node.string(7, 'com.microsoft');
    });
    g.string(2, 'gqa');
    valueInfo(g, 11, 'query', [o.B, o.L, o.Hq * o.D]);
    valueInfo(g, 11, 'key', [o.B, o.L, o.Hkv * o.D]);
    valueInfo(g, 11, 'value', [o.B, o.L, o.Hkv * o.D]);
    valueInfo(g, 11, 'seqlens_k', [o.B], INT32);
    valueInfo(g, 11, 'total_sequence_length', [], INT32);
    valueInfo(g, 12, 'output', [o.B, o.L, o.Hq * o.D]);
    valueInfo(g, 12, 'present_key', present);
    valueInfo(g, 12, 'present_value', present);
  });
  w.message(8, (op) => op.string(1, '').int(2, 17));
  w.message(8, (op) => op.string(1, 'com.microsoft').int(2, 1));
  return w.finish();
}
