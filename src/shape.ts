// Shape checks shared by the ops and the CPU reference. Every error names the argument, what was
// expected and what was received.

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Throws unless `shape` has `rank` dims; `dims` names them for the message, e.g. 'B, H, L, D'. */
export function expectRank(what: string, shape: readonly number[], rank: number, dims: string): void {
  if (shape.length !== rank) {
    throw new Error(`${what}: expected rank ${rank} [${dims}], received shape ${fmt(shape)}`);
  }
}

/**
 * Element strides that read a tensor of `shape` as if broadcast to `target` (right-aligned, dims
 * of size 1 repeat). Throws when `shape` cannot broadcast to `target`.
 */
export function broadcastStrides(
  what: string,
  shape: readonly number[],
  target: readonly number[],
): number[] {
  if (shape.length > target.length) {
    throw new Error(`${what}: shape ${fmt(shape)} has more dims than ${fmt(target)} it broadcasts to`);
  }
  const strides = new Array<number>(target.length).fill(0);
  let stride = 1;
  for (let i = 1; i <= shape.length; i++) {
    const s = shape[shape.length - i];
    const t = target[target.length - i];
    if (s !== t && s !== 1) {
      throw new Error(
        `${what}: shape ${fmt(shape)} cannot broadcast to ${fmt(target)} (dim ${shape.length - i} is ${s}, expected ${t} or 1)`,
      );
    }
    strides[target.length - i] = s === 1 ? 0 : stride;
    stride *= s;
  }
  return strides;
}
