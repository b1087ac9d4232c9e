import { AgentError, ErrorCode } from '../errors';
import type { Logger } from '../observability';
import { waitForChange, type Clock } from '../time';
import type { EvictionPolicy } from './eviction';
import type { Devices, GpuLedger } from './gpu-ledger';
import type { ModelRecord } from './model-record';

const MiB = 1024 * 1024;
/** Bytes for a message: MiB, or KiB and bytes below one MiB (a tiny model is not '0 MiB'). */
const mib = (b: number) =>
  b >= MiB || b === 0
    ? `${(b / MiB).toFixed(0)} MiB`
    : b >= 1024
      ? `${(b / 1024).toFixed(0)} KiB`
      : `${Math.round(b)} bytes`;

/** What admission needs to know of the other models, and how it sends one away. */
export interface AdmissionSeam {
  /** Resident models a new load may evict (ready, unpinned, not `exclude`). */
  evictable(name: string, exclude: ModelRecord): boolean;
  /** Starts taking a model off the GPU; its charge turns `freeing` before this returns. */
  evict(name: string): void;
  /** Resident models pinned by requests in flight (they cannot go now, but will be evictable later). */
  pinned(exclude: ModelRecord): { count: number; bytes: number };
}

export interface AdmissionOptions {
  /** Most models resident at once (0: no limit but memory). */
  maxResident: number;
}

/**
 * Decides whether a load may start: it reserves the model's bytes when they are free in the ledger, else
 * evicts victims the policy picks (their bytes count as on their way out at once), else waits — outside
 * any lock — for memory that unloads, failing loads or unpinned requests will release. Every decision is
 * synchronous (one JavaScript turn), so two admissions can never both count the same free bytes. 507 only
 * when the model cannot fit even then: larger than the GPU, or nothing in flight can make room by the
 * deadline.
 */
export class Admission {
  constructor(
    private readonly ledger: GpuLedger,
    private readonly policy: EvictionPolicy,
    private readonly seam: AdmissionSeam,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly settings: AdmissionOptions,
  ) {}

  /**
   * Reserves `need` bytes (on each device the model goes to) for `record`, making room as needed, by
   * `deadline` (clock time). Resolves with the devices reserved on.
   */
  async admit(record: ModelRecord, need: number, deadline: number, signal: AbortSignal): Promise<Devices> {
    // Used memory no model explains may be a sample's staleness rather than another process: before a 507
    // blames it, a sample that cannot predate this admission must still show it.
    const startedAt = this.clock.now();
    for (;;) {
      // Triton's figures can be a metrics interval older than the moment they are read.
      const sampleAt = this.ledger.sample?.at ?? -Infinity;
      const fresh = sampleAt >= startedAt + this.ledger.options.metricsIntervalMs;
      const devices = this.decide(record, need, !fresh);
      if (devices !== undefined) return devices;
      const left = deadline - this.clock.now();
      if (left <= 0) throw this.noCapacity(record, need, 'by the cold-load deadline');
      // Wake at the next change, or when memory released recently counts as free again.
      const change = Promise.race([this.ledger.next(), this.ledger.nextSample()]);
      await waitForChange(this.clock, change, Math.min(left, this.ledger.untilSettled()), signal);
    }
  }

  /** The device sets a model may go to: every GPU, the ones its artifact names, or any single one. */
  private options(record: ModelRecord): Devices[] {
    const p = record.placement;
    // GPUs that cannot be told apart are one pool: every model on every GPU, wherever its config said.
    if (p.kind === 'all' || !this.ledger.known || (!this.ledger.identified && p.kind !== 'cpu'))
      return ['all'];
    if (p.kind === 'fixed') return [p.devices];
    if (p.kind === 'cpu') return [[]];
    return this.ledger.devices.map((_, d) => [d]);
  }

