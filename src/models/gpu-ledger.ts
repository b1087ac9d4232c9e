import { ChangeSignal } from './change-signal';
import type { GpuSample } from './gpu-probe';

/** What a model's GPU bytes are doing: held for a load in flight, resident, or on their way out. */
export type ChargeState = 'reserved' | 'resident' | 'freeing';

/** Where a model's instances live: every GPU (Triton's default placement), some GPUs, or none (CPU). */
export type Devices = 'all' | readonly number[];

interface Charge {
  /** Bytes on each device the model occupies. */
  bytes: number;
  devices: Devices;
  state: ChargeState;
  /** Memory held for a while on a model's behalf (a reload's second copy): not a model of its own. */
  transient: boolean;
}

export interface LedgerOptions {
  /** GPU bytes always left free on each device for activations, workspaces and allocator caches. */
  headroomBytes: number;
  /** How stale Triton's metrics may be: memory released this recently may still show as used. */
  metricsIntervalMs: number;
  /**
   * How long memory an unload released may take to show as free (allocators hand it back late): used
   * memory no model explains, up to what was released this recently, is waited for, not evicted for.
   */
  releaseWaitMs: number;
}

/** One device as the ledger sees it. */
export interface DeviceAccount {
  uuid: string;
  totalBytes: number;
  /** Used bytes no model accounts for (other processes, allocator caches, release lag), from the last sample. */
  unaccountedBytes: number;
}

/**
 * Accounting-first GPU capacity, per device. The plan is the ledger: every model's bytes (its learned
 * footprint, else an estimate) are charged on each device it occupies while it loads (`reserved`), while
 * it is resident, and while it unloads (`freeing`, until Triton's index says the unload finished).
 * Decisions read the ledger only, so no request waits for a metrics sample. Triton's metrics, read in the
 * background, *correct* the plan: used memory no charge explains becomes a device's `unaccounted` bytes
 * and is subtracted from what is free there.
 */
export class GpuLedger {
  private readonly charges = new Map<string, Charge>();
  private accounts: DeviceAccount[] = [];
  private lastSample: GpuSample | undefined;
  /** Bytes released, where, and when: a sample taken soon after may still show them. */
  private released: { bytes: number; devices: Devices; at: number }[] = [];
  /** Loads and unloads in flight, and a counter of their starts and ends (for footprint measurement). */
  private moving = 0;
  private moves = 0;
  private lastMoveAt = -Infinity;
  private readonly changed = new ChangeSignal();
  private readonly sampled = new ChangeSignal();
  /** How long released memory has been seen to take before a load could use it (learned). */
  private releaseLagMs = 0;

  constructor(
    readonly options: LedgerOptions,
    private readonly now: () => number,
  ) {}

  /** True once a sample has told the ledger what devices exist. */
  get known(): boolean {
    return this.accounts.length > 0;
  }

  get devices(): readonly DeviceAccount[] {
    return this.accounts;
  }

  get sample(): GpuSample | undefined {
    return this.lastSample;
  }

  /** Settles at the next change that could let a waiting admission proceed. */
  next(): Promise<void> {
    return this.changed.next();
  }

  /** Settles when the next sample has been observed. */
  nextSample(): Promise<void> {
    return this.sampled.next();
  }

  /** Something outside the ledger changed (a request unpinned a model). */
  notify(): void {
    this.changed.notify();
  }

  private static on(devices: Devices, d: number): boolean {
    return devices === 'all' || devices.includes(d);
  }

  /** Device indices a charge's `devices` stands for. */
  indices(devices: Devices): number[] {
    if (devices !== 'all') return [...devices];
    return this.accounts.map((_, i) => i);
  }

  /** Bytes models may use on device `d` (total less headroom); the smallest device when `d` is omitted. */
  usable(d?: number): number {
    if (!this.known) return Infinity;
    const totals =
      d === undefined ? this.accounts.map((a) => a.totalBytes) : [this.accounts[d]?.totalBytes ?? 0];
    return Math.max(0, Math.min(...totals) - this.options.headroomBytes);
  }

  /** Bytes charged on device `d` (in one state, or all). */
  charged(d: number, state?: ChargeState): number {
    let total = 0;
    for (const c of this.charges.values())
      if ((state === undefined || c.state === state) && GpuLedger.on(c.devices, d)) total += c.bytes;
    return total;
  }

