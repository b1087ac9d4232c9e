import { ChangeSignal } from './change-signal';
import type { GpuSample } from './gpu-probe';

/** What a model's GPU bytes are doing: held for a load in flight, resident, or on their way out. */
export type ChargeState = 'reserved' | 'resident' | 'freeing';

interface Charge {
  bytes: number;
  state: ChargeState;
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
 * Accounting-first GPU capacity. The plan is the ledger: every model's bytes (its learned footprint, else
 * an estimate) are charged while it loads (`reserved`), while it is resident, and while it unloads
 * (`freeing`, until Triton's index says the unload finished). Decisions read the ledger only, so no request
 * waits for a metrics sample. Triton's metrics, read in the background, *correct* the plan: used memory no
 * charge explains becomes `unaccounted` and is subtracted from what is free.
 *
 * Models are charged on every device (Triton's default placement gives each model an instance on every
 * GPU), so the free figure is the smallest over devices.
 */
export class GpuLedger {
  private readonly charges = new Map<string, Charge>();
  private accounts: DeviceAccount[] = [];
  private lastSample: GpuSample | undefined;
  /** Bytes released, and when: a sample taken soon after may still show them. */
  private released: { bytes: number; at: number }[] = [];
  /** Loads and unloads in flight, and a counter of their starts and ends (for footprint measurement). */
  private moving = 0;
  private moves = 0;
  private lastMoveAt = -Infinity;
  private readonly changed = new ChangeSignal();
  private readonly sampled = new ChangeSignal();

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

  /** Bytes models may use on the smallest device (total less headroom). */
  usable(): number {
    if (!this.known) return Infinity;
    return Math.max(0, Math.min(...this.accounts.map((a) => a.totalBytes)) - this.options.headroomBytes);
  }

  private sum(state?: ChargeState): number {
    let total = 0;
    for (const c of this.charges.values()) if (state === undefined || c.state === state) total += c.bytes;
    return total;
  }

  /** Bytes charged in each state. */
  bytes(state: ChargeState): number {
    return this.sum(state);
  }

  /** Bytes a new load may take now: usable less every charge and the device's unaccounted use. */
  free(): number {
    if (!this.known) return Infinity;
    const charged = this.sum();
    let free = Infinity;
    for (const a of this.accounts)
      free = Math.min(free, a.totalBytes - this.options.headroomBytes - charged - a.unaccountedBytes);
    return free;
  }

  /** The largest unaccounted figure over devices (for messages). */
  unaccounted(): number {
    return Math.max(0, ...this.accounts.map((a) => a.unaccountedBytes));
  }

  /** When memory was last released (-Infinity: never). */
  lastReleaseAt(): number {
    return this.released.length > 0 ? this.released[this.released.length - 1].at : -Infinity;
  }

  /** Bytes released within the last `ms`. */
  releasedWithin(ms: number): number {
    const since = this.now() - ms;
    let total = 0;
    for (const r of this.released) if (r.at >= since) total += r.bytes;
    return total;
  }

  /**
   * Used memory that is probably on its way back: unexplained use up to what unloads released within the
   * release wait. Admission waits for it rather than evicting more.
   */
  lagging(): number {
    return Math.min(this.unaccounted(), this.releasedWithin(this.options.releaseWaitMs));
  }

  /** Models charged as reserved or resident (those leaving do not count against a resident limit). */
  count(): number {
    let n = 0;
    for (const c of this.charges.values()) if (c.state !== 'freeing') n++;
    return n;
  }

  stateOf(model: string): ChargeState | undefined {
    return this.charges.get(model)?.state;
  }

  chargeOf(model: string): number {
    return this.charges.get(model)?.bytes ?? 0;
  }

  reserve(model: string, bytes: number): void {
    this.charges.set(model, { bytes, state: 'reserved' });
  }

  /** A load finished: its reservation becomes a resident charge. */
  settle(model: string): void {
    const c = this.charges.get(model);
    if (c) c.state = 'resident';
    this.changed.notify();
  }

  /** A better figure for a model's bytes (a learned footprint). */
  update(model: string, bytes: number): void {
    const c = this.charges.get(model);
    if (!c || c.bytes === bytes) return;
    c.bytes = bytes;
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

  /** The bytes are gone from the GPU (unload finished, load failed, Triton lost the model). */
  release(model: string): void {
    const c = this.charges.get(model);
    if (!c) return;
    this.charges.delete(model);
    this.released.push({ bytes: c.bytes, at: this.now() });
    this.changed.notify();
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
   * A new sample: learn the devices, and what no charge explains. Memory released within a metrics
   * interval may still show, so it counts as explained; a load still in flight may not show yet, which
   * can only make the unaccounted figure smaller, and the out-of-memory backstop covers that.
   */
  observe(sample: GpuSample): void {
    this.lastSample = sample;
    const horizon = sample.at - this.options.metricsIntervalMs;
    this.released = this.released.filter(
      (r) => r.at >= sample.at - Math.max(this.options.metricsIntervalMs, this.options.releaseWaitMs),
    );
    let recent = 0;
    for (const r of this.released) if (r.at >= horizon) recent += r.bytes;
    const charged = this.sum();
    const before = this.free();
    this.accounts = sample.devices.map((d) => ({
      uuid: d.uuid,
      totalBytes: d.totalBytes,
      unaccountedBytes: Math.max(0, d.usedBytes - charged - recent),
    }));
    if (this.free() !== before) this.changed.notify();
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
   * A token for measuring a load by the change in used memory: valid (>= 0) only when the last sample
   * postdates every earlier move by a metrics interval and nothing is moving now.
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
