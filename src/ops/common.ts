// Pieces every op shares: option checking, the template step that specialises a WGSL kernel and
// the dispatch grid.

import type { Context } from '../context';

/** Throws on option keys the op does not know (a typo would otherwise be ignored silently). */
export function checkOptions(op: string, options: object, known: readonly string[]): void {
  if (options === null || typeof options !== 'object') {
    throw new Error(
      `${op}: options must be an object, received ${options === null ? 'null' : typeof options}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new Error(`${op}: unknown option '${key}', expected one of ${known.join(', ')}`);
    }
  }
}

/**
 * Prepends compile-time constants to a kernel: integers become `const NAME = 7u;`, booleans
 * `const NAME = true;`. Sizes that vary per call go in uniforms instead.
 */
export function specialise(source: string, constants: Record<string, number | boolean>): string {
  const lines = Object.entries(constants).map(([name, value]) => {
    if (typeof value === 'boolean') return `const ${name} = ${value};`;
    if (!Number.isInteger(value) || value < 0) throw new Error(`specialise: ${name}=${value} is not a u32`);
    return `const ${name} = ${value}u;`;
  });
  return `${lines.join('\n')}\n${source}`;
}

/**
 * Spreads `count` workgroups over x, y and z so that none exceeds maxComputeWorkgroupsPerDimension;
 * the kernel unfolds the linear index and skips the excess.
 */
export function foldGrid(ctx: Context, count: number, what: string): [number, number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(count, max);
  const y = Math.min(Math.ceil(count / x), max);
  const z = Math.ceil(count / (x * y));
  if (z > max) {
    throw new Error(`${what}: ${count} workgroups exceed ${max}^3 (maxComputeWorkgroupsPerDimension)`);
  }
  return [x, y, z];
}
