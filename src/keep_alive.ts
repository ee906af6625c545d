// Keeping Node alive while GPU promises are pending.

let pending = 0;
let keepAliveTimer: ReturnType<typeof setInterval> | undefined;

/**
 * Resolves like `promise`, keeping the JS event loop alive meanwhile. Dawn in Node does not hold
 * the loop open for its own promises (pipeline compiles, mapAsync), so a script whose only pending
 * work is on the GPU would otherwise exit before it finishes. Harmless in browsers.
 */
export function keepAliveUntil<T>(promise: Promise<T>): Promise<T> {
  if (pending++ === 0) keepAliveTimer = setInterval(() => {}, 1000);
  return promise.finally(() => {
    if (--pending === 0) clearInterval(keepAliveTimer);
  });
}