  /** Bytes charged in a state, on the device where that is most (for messages and single-GPU callers). */
  bytes(state: ChargeState): number {
    if (!this.known) {
      let total = 0;
      for (const c of this.charges.values()) if (c.state === state) total += c.bytes;
      return total;
    }
    return Math.max(0, ...this.accounts.map((_, d) => this.charged(d, state)));
  }

  /**
   * Bytes a new load may take now on device `d`: usable less every charge there, its unaccounted use, and
   * memory released too recently to be free yet (by the release lag learned so far).
   */
  freeOn(d: number): number {
    const a = this.accounts[d];
    if (!a) return -Infinity;
    return (
      a.totalBytes - this.options.headroomBytes - this.charged(d) - a.unaccountedBytes - this.settling(d)
    );
  }

  /** Bytes released on device `d` within the learned release lag: on their way back, not free yet. */
  settling(d: number): number {
    return this.releaseLagMs > 0 ? this.releasedWithin(this.releaseLagMs, d) : 0;
  }

  /** Milliseconds until some settling memory counts as free again (Infinity: none is settling). */
  untilSettled(): number {
    if (this.releaseLagMs <= 0) return Infinity;
    const since = this.now() - this.releaseLagMs;
    const first = this.released.find((r) => r.at >= since);
    return first ? first.at + this.releaseLagMs - this.now() : Infinity;
  }

  /**
   * A load succeeded `ms` after the last release, having been refused for lack of memory before: released
   * memory takes about that long to come back. Kept as the larger of it and a slowly decaying past figure,
   * at most the release wait.
   */
  learnReleaseLag(ms: number): void {
    this.releaseLagMs = Math.min(this.options.releaseWaitMs, Math.max(ms, this.releaseLagMs * 0.9));
  }

  /** The least free bytes over devices (what a model on every GPU may take). */
  free(): number {
    if (!this.known) return Infinity;
    return Math.min(...this.accounts.map((_, d) => this.freeOn(d)));
  }

  /** The largest unaccounted figure over devices (for messages). */
  unaccounted(): number {
    return Math.max(0, ...this.accounts.map((a) => a.unaccountedBytes));
  }

  /** Bytes released on device `d` within the last `ms`. */
  releasedWithin(ms: number, d?: number): number {
    const since = this.now() - ms;
    let total = 0;
    for (const r of this.released)
      if (r.at >= since && (d === undefined || GpuLedger.on(r.devices, d))) total += r.bytes;
    return total;
  }

  /** When memory was last released (-Infinity: never). */
  lastReleaseAt(): number {
    return this.released.length > 0 ? this.released[this.released.length - 1].at : -Infinity;
  }

  /**
   * Used memory on device `d` that is probably on its way back: unexplained use up to what unloads there
   * released within the release wait. Admission waits for it rather than evicting more.
   */
  lagging(d = 0): number {
    const a = this.accounts[d];
    if (!a) return 0;
    return Math.min(a.unaccountedBytes, this.releasedWithin(this.options.releaseWaitMs, d));
  }

  /** Models charged as reserved or resident (those leaving do not count against a resident limit). */
  count(): number {
    let n = 0;
    for (const c of this.charges.values()) if (c.state !== 'freeing' && !c.transient) n++;
    return n;
  }

  stateOf(model: string): ChargeState | undefined {
    return this.charges.get(model)?.state;
  }

  /** Bytes a model holds on each device it occupies. */
  chargeOf(model: string): number {
    return this.charges.get(model)?.bytes ?? 0;
  }

  devicesOf(model: string): Devices | undefined {
    return this.charges.get(model)?.devices;
  }

  /** True when `model` holds memory on device `d`. */
  holds(model: string, d: number): boolean {
    const c = this.charges.get(model);
    return c !== undefined && GpuLedger.on(c.devices, d);
  }

  reserve(
    model: string,
    bytes: number,
    devices: Devices = 'all',
    options: { transient?: boolean } = {},
  ): void {
    this.charges.set(model, { bytes, devices, state: 'reserved', transient: options.transient ?? false });
  }

  /** A load finished: its reservation becomes a resident charge. */
  settle(model: string): void {
    const c = this.charges.get(model);
    if (c) c.state = 'resident';
    this.changed.notify();
  }

