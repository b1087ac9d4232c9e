/**
 * Time for every folder: the injected clock (tests and simulations drive it), cancellable waits, and the
 * bounded waits written once here — a promise or a timeout, whichever comes first, with no timer outliving
 * the wait. Nothing below src/ waits on a bare timer for these jobs.
 */
import { systemClock, type Clock } from './clock';

export { systemClock, waitForChange, type Clock } from './clock';

/** True if `p` settles (either way) within `ms`; the timer is cleared at once when it does. */
export async function settlesWithin(
  p: Promise<unknown>,
  ms: number,
  clock: Clock = systemClock,
): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      clock.sleep(ms, timer.signal).then(
        () => false,
        () => false,
      ),
    ]);
  } finally {
    timer.abort();
  }
}

/**
 * `p`, or a rejection with `onTimeout()`'s error once `ms` have passed, whichever comes first (the timer
 * is cleared either way). `p` itself is not cancelled: pass work that ends on its own or by a signal.
 */
export async function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => Error,
  clock: Clock = systemClock,
): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      p,
      clock.sleep(ms, timer.signal).then((): never => {
        throw onTimeout();
      }),
    ]);
  } finally {
    timer.abort();
  }
}

/** Awaits `p` for at most `ms`; calls `onTimeout` (and resolves) when time runs out first. Rejections pass. */
export async function waitOrTimeout(
  p: Promise<unknown>,
  clock: Clock,
  ms: number,
  onTimeout: () => void,
): Promise<void> {
  const timer = new AbortController();
  let done = false;
  try {
    await Promise.race([
      p.finally(() => {
        done = true;
      }),
      clock.sleep(ms, timer.signal).then(() => {
        if (!done) onTimeout();
      }),
    ]);
  } finally {
    timer.abort();
  }
}

/**
 * The wait before retry `attempt` (0-based): `baseMs` doubling each attempt up to `maxMs`, with up to
 * `jitter` of it taken off at random so retries of many callers spread out.
 */
export function backoffMs(
  attempt: number,
  options: { baseMs: number; maxMs: number; jitter?: number },
  random: () => number = Math.random,
): number {
  const full = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(full * (1 - (options.jitter ?? 0) * random()));
}
