// The runner of src/program.ts: programs are compiled once per signature (name, sources,
// constants, uniform names and types), the uniforms reach the kernel by name whatever their types
// and order, and bad uniforms throw naming the program and the uniform.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Context } from '../src';
import { f32, i32, Recording, type UniformValue, vec4u } from '../src/program';
import { testContext } from './helpers';

// out[0] = x + x and out[1] = y * 3 in the declared types of x and y, as bits; out[2] = the
// vec4u's last value; out[3] = z (a u32 after the vector) + ADD (a constant); out[4] = workgroups.
const SOURCE = `
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  if (workgroupIndex(wid) >= p.workgroups) {
    return;
  }
  out[0] = bitcast<u32>(p.x + p.x);
  out[1] = bitcast<u32>(p.y * 3);
  out[2] = p.v[1].w;
  out[3] = p.z + ADD;
  out[4] = p.workgroups;
}`;

const bits = (x: number, type: 'u32' | 'i32' | 'f32') => {
  const words = new ArrayBuffer(4);
  if (type === 'f32') new Float32Array(words)[0] = x;
  else if (type === 'i32') new Int32Array(words)[0] = x;
  else new Uint32Array(words)[0] = x;
  return new Uint32Array(words)[0];
};

describe('programs: compiled once per signature, uniforms by name', () => {
  let ctx: Context;
  let modules = 0;
  beforeAll(async () => {
    ctx = await testContext();
    const create = ctx.device.createShaderModule.bind(ctx.device);
    ctx.device.createShaderModule = (descriptor) => {
      modules++;
      return create(descriptor);
    };
  });
  afterAll(() => ctx?.destroy());

  /** Runs SOURCE with `uniforms` (x, y, z, v in any order) and ADD = `add`; returns out. */
  async function run(uniforms: Record<string, UniformValue>, add = 0) {
    const out = ctx.zeros([5], 'f32');
    try {
      const rec = new Recording(ctx, 'program_test');
      rec.dispatch({
        name: 'program_test',
        sources: [SOURCE],
        constants: { ADD: add },
        uniforms,
        bindings: [out.binding],
        workgroups: 3,
      });
      await rec.submit();
      return Array.from(new Uint32Array((await out.read()).buffer));
    } finally {
      out.destroy();
    }
  }

  const values = Array.from({ length: 8 }, (_, i) => 100 + i);

  it('bind groups are reused for the same buffers and ranges, and only for them', async () => {
    let groups = 0;
    const create = ctx.device.createBindGroup.bind(ctx.device);
    ctx.device.createBindGroup = (descriptor) => {
      groups++;
      return create(descriptor);
    };
    const write = (x: number, binding: GPUBufferBinding) => ({
      name: 'program_test_write',
      sources: [
        '@group(0) @binding(1) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(1) fn main() { out[0] = p.x; }',
      ],
      uniforms: { x },
      bindings: [binding],
      workgroups: 1,
    });
    const [a, b] = [ctx.zeros([256], 'f32'), ctx.zeros([256], 'f32')];
    try {
      // x into word `at` of `t` (a range of 16 bytes; storage offsets are multiples of 256 bytes), for each [x, t, at]; returns a's and b's words
      const run = async (...writes: [number, typeof a, number][]) => {
        const rec = new Recording(ctx, 'program_test');
        for (const [x, t, at] of writes)
          rec.dispatch(write(x, { buffer: t.buffer, offset: at * 4, size: 16 }));
        await rec.submit();
        return Promise.all([a, b].map(async (t) => Array.from(new Uint32Array((await t.read()).buffer))));
      };
      await run([1, a, 0]);
      const first = groups;
      const [wa, wb] = await run([2, a, 0], [3, b, 0], [4, a, 64], [5, b, 128]);
      expect([wa[0], wb[0], wa[64], wb[128]]).toEqual([2, 3, 4, 5]);
      // the first write's group was reused (same buffers, ranges and uniform offset); three new
      expect(groups - first).toBe(3);
      const [again] = await run([6, a, 0]);
      expect(again[0]).toBe(6);
      expect(groups - first).toBe(3);
      // the same buffer at the same uniform offset, another range: a new group
      const [ranged] = await run([7, a, 192]);
      expect([ranged[0], ranged[192]]).toEqual([6, 7]);
      expect(groups - first).toBe(4);
    } finally {
      ctx.device.createBindGroup = create;
      a.destroy();
      b.destroy();
    }
  });

  it('uniforms of each type, in any order, reach the kernel; one compile per signature', async () => {
    const before = modules;
    const u32s = { x: 7, y: 5, v: vec4u(values), z: 11 };
    expect(await run(u32s)).toEqual([14, 15, 107, 11, 3]);
    expect(await run({ ...u32s, x: 9 })).toEqual([18, 15, 107, 11, 3]);
    expect(modules - before).toBe(1);
    // the same names with other types, or in another order, are other programs
    expect(await run({ x: f32(1.25), y: i32(-4), v: vec4u(values), z: 2 })).toEqual([
      bits(2.5, 'f32'),
      bits(-12, 'i32'),
      107,
      2,
      3,
    ]);
    expect(await run({ z: 4, v: vec4u(values), y: f32(0.5), x: i32(-8) })).toEqual([
      bits(-16, 'i32'),
      bits(1.5, 'f32'),
      107,
      4,
      3,
    ]);
    expect(modules - before).toBe(3);
    // another constant value is another program
    expect(await run(u32s, 5)).toEqual([14, 15, 107, 16, 3]);
    expect(modules - before).toBe(4);
  });

  it('bad uniforms throw, naming the program, the uniform and the value', async () => {
    await expect(run({ x: -1, y: 5, v: vec4u(values), z: 1 })).rejects.toThrow(
      'program_test: uniform x must be a u32, received -1',
    );
    await expect(run({ x: 1, y: i32(0.5), v: vec4u(values), z: 1 })).rejects.toThrow(
      'program_test: uniform y must be an i32, received 0.5',
    );
    await expect(run({ x: 1, y: 5, v: vec4u([1, 2, 3]), z: 1 })).rejects.toThrow(
      'program_test: uniform v needs a multiple of 4 values, received 3',
    );
    await expect(run({ x: 1, y: 5, v: vec4u(values), z: 1, grid_x: 2 })).rejects.toThrow(
      'program_test: uniform grid_x is set by the runner',
    );
  });
});
