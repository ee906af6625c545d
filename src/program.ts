// Every kernel launch is a Program: a plain value naming its WGSL, compile-time constants, named
// uniforms, storage bindings and workgroup count. An op records the programs (and buffer copies)
// of one call into a Recording, which compiles each distinct program once per device, packs all
// uniforms into one buffer and submits the call as one command buffer.
import type { Context } from './context';
import { keepAliveUntil } from './keep_alive';
import { Usage } from './usage';

/** A uniform other than a u32: `f32(x)`, `i32(x)`, or `vec4u(values)` (an array of vec4<u32>). */
export interface TypedUniform {
  type: 'f32' | 'i32' | 'vec4u';
  value: number | readonly number[];
}
/** A number is a u32. */
export type UniformValue = number | TypedUniform;

export const f32 = (value: number): TypedUniform => ({ type: 'f32', value });
export const i32 = (value: number): TypedUniform => ({ type: 'i32', value });
/** `array<vec4<u32>, values.length / 4>` */
export const vec4u = (value: readonly number[]): TypedUniform => ({ type: 'vec4u', value });

/** What a binding holds: a whole buffer or a range of one. */
export type Bindable = GPUBuffer | GPUBufferBinding;

export interface Program {
  /** What the kernel is: the label of its GPU objects and the start of its pipeline cache key. */
  name: string;
  /**
   * WGSL, concatenated in order after the generated declarations: the kernel and the shared
   * pieces it uses. `enable` directives anywhere in them are moved to the top.
   */
  sources: readonly string[];
  /** Compile-time constants, declared first: integers as `const NAME = 7u;`, booleans as bools. */
  constants?: Readonly<Record<string, number | boolean>>;
  /**
   * Runtime values, the fields of `var<uniform> p` (binding 0) in this order. The runner adds
   * `workgroups`, `grid_x` and `grid_y`, which `workgroupIndex(wid)` reads.
   */
  uniforms?: Readonly<Record<string, UniformValue>>;
  /**
   * Storage buffers (or ranges of them) at bindings 1, 2, ...; `undefined` binds a placeholder
   * (an unused option).
   */
  bindings: readonly (Bindable | undefined)[];
  /**
   * Workgroups to run. The runner folds them into x, y and z under
   * maxComputeWorkgroupsPerDimension; a kernel takes `let w = workgroupIndex(wid);` and returns
   * when `w >= p.workgroups`.
   */
  workgroups: number;
}

/** Runner-provided uniforms, after the program's own. */
const GRID_UNIFORMS = ['workgroups', 'grid_x', 'grid_y'];

interface Field {
  name: string;
  type: string;
  offset: number;
  values: readonly number[];
  kind: 'u32' | 'i32' | 'f32';
}

/** The uniform struct of `uniforms`: WGSL declaration, byte size (multiple of 16) and fields. */
function layout(name: string, uniforms: Readonly<Record<string, UniformValue>>) {
  const fields: Field[] = [];
  let offset = 0;
  for (const [field, u] of Object.entries(uniforms)) {
    if (typeof u === 'number') {
      if (!Number.isInteger(u) || u < 0 || u > 0xffffffff) {
        throw new Error(`${name}: uniform ${field} must be a u32, received ${u}`);
      }
      fields.push({ name: field, type: 'u32', offset, values: [u], kind: 'u32' });
      offset += 4;
    } else if (u.type === 'vec4u') {
      const values = u.value as readonly number[];
      if (values.length === 0 || values.length % 4) {
        throw new Error(`${name}: uniform ${field} needs a multiple of 4 values, received ${values.length}`);
      }
      offset = Math.ceil(offset / 16) * 16;
      fields.push({
        name: field,
        type: `array<vec4<u32>, ${values.length / 4}>`,
        offset,
        values,
        kind: 'u32',
      });
      offset += values.length * 4;
    } else {
      const x = u.value as number;
      if (u.type === 'i32' && !Number.isInteger(x)) {
        throw new Error(`${name}: uniform ${field} must be an i32, received ${x}`);
      }
      fields.push({ name: field, type: u.type, offset, values: [x], kind: u.type });
      offset += 4;
    }
  }
  return { fields, size: Math.ceil(Math.max(offset, 4) / 16) * 16 };
}

