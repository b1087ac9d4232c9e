/**
 * How tests wait: for a condition or an event, never for a length of time. Every wait has a bound, and
 * one that runs out fails naming what it waited for. A test that must let time pass (a timeout under test,
 * a client that must be slow, an emulated latency) sleeps where it does, with a comment saying why.
 */
import type { EventEmitter } from 'node:events';

/** A wait that ran out of time. */
export class WaitTimeout extends Error {}

export interface WaitOptions {
  /** The bound: the wait fails after this long. */
  timeoutMs: number;
  /** What is waited for, as the failure names it ("model a resident"). */
  what: string;
}

/**
 * Resolves once `cond` holds, checking it now and then again after short pauses (1 ms doubling to 20 ms or
 * `maxPauseMs`: a condition that soon holds is seen soon, one that takes longer costs little); rejects
 * with a `WaitTimeout` naming `what` once `timeoutMs` have passed. An error `cond` throws ends the wait.
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  options: WaitOptions & {
    /** Said in the failure after `what`: the state the condition saw last. */
    detail?: () => string | Promise<string>;
    /** The longest pause between two checks (default 20 ms): more for a costly check of a real server. */
    maxPauseMs?: number;
  },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const most = options.maxPauseMs ?? 20;
  for (let pause = 1; ; pause = Math.min(pause * 2, most)) {
    if (await cond()) return;
    if (Date.now() >= deadline) {
      const detail = options.detail ? ` (${await options.detail()})` : '';
      throw new WaitTimeout(`${options.what}: not within ${options.timeoutMs} ms${detail}`);
    }
    // The pause between two checks of a condition (not a wait for time to pass).
    await new Promise((r) => setTimeout(r, pause));
  }
}

/**
 * `p`, or a `WaitTimeout` naming `what` once `timeoutMs` have passed, whichever comes first (the timer is
 * cleared either way): the bound for a wait on a promise that may never settle.
 */
export async function within<T>(p: Promise<T>, options: WaitOptions): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        // The bound of the wait, not a wait for time.
        timer = setTimeout(
          () => reject(new WaitTimeout(`${options.what}: not within ${options.timeoutMs} ms`)),
          options.timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The arguments of the next `event` on `emitter` that `filter` accepts (any, without one); rejects with a
 * `WaitTimeout` naming `what` after `timeoutMs`. Call it before the action that causes the event, and
 * await it after: an event emitted before the call is not seen. A rejection nobody awaits yet is not an
 * unhandled one (the caller awaits it later).
 */
export function nextEvent<T extends Record<keyof T, unknown[]>, K extends keyof T & string>(
  emitter: EventEmitter<T>,
  event: K,
  options: WaitOptions & { filter?: (...args: T[K]) => boolean },
): Promise<T[K]>;
export function nextEvent<A extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  options: WaitOptions & { filter?: (...args: A) => boolean },
): Promise<A>;
export function nextEvent<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  options: WaitOptions & { filter?: (...args: A) => boolean },
): Promise<A> {
  let listener: ((...args: unknown[]) => void) | undefined;
  const seen = new Promise<A>((resolve, reject) => {
    listener = (...args: unknown[]) => {
      // A filter that throws fails this wait, never the emitter's code that emitted the event.
      let wanted: boolean;
      try {
        wanted = !options.filter || options.filter(...(args as A));
      } catch (err) {
        emitter.off(event, listener as (...a: unknown[]) => void);
        reject(err as Error);
        return;
      }
      if (!wanted) return;
      emitter.off(event, listener as (...a: unknown[]) => void);
      resolve(args as A);
    };
    emitter.on(event, listener);
  });
  const bounded = within(seen, options).finally(() =>
    emitter.off(event, listener as (...a: unknown[]) => void),
  );
  bounded.catch(() => undefined);
  return bounded;
}

/**
 * Resolves once `cond` holds, checking it now and after every `event` on `emitter` (no polling: the
 * condition can only change when the emitter says something happened); `WaitTimeout` after `timeoutMs`.
 */
export async function untilEvent(
  emitter: EventEmitter,
  event: string,
  cond: () => boolean,
  options: WaitOptions,
): Promise<void> {
  if (cond()) return;
  await nextEvent(emitter, event, { ...options, filter: () => cond() });
}

/** A callback's call as a promise: `fire` resolves `fired` (for clocks and hooks a test injects). */
export function signal<T = void>(): { fired: Promise<T>; fire: (value: T) => void } {
  let fire!: (value: T) => void;
  const fired = new Promise<T>((r) => (fire = r));
  return { fired, fire };
}
