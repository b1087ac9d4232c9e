import { ChangeSignal } from './change-signal';
import type { DeviceMemory, GpuSample } from './gpu-probe';

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
  /** When its memory last changed in full (load settled, moved): a sample shows that a while later. */
  since: number;
  /** A reservation whose load Triton has been asked for (before that it holds nothing on the GPU). */
  loading?: boolean;
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
  /** How finely the GPU figures are reported (DCGM: whole MiB). */
  readingStepBytes?: number;
}

/** One device as the ledger sees it. */
export interface DeviceAccount {
  uuid: string;
  totalBytes: number;
  /** What the device uses with no model (CUDA context, Triton's memory pool, other processes), as learned. */
  baseBytes: number;
  /** Used bytes neither the base nor any model accounts for (allocator caches, release lag), last sample. */
  unaccountedBytes: number;
}

/**
 * One device's reading as an equation for the footprint estimator: used = base + Σ the settled models'
 * footprints + what is in flight. What is in flight (a load part way, an unload, memory released or loaded
 * too recently for the reading to surely show it, a move's second copy, a failed load's leftovers) is not
 * known exactly: it counts at half its bytes, give or take (a uniform spread), so a reading taken during
 * churn still teaches, only less firmly.
 */
export interface DeviceReading {
  index: number;
  /** When it was read (the agent's clock). */
  at: number;
  uuid: string;
  usedBytes: number;
  /** Models resident on it whose memory has settled (the unknowns of the equation). */
  models: string[];
  /** What is in flight there, at its expected value. */
  offsetBytes: number;
  /** The variance of that, bytes². */
  offsetVariance: number;
  /**
   * Bytes that may show there beyond what is expected: what is in flight at its most rather than its
   * expected value, and memory released longer ago than the release lag learned so far but within the
   * release wait (the lag may be longer than seen yet). A reading above the estimate by up to this much is
   * explained without any footprint being wrong.
   */
  slackBytes: number;
  /** What is in flight, named: readings taken while it stays the same teach once, not at every sample. */
  inFlight: string;
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
  private identifiedValue = true;
  /** Per device, what was in flight at its last reading that taught something. */
  private readonly lastInFlight = new Map<string, string>();
  /** Each device's last reading that was not a failed (0 of 0) one. */
  private readonly lastGood = new Map<string, DeviceMemory>();
  /** Reservations of failed loads, kept until a sample shows whether their memory is still used. */
  private held: { model: string; bytes: number; devices: Devices; until: number }[] = [];
  /** Bytes released, where, and when: a sample taken soon after may still show them. */
  private released: { bytes: number; devices: Devices; at: number }[] = [];
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