  /**
   * One decision: the devices reserved on; undefined to wait for a change; throws 507 when waiting cannot
   * help.
   */
  private decide(
    record: ModelRecord,
    need: number,
    unaccountedMayChange = false,
    again = false,
  ): Devices | undefined {
    const { ledger, policy } = this;
    const options = this.options(record);
    const indices = (o: Devices) => ledger.indices(o);
    const usableFor = (o: Devices) => Math.min(...indices(o).map((d) => ledger.usable(d)));
    if (options.every((o) => need > usableFor(o))) {
      const usable = Math.max(...options.map(usableFor));
      throw new AgentError(
        ErrorCode.InsufficientCapacity,
        usable <= 0
          ? `model '${record.name}' cannot be loaded: all of this GPU's memory is kept free as headroom (AGENT_GPU_HEADROOM_BYTES = ${mib(ledger.options.headroomBytes)}); lower it`
          : `model '${record.name}' needs ${mib(need)} of GPU memory, more than the ${mib(usable)} a GPU here has for models (the GPU's own use and the headroom, ${mib(ledger.options.headroomBytes)}, left out)`,
      );
    }
    if (ledger.known) policy.setCapacity?.(ledger.usable() * Math.max(1, ledger.devices.length));
    const { maxResident } = this.settings;
    const countExcess = maxResident > 0 ? ledger.count() + 1 - maxResident : 0;
    const fits = options.filter(
      (o) => need <= usableFor(o) && indices(o).every((d) => ledger.freeOn(d) >= need),
    );
    if (fits.length > 0 && countExcess <= 0) {
      // Best fit: the option that leaves the least free, keeping large holes for large models.
      const left = (o: Devices) => Math.min(...indices(o).map((d) => ledger.freeOn(d) - need), Infinity);
      const best = fits.reduce((a, b) => (left(b) < left(a) ? b : a));
      ledger.reserve(record.name, need, best);
      return best;
    }
    // Memory already on its way out (unloads in flight, released memory still showing) counts before
    // more models are sent away.
    const deficits = (o: Devices) =>
      new Map(
        indices(o).map((d) => [
          d,
          need - ledger.freeOn(d) - ledger.charged(d, 'freeing') - ledger.lagging(d) - ledger.settling(d),
        ]),
      );
    const waitSuffices = options.some(
      (o) => need <= usableFor(o) && [...deficits(o).values()].every((x) => x <= 0),
    );
    if (waitSuffices && countExcess <= 0) return undefined;
    const now = this.clock.now();
    const evictable = (name: string) => this.seam.evictable(name, record);
    // The cheapest set of victims that covers some option's deficit on every device it needs.
    let plan: string[] | undefined;
    let planBytes = Infinity;
    for (const o of options) {
      if (need > usableFor(o)) continue;
      const left = deficits(o);
      if ([...left.values()].every((x) => x <= 0)) continue;
      const chosen = this.victimsFor(left, evictable);
      const bytes = chosen?.reduce((a, v) => a + ledger.chargeOf(v), 0) ?? Infinity;
      if (chosen && bytes < planBytes) {
        plan = chosen;
        planBytes = bytes;
      }
    }
    const victims = new Set(plan ?? []);
    for (let i = 0; i < countExcess; i++) {
      const [v] = policy.chooseVictims(1, now, (n) => evictable(n) && !victims.has(n));
      if (v === undefined) break;
      victims.add(v);
    }
    if (victims.size > 0) {
      this.logger.info('evicting to make room', { model: record.name, need, victims: [...victims] });
      for (const v of victims) this.seam.evict(v);
      record.victims.push(...victims);
      return undefined;
    }
    // Nothing to evict now: wait only if something in flight can still make room.
    const pinned = this.seam.pinned(record);
    if (
      ledger.bytes('freeing') > 0 ||
      ledger.bytes('reserved') > 0 ||
      ledger.holding() ||
      ledger.devices.some((_, d) => ledger.lagging(d) > 0 || ledger.settling(d) > 0) ||
      pinned.count > 0 ||
      (unaccountedMayChange && ledger.unaccounted() > 0)
    )
      return undefined;
    // Released memory counts as free once its lag has passed, which may have happened during this turn:
    // decide once more rather than refuse a load that now fits.
    if (!again && options.some((o) => indices(o).every((d) => ledger.freeOn(d) >= need)))
      return this.decide(record, need, unaccountedMayChange, true);
    throw this.noCapacity(record, need, 'and nothing more can be evicted');
  }

  /**
   * The policy's victims, in its order, that cover `left` (bytes still missing per device); undefined when
   * the evictable models cannot.
   */
  private victimsFor(left: Map<number, number>, evictable: (name: string) => boolean): string[] | undefined {
    const { ledger } = this;
    const onDevices = (name: string) =>
      evictable(name) && [...left.keys()].some((d) => ledger.holds(name, d));
    const chosen: string[] = [];
    for (const v of this.policy.chooseVictims(Number.MAX_SAFE_INTEGER, this.clock.now(), onDevices)) {
      if ([...left.values()].every((x) => x <= 0)) break;
      if (![...left].some(([d, x]) => x > 0 && ledger.holds(v, d))) continue;
      chosen.push(v);
      for (const [d, x] of left) if (ledger.holds(v, d)) left.set(d, x - ledger.chargeOf(v));
    }
    return [...left.values()].every((x) => x <= 0) ? chosen : undefined;
  }

