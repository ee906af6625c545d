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

/**
 * The binding of `bytes` bytes from byte `start` of `buffer` for a kernel that reads or writes
 * them as u32 words: the range starts at the multiple of `align` at or below `start` and ends on a
 * word; `at` is where the bytes start in it.
 */
export function wordRange(
  buffer: GPUBuffer,
  start: number,
  bytes: number,
  align: number,
): { binding: GPUBufferBinding; at: number } {
  const offset = start - (start % align);
  return {
    binding: { buffer, offset, size: Math.ceil((start + bytes) / 4) * 4 - offset },
    at: start - offset,
  };
}

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
const GRID_UNIFORMS = ['workgroups', 'grid_x', 'grid_y'] as const;

/** A field of the uniform struct: its WGSL type and where its first word goes. */
interface Field {
  name: string;
  type: string;
  /** Offset in 4-byte words. */
  word: number;
  kind: 'u32' | 'i32' | 'f32' | 'vec4u';
  /** vec4u: the number of u32 values. */
  length: number;
}

/** What a program's signature (see `compiled`) is compiled to, once per device. */
interface Compiled {
  pipeline: Promise<GPUComputePipeline>;
  /** The pipeline, once compiled: submits that find every pipeline ready do not wait. */
  ready?: GPUComputePipeline;
  /** The program's uniforms, in order, then `workgroups`, `grid_x`, `grid_y` (the last three). */
  fields: readonly Field[];
  /** Bytes of the uniform struct (a multiple of 16). */
  size: number;
  /** The last bind groups made for the pipeline, by {@link bindGroupKey}, least recent first. */
  groups: Map<string, GPUBindGroup>;
}

/** The uniform struct of `uniforms` plus the grid's: its fields and byte size (multiple of 16). */
function layout(name: string, uniforms: Readonly<Record<string, UniformValue>>) {
  const fields: Field[] = [];
  let offset = 0;
  const add = (field: string, u: UniformValue) => {
    if (typeof u === 'number' || u.type !== 'vec4u') {
      const kind = typeof u === 'number' ? 'u32' : u.type;
      fields.push({ name: field, type: kind, word: offset / 4, kind, length: 1 });
      offset += 4;
      return;
    }
    const length = (u.value as readonly number[]).length;
    if (length === 0 || length % 4) {
      throw new Error(`${name}: uniform ${field} needs a multiple of 4 values, received ${length}`);
    }
    offset = Math.ceil(offset / 16) * 16;
    fields.push({
      name: field,
      type: `array<vec4<u32>, ${length / 4}>`,
      word: offset / 4,
      kind: 'vec4u',
      length,
    });
    offset += length * 4;
  };
  for (const [field, u] of Object.entries(uniforms)) {
    if ((GRID_UNIFORMS as readonly string[]).includes(field)) {
      throw new Error(`${name}: uniform ${field} is set by the runner`);
    }
    add(field, u);
  }
  for (const field of GRID_UNIFORMS) add(field, 0);
  return { fields, size: Math.ceil(offset / 16) * 16 };
}

/** The complete WGSL of `program`, whose uniform struct has `fields`. */
function wgslOf(program: Program, fields: readonly Field[]): string {
  const constants = Object.entries(program.constants ?? {}).map(([name, value]) => {
    if (typeof value === 'boolean') return `const ${name} = ${value};`;
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`${program.name}: constant ${name}=${value} is not a u32`);
    }
    return `const ${name} = ${value}u;`;
  });
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
    `struct Params {\n${fields.map((f) => `  ${f.name}: ${f.type},`).join('\n')}\n}\n`,
    '@group(0) @binding(0) var<uniform> p: Params;',
    'fn workgroupIndex(wid: vec3<u32>) -> u32 { return wid.x + (wid.y + wid.z * p.grid_y) * p.grid_x; }',
    body,
  ].join('\n');
}

/**
 * A name that `code` declares twice at module scope (outside every brace), or undefined: WGSL
 * refuses such a module with a message about the kernel's lines, which this names the clash for.
 * @internal exported for its spec
 */
