/**
 * Time, injected so tests and simulations drive it: the current time, cancellable sleeps and repeating
 * timers. `systemClock` is the real one; tests use a manual clock (test/support/manual-clock.ts).
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `fn` every `ms` until the returned function is called. Never keeps the process alive. */
  every(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
  every: (ms, fn) => {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

/**
 * Waits for `event` or `ms`, whichever comes first, and cancels the timer either way (no timer outlives
 * the wait). Rejects with the signal's reason when it aborts.
 */
export async function waitForChange(
  clock: Clock,
  event: Promise<unknown>,
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  const timer = new AbortController();
  const onAbort = () => timer.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.race([event, clock.sleep(Math.max(0, ms), timer.signal)]);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (!timer.signal.aborted) throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    timer.abort();
  }
  if (signal?.aborted) throw signal.reason;
}