  /**
   * A dry run for a resident model that wants `need` more bytes on device `d` (an instance on one more
   * GPU): the victims the policy would send away for it (none when the room is free), or undefined when
   * they cannot make it. Nothing changes.
   */
  roomOn(record: ModelRecord, d: number, need: number): string[] | undefined {
    const { ledger } = this;
    if (need > ledger.usable(d)) return undefined;
    // Memory already on its way out was freed for loads that wait for it: a move takes none of it.
    const missing = need - ledger.freeOn(d);
    if (missing <= 0) return [];
    return this.victimsFor(new Map([[d, missing]]), (name) => this.seam.evictable(name, record));
  }

  /**
   * `record` ran out of memory serving a request and its charge was raised to what it needs: sends away
   * the policy's idle models sharing a GPU with it until nothing there is over-committed (at least one, as
   * the charge may still be short). Returns the names sent away (none when none could go).
   */
  evictBeside(record: ModelRecord): string[] {
    const { ledger } = this;
    const devices = ledger.indices(ledger.devicesOf(record.name) ?? 'all');
    const missing = new Map(devices.map((d) => [d, Math.max(0, -ledger.freeOn(d))]));
    const candidates = this.policy.chooseVictims(
      Number.MAX_SAFE_INTEGER,
      this.clock.now(),
      (n) => this.seam.evictable(n, record) && devices.some((d) => ledger.holds(n, d)),
    );
    const going: string[] = [];
    for (const v of candidates) {
      if (going.length > 0 && [...missing.values()].every((x) => x <= 0)) break;
      going.push(v);
      for (const d of devices)
        if (ledger.holds(v, d)) missing.set(d, (missing.get(d) ?? 0) - ledger.chargeOf(v));
    }
    for (const v of going) this.seam.evict(v);
    return going;
  }

  /** Sends away those of `victims` that are still evictable (a plan of `roomOn`, carried out). */
  evictFor(record: ModelRecord, victims: readonly string[]): void {
    const going = victims.filter((v) => this.seam.evictable(v, record));
    if (going.length === 0) return;
    this.logger.info('evicting to place a busy model on one more GPU', {
      model: record.name,
      victims: going,
    });
    for (const v of going) this.seam.evict(v);
  }

  /**
   * The 507: what the model needs, and what the ledger and the last sample said of the device where it
   * would have fit best, so an operator can tell a full GPU from a wrong figure.
   */
  private noCapacity(record: ModelRecord, need: number, when: string): AgentError {
    const { ledger } = this;
    const pinned = this.seam.pinned(record);
    const candidates = this.options(record).flatMap((o) => ledger.indices(o));
    const d = candidates.reduce((a, b) => (ledger.freeOn(b) > ledger.freeOn(a) ? b : a), candidates[0] ?? 0);
    const account = ledger.devices[d];
    const sample = ledger.sample;
    const reading = sample?.devices.find((x) => x.uuid === account?.uuid);
    const gpu = ledger.devices.length > 1 ? ` on GPU ${d}` : '';
    const sampled =
      sample && reading
        ? `; the last sample (${Math.max(0, this.clock.now() - sample.at)} ms old) said ${mib(reading.usedBytes)} of ${mib(reading.totalBytes)} used`
        : '; no GPU sample yet';
    return new AgentError(
      ErrorCode.InsufficientCapacity,
      `not enough GPU memory for model '${record.name}' ${when}: it needs ${mib(need)} and ${mib(Math.max(0, ledger.freeOn(d)))} are free${gpu}. ` +
        `The ledger: ${mib(ledger.charged(d, 'resident'))} resident, ${mib(ledger.charged(d, 'reserved'))} reserved by loads in flight, ` +
        `${mib(ledger.charged(d, 'freeing'))} being unloaded, ${mib(account?.baseBytes ?? 0)} the GPU uses itself (CUDA context, memory pool, other processes), ` +
        `${mib(account?.unaccountedBytes ?? 0)} used and not yet explained, ${mib(ledger.options.headroomBytes)} headroom${sampled}; ` +
        `${pinned.count} resident model(s) holding ${mib(pinned.bytes)} are pinned by requests in flight`,
    );
  }
}