export function declaredTwice(code: string): string | undefined {
  const text = code.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ' ');
  let top = '';
  let depth = 0;
  for (const c of text) {
    if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (depth === 0) top += c;
  }
  const seen = new Set<string>();
  for (const [, name] of top.matchAll(/\b(?:fn|const|override|var(?:<[^>]*>)?|struct|alias)\s+(\w+)/g)) {
    if (seen.has(name!)) return name;
    seen.add(name!);
  }
  return undefined;
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

/**
 * One step of a program signature in the per-device cache: the signature is the sequence name,
 * sources, constant names and values, uniform names and types (see `compiled`); the node where a
 * program's sequence ends holds what it compiled to.
 */
interface SignatureNode {
  next: Map<unknown, SignatureNode>;
  compiled?: Compiled;
}

/**
 * Markers between the parts of a signature (so that a source can never pass for a constant), and
 * of a uniform's type after its name (none for a u32; a vec4u's length).
 */
const CONSTANTS = Symbol('constants');
const UNIFORMS = Symbol('uniforms');
const TYPES = { f32: Symbol('f32'), i32: Symbol('i32') };

const programCache = new WeakMap<GPUDevice, SignatureNode>();

function step(node: SignatureNode, key: unknown): SignatureNode {
  let next = node.next.get(key);
  if (!next) {
    next = { next: new Map() };
    node.next.set(key, next);
  }
  return next;
}

/**
 * The pipeline and uniform layout of `program`, compiled once per device (asynchronously). Found
 * by walking the program's signature through Map lookups, with no key built: the steady state of
 * a call allocates nothing here.
 */
