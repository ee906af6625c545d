// Type-level specs, checked by `npm run typecheck` (tsc), not run: what `read()` returns by dtype.
import { expectTypeOf } from 'vitest';
import { attention, type Context, type DType, type ReadType, type Tensor } from '../src/index';

declare const ctx: Context;
declare const f32: Tensor<'f32'>;
declare const f16: Tensor<'f16'>;
declare const mask: Tensor<'bool'>;
declare const any: Tensor;

expectTypeOf<ReadType<'f32'>>().toEqualTypeOf<Float32Array>();
expectTypeOf<ReadType<'f16'>>().toEqualTypeOf<Float32Array>();
expectTypeOf<ReadType<'bool'>>().toEqualTypeOf<Uint8Array>();
expectTypeOf<ReadType<DType>>().toEqualTypeOf<Float32Array | Uint8Array>();

expectTypeOf(f32.read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(f16.read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(mask.read()).resolves.toEqualTypeOf<Uint8Array>();
expectTypeOf(any.read()).resolves.toEqualTypeOf<Float32Array | Uint8Array>();
expectTypeOf(mask.dtype).toEqualTypeOf<'bool'>();

// A plain `Tensor` is the default `Tensor<DType>`, and a tensor of a known dtype is one.
expectTypeOf<Tensor>().toEqualTypeOf<Tensor<DType>>();
expectTypeOf(f32).toExtend<Tensor>();
expectTypeOf(mask).not.toExtend<Tensor<'f32'>>();
expectTypeOf(attention).toBeCallableWith(f32, f16, f32, { causal: true, mask });
// @ts-expect-error options are checked: a typo is an error, not `any`
expectTypeOf(attention).toBeCallableWith(f32, f32, f32, { casual: true });

// The context's factories keep the dtype they are given (f32 by default).
declare const data: Float32Array;
declare const buffer: GPUBuffer;
declare const someDType: DType;
expectTypeOf(ctx.tensor(data, [2]).read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(ctx.tensor(data, [2], { label: 'x' }).read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(ctx.tensor(data, [2], { dtype: 'f16' }).read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(ctx.tensor([true, false], [2], { dtype: 'bool' }).read()).resolves.toEqualTypeOf<Uint8Array>();
expectTypeOf(ctx.tensor(data, [2], { dtype: someDType }).read()).resolves.toEqualTypeOf<
  Float32Array | Uint8Array
>();
expectTypeOf(ctx.zeros([2]).read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(ctx.zeros([2], 'bool').read()).resolves.toEqualTypeOf<Uint8Array>();
expectTypeOf(ctx.wrap(buffer, [2]).read()).resolves.toEqualTypeOf<Float32Array>();
expectTypeOf(ctx.wrap(buffer, [2], 'bool').read()).resolves.toEqualTypeOf<Uint8Array>();
