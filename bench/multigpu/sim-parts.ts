/**
 * What both multi-GPU simulations (simulate.ts, busy-models.ts) build the same way: a clock driven by the
 * simulation, the agent's ledger on emulated empty GPUs, and the agent's admission whose evictions finish
 * at once, with a decision taken at once or counted as refused.
 */
import { silentLogger } from '../../src/observability';
import { Admission, GpuLedger, type Clock, type EvictionPolicy, type ModelRecord } from '../../src/models';
import { emptyGpus } from '../../test/support/gpu-sample';

/** Time from the simulation; sleeps never end (every decision here is made at once or not at all). */
export class SimClock implements Clock {
  t = 0;
  now(): number {
    return this.t;
  }
  sleep(): Promise<void> {
    return new Promise(() => undefined);
  }
  every(): () => void {
    return () => undefined;
  }
}

/** The agent's ledger on `devices` empty GPUs of `deviceBytes`, no headroom, releases seen at once. */
export function simLedger(clock: Clock, devices: number, deviceBytes: number): GpuLedger {
  const ledger = new GpuLedger({ headroomBytes: 0, metricsIntervalMs: 1000, releaseWaitMs: 0 }, () =>
    clock.now(),
  );
  ledger.observe(emptyGpus(devices, deviceBytes));
  return ledger;
}

/**
 * The agent's admission over `ledger` and `policy`. Unloads finish at once (after the decision, as they do
 * in the agent); `beforeEvict` runs first for a simulation that must settle what the model was doing.
 */
export function simAdmission(
  ledger: GpuLedger,
  policy: EvictionPolicy,
  clock: Clock,
  evictable: (name: string, exclude: ModelRecord) => boolean,
  beforeEvict: (name: string) => void = () => undefined,
): Admission {
  return new Admission(
    ledger,
    policy,
    {
      evictable,
      evict: (name) => {
        beforeEvict(name);
        ledger.startFreeing(name);
        queueMicrotask(() => {
          ledger.release(name);
          policy.onEvict(name, clock.now());
        });
      },
      pinned: () => ({ count: 0, bytes: 0 }),
    },
    clock,
    silentLogger(),
    { maxResident: 0 },
  );
}

/**
 * Admits `record` if admission can decide at once; a decision that would wait (nothing evictable covers
 * it) counts as refused, and its wait is called off so it never places the model later.
 */
export async function admitAtOnce(
  admission: Admission,
  record: ModelRecord,
  bytes: number,
): Promise<boolean> {
  const giveUp = new AbortController();
  const admitted = await Promise.race([
    admission.admit(record, bytes, Infinity, giveUp.signal).then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => setImmediate(() => resolve(false))),
  ]);
  giveUp.abort();
  return admitted;
}