/** The WGSL declaration of the uniform struct of `fields`. */
function structOf(fields: readonly Field[]): string {
  return `struct Params {\n${fields.map((f) => `  ${f.name}: ${f.type},`).join('\n')}\n}\n`;
}

/** Ids of source texts, so that cache keys name a source by a number rather than by its text. */
const sourceIds = new Map<string, number>();
function sourceId(source: string): number {
  let id = sourceIds.get(source);
  if (id === undefined) {
    id = sourceIds.size;
    sourceIds.set(source, id);
  }
  return id;
}

/** The cache key of a program's pipeline, and its complete WGSL (built on a cache miss only). */
function compileUnit(program: Program, uniforms: Readonly<Record<string, UniformValue>>) {
  const constants = Object.entries(program.constants ?? {}).map(([name, value]) => {
    if (typeof value === 'boolean') return `const ${name} = ${value};`;
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`${program.name}: constant ${name}=${value} is not a u32`);
    }
    return `const ${name} = ${value}u;`;
  });
  const key = [
    program.name,
    program.sources.map(sourceId).join('.'),
    constants.join(''),
    Object.entries(uniforms)
      .map(([n, u]) => `${n}:${typeof u === 'number' ? 'u32' : u.type}`)
      .join(','),
  ].join('|');
  const code = () => {
    const enables = new Set<string>();
    const body = program.sources
      .map((s) =>
        s.replace(/^enable [\w, ]+;\s*$/gm, (line) => {
          enables.add(line.trim());
          return '';
        }),
      )
      .join('\n');
    return [
      ...enables,
      ...constants,
      structOf(layout(program.name, uniforms).fields),
      '@group(0) @binding(0) var<uniform> p: Params;',
      'fn workgroupIndex(wid: vec3<u32>) -> u32 { return wid.x + (wid.y + wid.z * p.grid_y) * p.grid_x; }',
      body,
    ].join('\n');
  };
  return { key, code };
}