  /**
   * False when several GPUs were seen but not which CUDA ordinal each is (no nvidia-smi): they are then
   * one pool, every model on every GPU, since no device index the agent wrote would mean what it thinks.
   */
  get identified(): boolean {
    return this.identifiedValue;
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

  /** What device `d` uses with no model (learned by the footprint estimator). */
  setBase(d: number, bytes: number): void {
    const a = this.accounts[d];
    if (!a || a.baseBytes === bytes) return;
    a.baseBytes = bytes;
    this.changed.notify();
  }

  /** Models resident on device `d` (charges in flight are not). */
  residentOn(d: number): string[] {
    const out: string[] = [];
    for (const [name, c] of this.charges)
      if (c.state === 'resident' && !c.transient && GpuLedger.on(c.devices, d)) out.push(name);
    return out;
  }

  /**
   * Device `d`'s reading taken at `at` as an equation: the resident models whose memory settled a metrics
   * interval before are its unknowns; everything else there is in flight (see DeviceReading). A load or an
   * unload holds about all of its memory while it runs (weights are allocated as they load, freed when the
   * model goes), give or take half; a load that settled within the staleness window shows (it held its
   * memory through the load), give or take a quarter; memory released within it shows if Triton read the
   * device before the release, the likelier the more recent the release.
   * `inFlight` names the in-flight set, so the same situation is learned from once, not at every sample.
   */
  reading(d: number, at: number, usedBytes: number, uuid: string): DeviceReading {
    const recent = at - Math.max(this.options.metricsIntervalMs, this.releaseLagMs);
    const models: string[] = [];
    const inFlight: string[] = [];
    let offset = 0;
    let variance = 0;
    // What the in-flight memory could be at most above its expected value: a reading above the estimate
    // by no more than that teaches nothing (a guess of how far a load has got is no evidence).
    let above = 0;
    const uncertain = (what: string, expected: number, sd: number, most: number) => {
      inFlight.push(what);
      offset += expected;
      variance += sd * sd;
      above += Math.max(0, most - expected);
    };
    for (const [name, c] of this.charges) {
      if (!GpuLedger.on(c.devices, d)) continue;
      if (c.state === 'resident' && !c.transient && c.since <= recent) models.push(name);
      // Loaded just now: it held its memory through its load, so the reading almost surely shows it.
      else if (c.state === 'resident' && !c.transient)
        uncertain(`settled:${name}`, c.bytes, c.bytes / 4, c.bytes);
      // Admitted, not yet sent to Triton (staging, waiting): nothing on the GPU yet.
      else if (c.state === 'reserved' && !c.transient && !c.loading) continue;
      // Loading: weights arrive as they load, somewhere between none and all of it.
      else if (c.state === 'reserved') uncertain(`loading:${name}`, c.bytes / 2, c.bytes / 2, c.bytes);
      // Unloading, or a move's second copy: held until it goes.
      else uncertain(`${c.state}:${name}`, c.bytes, c.bytes / 4, c.bytes);
    }
    for (const h of this.held)
      if (GpuLedger.on(h.devices, d)) uncertain(`held:${h.model}`, h.bytes / 2, h.bytes / 2, h.bytes);
    // Released this recently: the reading shows it only if Triton read the device before the release, the
    // likelier the more recent the release.
    const window = at - recent;
    for (const r of this.released)
      if (r.at >= recent && GpuLedger.on(r.devices, d)) {
        const shows = Math.min(1, Math.max(0, 1 - (at - r.at) / window));
        uncertain(
          `released:${r.at}`,
          r.bytes * shows,
          r.bytes * Math.max(0.1, Math.sqrt(shows * (1 - shows))),
          r.bytes,
        );
      }
    let lateBytes = 0;
    const wait = at - this.options.releaseWaitMs;
    for (const r of this.released)
      if (r.at < recent && r.at >= wait && GpuLedger.on(r.devices, d)) lateBytes += r.bytes;
    return {
      index: d,
      at,
      uuid,
      usedBytes,
      models,
      slackBytes: lateBytes + above,
      offsetBytes: offset,
      offsetVariance: variance,
      inFlight: inFlight.sort().join(','),
    };
  }

  /** Device indices a charge's `devices` stands for. */
  indices(devices: Devices): number[] {
    if (devices !== 'all') return [...devices];
    return this.accounts.map((_, i) => i);
  }

  /**
   * Bytes models may use on device `d` (total less what the device uses itself and the headroom); the
   * smallest device when `d` is omitted.
   */
  usable(d?: number): number {
    if (!this.known) return Infinity;
    const room = (a: DeviceAccount | undefined) => (a ? a.totalBytes - a.baseBytes : 0);
    const rooms = d === undefined ? this.accounts.map(room) : [room(this.accounts[d])];
    return Math.max(0, Math.min(...rooms) - this.options.headroomBytes);
  }

  /** Bytes charged on device `d` (in one state, or all, memory held after failed loads included). */
  charged(d: number, state?: ChargeState): number {
    let total = 0;
    for (const c of this.charges.values())
      if ((state === undefined || c.state === state) && GpuLedger.on(c.devices, d)) total += c.bytes;
    if (state === undefined) for (const h of this.held) if (GpuLedger.on(h.devices, d)) total += h.bytes;
    return total;
  }

  /**
   * A load Triton answered with a failure may have left memory behind that no unload will give back: a
   * PyTorch instance that failed keeps its blocks in PyTorch's cache (its destructor, which empties the
   * cache, never runs), a failed ONNX Runtime load has been seen to leak. Its reservation stays charged, as
   * held memory no model owns, until a sample taken a metrics interval later shows the devices as they
   * are; from then on what is still used counts as unaccounted, and what is gone is free. A later load of
   * the same model takes the hold over (PyTorch reuses its own cache).
   */
  holdAfterFailure(model: string): void {
    const c = this.charges.get(model);
    if (!c) return;
    this.charges.delete(model);
    this.held.push({
      model,
      bytes: c.bytes,
      devices: c.devices,
      until: this.now() + this.options.metricsIntervalMs,
    });
    this.changed.notify();
  }

  /** True while memory held after a failed load waits for a sample to tell whether it is still used. */
  holding(): boolean {
    return this.held.length > 0;
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
      a.totalBytes -
      this.options.headroomBytes -
      a.baseBytes -
      this.charged(d) -
      a.unaccountedBytes -
      this.settling(d)
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
    if (this.held.some((h) => h.model === model)) this.held = this.held.filter((h) => h.model !== model);
    this.charges.set(model, {
      bytes,
      devices,
      state: 'reserved',
      transient: options.transient ?? false,
      since: this.now(),
    });
  }

  /** Triton has been asked to load the model: its reservation may now be taking memory. */
  loading(model: string): void {
    const c = this.charges.get(model);
    if (c) c.loading = true;
  }

  /** A load finished: its reservation becomes a resident charge. */
  settle(model: string): void {
    const c = this.charges.get(model);
    if (c) {
      c.state = 'resident';
      c.since = this.now();
    }
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
    c.since = this.now();
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
    this.held = [];
    for (const m of [...this.charges.keys()]) this.release(m);
  }

  // --- corrections from Triton's metrics ------------------------------------------------------------

  /**
   * A new sample: learn the devices, and what no charge explains on each. Memory released within a
   * metrics interval may still show, so it counts as explained; a load still in flight may not show yet,
   * which can only make the unaccounted figure smaller, and the out-of-memory backstop covers that.
   */
  observe(sample: GpuSample, learn?: (readings: readonly DeviceReading[]) => void): void {
    // A device DCGM failed to read reports 0 used of 0 total: it keeps its last good reading (and
    // account). Until every device has been read well once, there is no sample to go by.
    for (const d of sample.devices) if (d.totalBytes > 0) this.lastGood.set(d.uuid, d);
    if (sample.devices.some((d) => d.totalBytes <= 0 && !this.lastGood.has(d.uuid))) return;
    const good = sample.devices.filter((d) => d.totalBytes > 0);
    const previous = this.accounts;
    const lastByUuid = new Map(previous.map((a) => [a.uuid, a]));
    this.lastSample = { at: sample.at, devices: good };
    // Memory held after a failed load is in this sample's figures from here on, or gone.
    if (this.held.length > 0) this.held = this.held.filter((h) => h.until > sample.at);
    const ordered = GpuLedger.byOrdinal(sample.devices);
    this.identifiedValue = ordered !== undefined;
    const devices = ordered ?? sample.devices;
    const horizon = sample.at - this.options.metricsIntervalMs;
    const keep = sample.at - Math.max(this.options.metricsIntervalMs, this.options.releaseWaitMs);
    this.released = this.released.filter((r) => r.at >= keep);
    const before = this.accounts.map((_, d) => this.freeOn(d));
    this.accounts = devices.map((dev) => {
      const last = lastByUuid.get(dev.uuid);
      if (dev.totalBytes <= 0 && last) return { ...last };
      // Never read well before this failed read: its last good reading stands in.
      const reading = dev.totalBytes > 0 ? dev : (this.lastGood.get(dev.uuid) as DeviceMemory);
      return {
        uuid: dev.uuid,
        totalBytes: reading.totalBytes,
        unaccountedBytes: 0,
        baseBytes: last?.baseBytes ?? 0,
      };
    });
    // Devices whose resident set has settled long enough for this reading to show it: each an equation.
    if (learn) {
      const readings: DeviceReading[] = [];
      devices.forEach((dev, d) => {
        if (dev.totalBytes <= 0) return;
        const r = this.reading(d, sample.at, dev.usedBytes, dev.uuid);
        // The same loads and unloads still in flight as at the last reading: nothing new to learn.
        if (r.inFlight !== '' && this.lastInFlight.get(dev.uuid) === r.inFlight) return;
        this.lastInFlight.set(dev.uuid, r.inFlight);
        readings.push(r);
      });
      learn(readings);
    }
    this.accounts.forEach((a, d) => {
      const dev = devices[d].totalBytes > 0 ? devices[d] : this.lastGood.get(devices[d].uuid);
      if (!dev || (devices[d].totalBytes <= 0 && lastByUuid.has(dev.uuid))) return;
      let recent = 0;
      for (const r of this.released) if (r.at >= horizon && GpuLedger.on(r.devices, d)) recent += r.bytes;
      a.unaccountedBytes = Math.max(0, dev.usedBytes - a.baseBytes - this.charged(d) - recent);
    });
    const moved =
      previous.length !== this.accounts.length || this.accounts.some((_, d) => this.freeOn(d) !== before[d]);
    if (moved) this.changed.notify();
    this.sampled.notify();
  }

  /**
   * The devices in CUDA ordinal order when each carries its ordinal and together they are 0..n-1 (one
   * device is always ordinal 0); undefined when the sample cannot say which device is which.
   */
  private static byOrdinal(devices: readonly DeviceMemory[]): DeviceMemory[] | undefined {
    if (devices.length <= 1) return [...devices];
    const sorted = [...devices].sort((a, b) => (a.ordinal ?? -1) - (b.ordinal ?? -1));
    return sorted.every((d, i) => d.ordinal === i) ? sorted : undefined;
  }
}
