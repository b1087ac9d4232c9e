import { backoffMs, settlesWithin, withTimeout, waitOrTimeout } from '../../src/time';
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
});
