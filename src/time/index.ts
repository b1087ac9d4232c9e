/**
 * Time for every folder: the injected clock (tests and simulations drive it), cancellable waits, and the
 * bounded waits written once here — a promise or a timeout, whichever comes first, with no timer outliving
 * the wait, stall watches, wakeable sleeps, and which failures are transient (transient.ts). Every folder
 * waits through a Clock; the only bare timers left are process-level bounds (main.ts's forced exit, the
 * validate command's time limit) and gRPC's own absolute call deadlines.
 */
import { systemClock, type Clock } from './clock';

export { systemClock, waitForChange, type Clock } from './clock';
export { GrpcCode, isRetryableGrpc, isRetryableHttp, isUnansweredGrpc } from './transient';

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

/**
 * A watch on something that should keep moving: `touch()` when it moves, `stop()` when it ends. While
 * `pause()`d (our own side is busy, not the source), it never fires; `touch()` resumes it.
 */
export interface StallWatch {
  touch(): void;
  pause(): void;
  stop(): void;
}

/**
 * Calls `onStall` once if `touch()` is not called for `ms` (checked every quarter of `ms`, so a stall is
 * told between `ms` and 1.25 × `ms` after the last touch): one repeating check for a whole stream, rather
 * than a timer set again for every chunk.
 */
export function stallWatch(clock: Clock, ms: number, onStall: () => void): StallWatch {
  let last = clock.now();
  let paused = false;
  const stop = clock.every(Math.max(1, Math.floor(ms / 4)), () => {
    if (paused || clock.now() - last < ms) return;
    stop();
    onStall();
  });
  return {
    touch: () => {
      last = clock.now();
      paused = false;
    },
    pause: () => {
      paused = true;
    },
    stop,
  };
}

/** A sleep that can be ended early: `wake()` resolves `done` at once (it never rejects). */
export function wakeableSleep(clock: Clock, ms: number): { done: Promise<void>; wake: () => void } {
  const early = new AbortController();
  return {
    done: clock.sleep(Math.max(0, ms), early.signal).catch(() => undefined),
    wake: () => early.abort(),
  };
}
