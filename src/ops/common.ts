// Pieces every op shares: option checking and the template step that specialises a WGSL kernel.

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