/** Spreads `count` workgroups over x, y and z, none above `max`. */
export function foldGrid(count: number, max: number, what: string): [number, number, number] {
  const x = Math.max(1, Math.min(count, max));
  const y = Math.min(Math.ceil(count / x), max);
  const z = Math.ceil(count / (x * y));
  if (z > max) {
    throw new Error(`${what}: ${count} workgroups exceed ${max}^3 (maxComputeWorkgroupsPerDimension)`);
  }
  return [x, y, z];
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** The pipeline of `program`, compiled once per device, asynchronously. */
export function pipelineOf(ctx: Context, program: Program): Promise<GPUComputePipeline> {
  const unit = compileUnit(program, withGrid(program, [1, 1, 1]));
  ctx.assertAlive(program.name);
  let cache = pipelineCache.get(ctx.device);
  if (!cache) {
    cache = new Map();
    pipelineCache.set(ctx.device, cache);
  }
  let pipeline = cache.get(unit.key);
  if (!pipeline) {
    const module = ctx.device.createShaderModule({ code: unit.code(), label: program.name });
    pipeline = keepAliveUntil(
      ctx.device.createComputePipelineAsync({
        label: program.name,
        layout: 'auto',
        compute: { module, entryPoint: 'main' },
      }),
    );
    const key = unit.key;
    cache.set(key, pipeline);
    pipeline.catch(() => cache.delete(key));
  }
  return pipeline;
}

/** Bind group layouts by pipeline: getBindGroupLayout makes a new object per call. */
const bindGroupLayouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
function bindGroupLayout(pipeline: GPUComputePipeline): GPUBindGroupLayout {
  let layout = bindGroupLayouts.get(pipeline);
  if (!layout) {
    layout = pipeline.getBindGroupLayout(0);
    bindGroupLayouts.set(pipeline, layout);
  }
  return layout;
}

function withGrid(program: Program, grid: [number, number, number]): Record<string, UniformValue> {
  return { ...program.uniforms, workgroups: program.workgroups, grid_x: grid[0], grid_y: grid[1] };
}

type Step =
  | { program: Program; pipeline: Promise<GPUComputePipeline> }
  | { copy: [from: GPUBuffer, fromOffset: number, to: GPUBuffer, toOffset: number, size: number] }
  | { clear: Bindable };

/** The steps of one op call: dispatches, copies and clears, submitted as one command buffer. */
export class Recording {
  private readonly steps: Step[] = [];
  private readonly scratch: GPUBuffer[] = [];
  /** Whether the call touches buffers the library does not own: then WebGPU errors are caught. */
  private checkErrors = false;

  constructor(
    readonly ctx: Context,
    readonly label: string,
  ) {}

  /**
   * Marks the call as touching `tensors`: when one is on an app's buffer (`ctx.wrap`), submit
   * catches the call's WebGPU validation errors and rejects with them (a destroyed buffer, one of
   * another device). Calls on the library's own buffers skip that round trip.
   */
  watch(...tensors: ({ wrapped: boolean } | undefined)[]): void {
    if (tensors.some((t) => t?.wrapped)) this.checkErrors = true;
  }

  /** Adds a dispatch; its pipeline starts compiling now if it is not cached. */
  dispatch(program: Program): void {
    for (const name of GRID_UNIFORMS) {
      if (program.uniforms && name in program.uniforms) {
        throw new Error(`${program.name}: uniform ${name} is set by the runner`);
      }
    }
    this.steps.push({ program, pipeline: pipelineOf(this.ctx, program) });
  }

  /** Adds a copy of `size` bytes (a multiple of 4) between buffers. */
  copy(from: GPUBuffer, fromOffset: number, to: GPUBuffer, toOffset: number, size: number): void {
    this.steps.push({ copy: [from, fromOffset, to, toOffset, size] });
  }

  /** Adds a zero fill of a buffer or a range of one. */
  clear(target: Bindable): void {
    this.steps.push({ clear: target });
  }

  /** A counted buffer that lives until the recording is submitted. */
  buffer(size: number, label: string): GPUBuffer {
    const buffer = this.ctx.takeScratch(size, label);
    this.scratch.push(buffer);
    return buffer;
  }

  /**
   * Compiles what is missing, then encodes every step in order and submits them as one command
   * buffer, with one queue write of all uniforms. With `encoder` (the app's), records into it
   * instead and submits nothing: the app submits it, after the call's promise resolves. Rejects
   * with the message of any WebGPU validation, internal or out-of-memory error the call caused (a
   * buffer of another device, a destroyed one, missing usage flags). Scratch buffers are freed
   * once submitted (the submitted work keeps them alive until it finishes); those of a call
   * recorded into an app's encoder are left to the garbage collector, since the library cannot
   * know when the app submits.
   */
  async submit(encoder?: GPUCommandEncoder): Promise<void> {
    const { ctx } = this;
    let release = true;
    try {
      const pipelines = await Promise.all(this.steps.map((s) => ('pipeline' in s ? s.pipeline : undefined)));
      ctx.assertAlive(this.label);
      const maxGrid = ctx.limits.maxComputeWorkgroupsPerDimension;
      const align = ctx.device.limits.minUniformBufferOffsetAlignment;
      // Uniform blocks of the dispatches, each at an offset the device can bind.
      const blocks: { bytes: ArrayBuffer; offset: number; grid: [number, number, number] }[] = [];
      let total = 0;
      for (const s of this.steps) {
        if (!('program' in s)) continue;
        const grid = foldGrid(s.program.workgroups, maxGrid, s.program.name);
        const { fields, size } = layout(s.program.name, withGrid(s.program, grid));
        const bytes = new ArrayBuffer(size);
        const u32 = new Uint32Array(bytes);
        const i32v = new Int32Array(bytes);
        const f32v = new Float32Array(bytes);
        for (const f of fields) {
          const view = f.kind === 'u32' ? u32 : f.kind === 'i32' ? i32v : f32v;
          view.set(f.values, f.offset / 4);
        }
        blocks.push({ bytes, offset: total, grid });
        total = Math.ceil((total + size) / align) * align;
      }
      // An app's encoder is submitted later, after other calls may have rewritten the shared
      // uniform buffer: such a call gets a buffer of its own.
      const uniformBuffer = !total
        ? undefined
        : encoder
          ? ctx.device.createBuffer({
              size: total,
              usage: Usage.UNIFORM | Usage.COPY_DST,
              label: `${this.label}:uniforms`,
            })
          : ctx.uniformStorage(total);
      const packed = new Uint8Array(total);
      for (const b of blocks) packed.set(new Uint8Array(b.bytes), b.offset);

      // validation errors only, and only for app buffers or encoders: each scope costs a round trip
      const scopes: GPUErrorFilter[] = this.checkErrors || encoder ? ['validation'] : [];
      for (const filter of scopes) ctx.device.pushErrorScope(filter);
      // Encoded, written and submitted with no await in between: calls in flight share the
      // uniform buffer, and the queue orders each write before its own submit and after the
      // earlier ones; the error scopes hold this call's errors only.
      let thrown: unknown;
      try {
        const target = encoder ?? ctx.device.createCommandEncoder({ label: this.label });
        this.encode(target, pipelines, blocks, uniformBuffer);
        if (uniformBuffer) ctx.device.queue.writeBuffer(uniformBuffer, 0, packed);
        if (encoder) release = false;
        else ctx.device.queue.submit([target.finish()]);
      } catch (e) {
        thrown = e;
      }
      const errors = await Promise.all(scopes.map(() => ctx.device.popErrorScope()));
      if (thrown) throw thrown;
      const error = errors.find((e) => e !== null);
      if (error) throw new Error(`${this.label}: WebGPU error: ${error.message}`);
    } finally {
      for (const b of this.scratch) {
        if (release) ctx.returnScratch(b);
        else ctx.forgetBuffer(b);
      }
    }
  }

  /** Waits until every pipeline of the recorded programs is compiled; runs nothing. */
  async compile(): Promise<void> {
    try {
      await Promise.all(this.steps.map((s) => ('pipeline' in s ? s.pipeline : undefined)));
    } finally {
      for (const b of this.scratch) this.ctx.returnScratch(b);
    }
  }

  private encode(
    encoder: GPUCommandEncoder,
    pipelines: (GPUComputePipeline | undefined)[],
    blocks: { bytes: ArrayBuffer; offset: number; grid: [number, number, number] }[],
    uniformBuffer: GPUBuffer | undefined,
  ): void {
    const { ctx } = this;
    let n = 0;
    this.steps.forEach((s, index) => {
      if ('copy' in s) {
        encoder.copyBufferToBuffer(...s.copy);
      } else if ('clear' in s) {
        if ('buffer' in s.clear) encoder.clearBuffer(s.clear.buffer, s.clear.offset, s.clear.size);
        else encoder.clearBuffer(s.clear);
      } else {
        const block = blocks[n++];
        const pipeline = pipelines[index]!;
        const entries: GPUBindGroupEntry[] = [
          {
            binding: 0,
            resource: { buffer: uniformBuffer!, offset: block.offset, size: block.bytes.byteLength },
          },
        ];
        s.program.bindings.forEach((b, i) => {
          const resource = !b ? { buffer: ctx.dummy(`binding${i + 1}`) } : 'buffer' in b ? b : { buffer: b };
          entries.push({ binding: i + 1, resource });
        });
        const pass = encoder.beginComputePass({ label: s.program.name });
        pass.setPipeline(pipeline);
        pass.setBindGroup(
          0,
          ctx.device.createBindGroup({
            label: s.program.name,
            layout: bindGroupLayout(pipeline),
            entries,
          }),
        );
        pass.dispatchWorkgroups(...block.grid);
        pass.end();
      }
    });
  }
}
