// Option checks every public entry point shares.

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
