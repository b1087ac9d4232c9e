import { status } from '@grpc/grpc-js';
import {
  GrpcCode,
  backoffMs,
  isRetryableGrpc,
  isRetryableHttp,
  isUnansweredGrpc,
  settlesWithin,
  stallWatch,
  wakeableSleep,
  withTimeout,
  waitOrTimeout,
} from '../../src/time';
import { TritonError } from '../../src/triton';
import { ManualClock } from '../support/manual-clock';

describe('time: the bounded waits written once', () => {
  test('backoffMs doubles from the base up to the cap; jitter takes up to its share off', () => {
    const opts = { baseMs: 100, maxMs: 5_000 };
    expect([0, 1, 2, 5, 6, 40].map((a) => backoffMs(a, opts))).toEqual([100, 200, 400, 3200, 5000, 5000]);
    expect(backoffMs(3, { ...opts, jitter: 0.5 }, () => 0)).toBe(800);
    expect(backoffMs(3, { ...opts, jitter: 0.5 }, () => 0.999999)).toBe(400);
  });

  test('settlesWithin, withTimeout and waitOrTimeout follow the injected clock and leave no timer', async () => {
    const clock = new ManualClock();
    const never = new Promise<void>(() => undefined);
    const settled = settlesWithin(never, 1000, clock);
    const timedOut = withTimeout(never, 500, () => new Error('too slow'), clock).catch(
      (e: Error) => e.message,
    );
    let told = false;
    const waited = waitOrTimeout(never, clock, 200, () => (told = true));
    await clock.advance(1000);
    await expect(settled).resolves.toBe(false);
    expect(await timedOut).toBe('too slow');
    await waited;
    expect(told).toBe(true);
    await expect(settlesWithin(Promise.reject(new Error('x')), 1000, clock)).resolves.toBe(true);
    await expect(withTimeout(Promise.resolve(7), 1000, () => new Error('no'), clock)).resolves.toBe(7);
    expect(clock.pendingTimers()).toBe(0);
  });

  test('transient failures, as data: the protocol numbers, and which failures each caller may try again', () => {
    // The table's numbers are gRPC's own.
    expect(GrpcCode).toEqual({
      CANCELLED: status.CANCELLED,
      DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
      UNAVAILABLE: status.UNAVAILABLE,
    });
    const all = Object.values(status).filter((v): v is number => typeof v === 'number');
    expect(all.filter(isRetryableGrpc)).toEqual([status.UNAVAILABLE]);
    expect(all.filter(isUnansweredGrpc).sort((a, b) => a - b)).toEqual([
      status.CANCELLED,
      status.DEADLINE_EXCEEDED,
      status.UNAVAILABLE,
    ]);
    // Object stores: throttling, timeouts, server errors and no status at all; never another 4xx.
    expect([undefined, 408, 429, 500, 503, 599].every(isRetryableHttp)).toBe(true);
    expect([200, 304, 400, 403, 404, 409, 412, 416].some(isRetryableHttp)).toBe(false);
    // Triton's errors read the same table: out of memory is an answer whatever its status.
    const err = (code: number, text = 'failed') => new TritonError('RepositoryModelLoad', code, text);
    expect(err(status.DEADLINE_EXCEEDED).answered).toBe(false);
    expect(err(status.UNAVAILABLE).answered).toBe(false);
    expect(err(status.CANCELLED).answered).toBe(false);
    expect(err(status.INTERNAL).answered).toBe(true);
    expect(err(status.INVALID_ARGUMENT).answered).toBe(true);
    expect(err(status.UNAVAILABLE, 'CUDA out of memory. Tried to allocate 2.00 MiB').answered).toBe(true);
  });

  test('stallWatch: told once, between ms and 1.25 ms after the last touch; never after stop', async () => {
    const clock = new ManualClock();
    let stalls = 0;
    const watch = stallWatch(clock, 1000, () => stalls++);
    await clock.advance(900);
    watch.touch(); // moved at 900: a stall is due at 1,900 at the earliest
    await clock.advance(999);
    expect(stalls).toBe(0);
    await clock.advance(250);
    expect(stalls).toBe(1);
    await clock.advance(10_000);
    expect(stalls).toBe(1); // once
    expect(clock.pendingTimers()).toBe(0);
    // Paused (the reader holds a chunk), it never fires; touched again, it counts from then.
    const paused = stallWatch(clock, 1000, () => stalls++);
    paused.pause();
    await clock.advance(10_000);
    expect(stalls).toBe(1);
    paused.touch();
    await clock.advance(1_250);
    expect(stalls).toBe(2);
    const stopped = stallWatch(clock, 1000, () => stalls++);
    stopped.stop();
    await clock.advance(10_000);
    expect(stalls).toBe(2);
    expect(clock.pendingTimers()).toBe(0);
  });

  test('wakeableSleep: done after ms, or at once when woken; never rejects and leaves no timer', async () => {
    const clock = new ManualClock();
    const order: string[] = [];
    const slept = wakeableSleep(clock, 1000);
    void slept.done.then(() => order.push('slept'));
    const woken = wakeableSleep(clock, 60_000);
    void woken.done.then(() => order.push('woken'));
    await clock.advance(999);
    expect(order).toEqual([]);
    woken.wake();
    await woken.done;
    await clock.advance(1);
    await slept.done;
    expect(order).toEqual(['woken', 'slept']);
    expect(clock.pendingTimers()).toBe(0);
  });
});