  /** A better figure for a model's bytes per device (a learned footprint). */
  update(model: string, bytes: number): void {
    const c = this.charges.get(model);
    if (!c || c.bytes === bytes) return;
    c.bytes = bytes;
    this.changed.notify();
  }

  /** The model now occupies `devices` (it gained or gave back instances); bytes left behind are released. */
  move(model: string, devices: readonly number[]): void {
    const c = this.charges.get(model);
    if (!c || c.devices === 'all') return;
    const left = c.devices.filter((d) => !devices.includes(d));
    if (left.length > 0) this.remember({ bytes: c.bytes, devices: left, at: this.now() });
    c.devices = [...devices];
    this.changed.notify();
  }

  /** An unload started: the bytes stay charged until it finishes. */
  startFreeing(model: string): void {
    const c = this.charges.get(model);
    if (c) c.state = 'freeing';
  }

  /** An unload failed: the model is resident again. */
  stopFreeing(model: string): void {
    const c = this.charges.get(model);
    if (c?.state === 'freeing') c.state = 'resident';
    this.changed.notify();
  }

  /** The bytes are gone from the GPU (unload finished, Triton lost the model). */
  release(model: string): void {
    const c = this.charges.get(model);
    if (!c) return;
    this.charges.delete(model);
    this.remember({ bytes: c.bytes, devices: c.devices, at: this.now() });
    this.changed.notify();
  }

  /** Records a release, forgetting those too old to matter (bounded even when no sample comes). */
  private remember(r: { bytes: number; devices: Devices; at: number }): void {
    const keep = r.at - Math.max(this.options.metricsIntervalMs, this.options.releaseWaitMs);
    if (this.released.length > 0 && this.released[0].at < keep)
      this.released = this.released.filter((x) => x.at >= keep);
    this.released.push(r);
  }

  /** A reservation whose load never took memory (it failed): dropped without counting as released. */
  cancel(model: string): void {
    if (this.charges.delete(model)) this.changed.notify();
  }

  /** Triton restarted: nothing is on the GPU any more. */
  releaseAll(): void {
    for (const m of [...this.charges.keys()]) this.release(m);
  }

  // --- corrections from Triton's metrics ------------------------------------------------------------

  /**
   * A new sample: learn the devices, and what no charge explains on each. Memory released within a
   * metrics interval may still show, so it counts as explained; a load still in flight may not show yet,
   * which can only make the unaccounted figure smaller, and the out-of-memory backstop covers that.
   */
  observe(sample: GpuSample): void {
    this.lastSample = sample;
    const horizon = sample.at - this.options.metricsIntervalMs;
    const keep = sample.at - Math.max(this.options.metricsIntervalMs, this.options.releaseWaitMs);
    this.released = this.released.filter((r) => r.at >= keep);
    const before = this.accounts.map((_, d) => this.freeOn(d));
    const previous = this.accounts;
    this.accounts = sample.devices.map((dev) => ({
      uuid: dev.uuid,
      totalBytes: dev.totalBytes,
      unaccountedBytes: 0,
    }));
    this.accounts.forEach((a, d) => {
      let recent = 0;
      for (const r of this.released) if (r.at >= horizon && GpuLedger.on(r.devices, d)) recent += r.bytes;
      a.unaccountedBytes = Math.max(0, sample.devices[d].usedBytes - this.charged(d) - recent);
    });
    const moved =
      previous.length !== this.accounts.length || this.accounts.some((_, d) => this.freeOn(d) !== before[d]);
    if (moved) this.changed.notify();
    this.sampled.notify();
  }

  /** Marks a load or unload as started; returns a function marking it done. */
  beginMove(): () => void {
    this.moving++;
    this.moves++;
    this.lastMoveAt = this.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.moving--;
      this.moves++;
      this.lastMoveAt = this.now();
    };
  }

  /**
   * A token for measuring a load by the change in used memory: valid only when the last sample postdates
   * every earlier move by a metrics interval and nothing is moving now.
   */
  quietToken(): { token: number; before: GpuSample } | undefined {
    const before = this.lastSample;
    if (!before || this.moving > 0) return undefined;
    if (this.lastMoveAt > before.at - this.options.metricsIntervalMs) return undefined;
    return { token: this.moves, before };
  }

  /** True when exactly one load (two moves) happened since `token` and nothing moves now. */
  stillQuiet(token: number): boolean {
    return this.moves === token + 2 && this.moving === 0;
  }
}
