import { systemClock, type Clock } from '../../src/time';

/** A clock that moves only when told to: `advance(ms)` runs every timer that falls due, in order. */
export class ManualClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; run: () => void; every?: number }>();

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + ms, run: resolve });
      signal?.addEventListener(
        'abort',
        () => {
          this.timers.delete(id);
          reject(signal.reason as Error);
        },
        { once: true },
      );
    });
  }

  every(ms: number, fn: () => void): () => void {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, run: fn, every: ms });
    return () => this.timers.delete(id);
  }

  /** Timers not yet run or cancelled (a wait that cleaned up after itself leaves none). */
  pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running due timers (and letting promises settle between them). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; run: () => void; every?: number }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      const [id, timer] = next;
      this.t = timer.at;
      if (timer.every) timer.at += timer.every;
      else this.timers.delete(id);
      timer.run();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

/** The real clock, plus an offset a test can move forward at once (timers and sleeps stay real). */
export class SkippingClock implements Clock {
  private offset = 0;
  now(): number {
    return systemClock.now() + this.offset;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
  every(ms: number, fn: () => void): () => void {
    return systemClock.every(ms, fn);
  }
  /** Time jumps forward by `ms`. */
  skip(ms: number): void {
    this.offset += ms;
  }
}