function compiled(ctx: Context, program: Program): Compiled {
  ctx.assertAlive(program.name);
  let node = programCache.get(ctx.device);
  if (!node) {
    node = { next: new Map() };
    programCache.set(ctx.device, node);
  }
  node = step(node, program.name);
  for (const source of program.sources) node = step(node, source);
  node = step(node, CONSTANTS);
  const { constants, uniforms } = program;
  for (const name in constants) node = step(step(node, name), constants[name]);
  node = step(node, UNIFORMS);
  for (const name in uniforms) {
    node = step(node, name);
    const u = uniforms[name];
    if (typeof u !== 'number')
      node = step(node, u.type === 'vec4u' ? (u.value as readonly number[]).length : TYPES[u.type]);
  }
  if (node.compiled) return node.compiled;
  const { fields, size } = layout(program.name, uniforms ?? {});
  const code = wgslOf(program, fields);
  const twice = declaredTwice(code);
  const pipeline = twice
    ? Promise.reject(
        new Error(
          `${program.name}: its WGSL declares \`${twice}\` twice: a function of scoreMod or maskMod, or a modData entry, takes a name the kernel uses; rename it`,
        ),
      )
    : keepAliveUntil(
        ctx.device.createComputePipelineAsync({
          label: program.name,
          layout: 'auto',
          compute: {
            module: ctx.device.createShaderModule({ code, label: program.name }),
            entryPoint: 'main',
          },
        }),
      );
  const entry: Compiled = { pipeline, fields, size, groups: new Map() };
  const at = node;
  at.compiled = entry;
  pipeline.then(
    (ready) => {
      entry.ready = ready;
    },
    () => {
      if (at.compiled === entry) at.compiled = undefined;
    },
  );
  return entry;
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

/**
 * Bind groups kept per pipeline: a decode loop binds the same buffers call after call (the KV
 * cache, pooled scratch, `out` tensors), and making a bind group costs more host time than the
 * rest of a small dispatch. Few, so that buffers an app drops without destroy() are not held long.
 */
const BIND_GROUPS_PER_PIPELINE = 8;
/** Buffer ids for bind-group keys; never reused, so a destroyed buffer's groups are never hit. */
const bufferIds = new WeakMap<GPUBuffer, number>();
let lastBufferId = 0;
function bufferId(buffer: GPUBuffer): number {
  let id = bufferIds.get(buffer);
  if (id === undefined) {
    id = ++lastBufferId;
    bufferIds.set(buffer, id);
  }
  return id;
}

/** Views of the words every submit packs its uniforms into (queue.writeBuffer copies them). */
interface Words {
  u32: Uint32Array;
  i32: Int32Array;
  f32: Float32Array;
}
const wordsOf = (bytes: ArrayBuffer): Words => ({
  u32: new Uint32Array(bytes),
  i32: new Int32Array(bytes),
  f32: new Float32Array(bytes),
});
let packed = wordsOf(new ArrayBuffer(4096));

/**
 * Writes `program`'s uniforms and its grid into `words` from word `at`, as `fields` lay them out
 * (the fields of the program's signature: same names, order and types).
 */
function pack(
  program: Program,
  fields: readonly Field[],
  grid: readonly number[],
  words: Words,
  at: number,
): void {
  let n = 0;
  const { uniforms } = program;
  for (const name in uniforms) {
    const u = uniforms[name];
    const f = fields[n++];
    const o = at + f.word;
    if (typeof u === 'number') {
      if (!Number.isInteger(u) || u < 0 || u > 0xffffffff) {
        throw new Error(`${program.name}: uniform ${name} must be a u32, received ${u}`);
      }
      words.u32[o] = u;
    } else if (f.kind === 'vec4u') {
      const values = u.value as readonly number[];
      for (let i = 0; i < values.length; i++) words.u32[o + i] = values[i];
    } else {
      const x = u.value as number;
      if (f.kind === 'i32') {
        if (!Number.isInteger(x))
          throw new Error(`${program.name}: uniform ${name} must be an i32, received ${x}`);
        words.i32[o] = x;
      } else {
        words.f32[o] = x;
      }
    }
  }
  words.u32[at + fields[n].word] = program.workgroups;
  words.u32[at + fields[n + 1].word] = grid[0];
  words.u32[at + fields[n + 2].word] = grid[1];
}

/** A dispatch of a recording; `offset` (bytes into the uniforms) and `grid` are set by submit. */
interface Dispatch {
  program: Program;
  compiled: Compiled;
  offset: number;
  grid: [number, number, number];
}

type Step =
  | Dispatch
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
    this.steps.push({ program, compiled: compiled(this.ctx, program), offset: 0, grid: [1, 1, 1] });
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

  /** Waits for the pipelines still compiling (none in the steady state: no await then). */
  private async pipelines(): Promise<void> {
    await Promise.all(this.steps.map((s) => ('compiled' in s ? s.compiled.pipeline : undefined)));
  }

  /**
   * Compiles what is missing, then encodes every step in order and submits them as one command
   * buffer, with one queue write of all uniforms. With `encoder` (the app's), records into it
   * instead and submits nothing: the app submits it, after the call's promise resolves. Rejects
   * with the message of any WebGPU validation, internal or out-of-memory error the call caused (a
   * buffer of another device, a destroyed one, missing usage flags). Scratch buffers are freed
   * once submitted (the submitted work keeps them alive until it finishes); those of a call
   * recorded into an app's encoder are left to the garbage collector, since the library cannot
   * know when the app submits. When every pipeline is compiled, the work is submitted before this
   * returns its promise.
   */
  async submit(encoder?: GPUCommandEncoder): Promise<void> {
    const { ctx } = this;
    let release = true;
    try {
      if (this.steps.some((s) => 'compiled' in s && !s.compiled.ready)) await this.pipelines();
      ctx.assertAlive(this.label);
      const maxGrid = ctx.limits.maxComputeWorkgroupsPerDimension;
      const align = ctx.device.limits.minUniformBufferOffsetAlignment;
      // Uniform blocks of the dispatches, each at an offset the device can bind.
      let total = 0;
      for (const s of this.steps) {
        if (!('compiled' in s)) continue;
        s.grid = foldGrid(s.program.workgroups, maxGrid, s.program.name);
        s.offset = total;
        total = Math.ceil((total + s.compiled.size) / align) * align;
      }
      if (packed.u32.byteLength < total) packed = wordsOf(new ArrayBuffer(2 ** Math.ceil(Math.log2(total))));
      for (const s of this.steps) {
        if ('compiled' in s) pack(s.program, s.compiled.fields, s.grid, packed, s.offset / 4);
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

      // validation errors only, and only for app buffers or encoders: each scope costs a round trip
      const scopes: GPUErrorFilter[] = this.checkErrors || encoder ? ['validation'] : [];
      for (const filter of scopes) ctx.device.pushErrorScope(filter);
      // Encoded, written and submitted with no await in between: calls in flight share the
      // uniform buffer, and the queue orders each write before its own submit and after the
      // earlier ones; the error scopes hold this call's errors only.
      let thrown: unknown;
      try {
        const target = encoder ?? ctx.device.createCommandEncoder({ label: this.label });
        // an app encoder's call has a uniform buffer of its own: its bind groups are never reused
        this.encode(target, uniformBuffer, !encoder);
        if (uniformBuffer) ctx.device.queue.writeBuffer(uniformBuffer, 0, packed.u32.buffer, 0, total);
        if (encoder) release = false;
        else ctx.device.queue.submit([target.finish()]);
      } catch (e) {
        thrown = e;
      }
      if (scopes.length) {
        const errors = await Promise.all(scopes.map(() => ctx.device.popErrorScope()));
        const error = errors.find((e) => e !== null);
        if (!thrown && error) throw new Error(`${this.label}: WebGPU error: ${error.message}`);
      }
      if (thrown) throw thrown;
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
      await this.pipelines();
    } finally {
      for (const b of this.scratch) this.ctx.returnScratch(b);
    }
  }

  /**
   * Encodes the steps in order: each run of consecutive dispatches in one compute pass (WebGPU
   * makes a dispatch's writes visible to the next one within a pass), copies and clears between.
   * With `cache`, bind groups are taken from and kept in the pipeline's few recent ones.
   */
  private encode(encoder: GPUCommandEncoder, uniformBuffer: GPUBuffer | undefined, cache: boolean): void {
    const { ctx } = this;
    let pass: GPUComputePassEncoder | undefined;
    for (const s of this.steps) {
      if (!('compiled' in s)) {
        pass?.end();
        pass = undefined;
        if ('copy' in s) encoder.copyBufferToBuffer(...s.copy);
        else if ('buffer' in s.clear) encoder.clearBuffer(s.clear.buffer, s.clear.offset, s.clear.size);
        else encoder.clearBuffer(s.clear);
        continue;
      }
      const pipeline = s.compiled.ready!;
      // the key: every bound buffer's id, offset and size, in binding order
      let key = uniformBuffer ? `${bufferId(uniformBuffer)}:${s.offset}` : '';
      const { bindings } = s.program;
      const resources: GPUBufferBinding[] = [];
      for (let i = 0; i < bindings.length; i++) {
        const b = bindings[i];
        const resource = !b ? { buffer: ctx.dummy(i + 1) } : 'buffer' in b ? b : { buffer: b };
        resources.push(resource);
        key += `|${bufferId(resource.buffer)}:${resource.offset ?? 0}:${resource.size ?? ''}`;
      }
      const { groups } = s.compiled;
      let group = cache ? groups.get(key) : undefined;
      if (group) {
        groups.delete(key); // most recent last
      } else {
        const entries: GPUBindGroupEntry[] = [
          { binding: 0, resource: { buffer: uniformBuffer!, offset: s.offset, size: s.compiled.size } },
          ...resources.map((resource, i) => ({ binding: i + 1, resource })),
        ];
        const layout = bindGroupLayout(pipeline);
        group = ctx.device.createBindGroup({ label: s.program.name, layout, entries });
        if (cache && groups.size >= BIND_GROUPS_PER_PIPELINE) groups.delete(groups.keys().next().value!);
      }
      if (cache) groups.set(key, group);
      pass ??= encoder.beginComputePass({ label: this.label });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(s.grid[0], s.grid[1], s.grid[2]);
    }
    pass?.end();
  }
}
