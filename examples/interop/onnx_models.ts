// Two tiny ONNX models that stand in for an app's own model in examples/interop/ort.ts, written
// as protobuf bytes (field numbers of onnx.proto) so the example needs no model file:
// - splitHeadsModel: q_in, k_in, v_in [B, L, H*D] -> q, k, v [B, H, L, D] (Reshape, Transpose)
// - mergeHeadsModel: attn [B, H, L, D] -> y [B, L, H*D] (Transpose, Reshape)

class Proto {
  private readonly bytes: number[] = [];

  private varint(value: number): void {
    let v = value;
    while (v >= 0x80) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
  }

  /** A varint field (non-negative values only). */
  int(field: number, value: number): this {
    this.varint(field * 8);
    this.varint(value);
    return this;
  }

  raw(field: number, value: Uint8Array): this {
    this.varint(field * 8 + 2);
    this.varint(value.length);
    for (const b of value) this.bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.raw(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (p: Proto) => void): this {
    const inner = new Proto();
    build(inner);
    return this.raw(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const FLOAT = 1;
const INT64 = 7;
const ATTR_INTS = 7;

function valueInfo(g: Proto, field: 11 | 12, name: string, dims: readonly number[]): void {
  g.message(field, (vi) =>
    vi.string(1, name).message(2, (type) =>
      type.message(1, (tensor) =>
        tensor.int(1, FLOAT).message(2, (shape) => {
          for (const d of dims) shape.message(1, (dim) => dim.int(1, d));
        }),
      ),
    ),
  );
}

/** An int64 initializer (Reshape's target shape). */
function int64Initializer(g: Proto, name: string, values: readonly number[]): void {
  const raw = new BigInt64Array(values.map((x) => BigInt(x)));
  g.message(5, (t) =>
    t.int(1, values.length).int(2, INT64).string(8, name).raw(9, new Uint8Array(raw.buffer)),
  );
}

function node(g: Proto, op: string, inputs: string[], output: string, perm?: number[]): void {
  g.message(1, (n) => {
    for (const i of inputs) n.string(1, i);
    n.string(2, output).string(3, output).string(4, op);
    if (perm) n.message(5, (a) => a.string(1, 'perm').int(20, ATTR_INTS).raw(8, packed(perm)));
  });
}

/** A packed repeated int64 field's payload (small non-negative values). */
function packed(values: readonly number[]): Uint8Array {
  return Uint8Array.from(values);
}

function model(build: (g: Proto) => void): Uint8Array {
  const m = new Proto();
  m.int(1, 8); // ir_version
  m.string(2, 'webgpu-attention-interop');
  m.message(7, build);
  m.message(8, (op) => op.string(1, '').int(2, 17));
  return m.finish();
}

const PERM = [0, 2, 1, 3];

/** q_in, k_in, v_in [B, L, H*D] -> q, k, v [B, H, L, D]. */
export function splitHeadsModel(B: number, H: number, L: number, D: number): Uint8Array {
  return model((g) => {
    int64Initializer(g, 'blhd', [B, L, H, D]);
    for (const name of ['q', 'k', 'v']) {
      node(g, 'Reshape', [`${name}_in`, 'blhd'], `${name}_blhd`);
      node(g, 'Transpose', [`${name}_blhd`], name, PERM);
    }
    g.string(2, 'split_heads');
    for (const name of ['q', 'k', 'v']) valueInfo(g, 11, `${name}_in`, [B, L, H * D]);
    for (const name of ['q', 'k', 'v']) valueInfo(g, 12, name, [B, H, L, D]);
  });
}

/** attn [B, H, L, D] -> y [B, L, H*D]. */
export function mergeHeadsModel(B: number, H: number, L: number, D: number): Uint8Array {
  return model((g) => {
    int64Initializer(g, 'ble', [B, L, H * D]);
    node(g, 'Transpose', ['attn'], 'attn_blhd', PERM);
    node(g, 'Reshape', ['attn_blhd', 'ble'], 'y');
    g.string(2, 'merge_heads');
    valueInfo(g, 11, 'attn', [B, H, L, D]);
    valueInfo(g, 12, 'y', [B, L, H * D]);
  });
}
