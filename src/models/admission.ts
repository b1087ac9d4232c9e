import { AgentError, ErrorCode } from '../errors';
import type { Logger } from '../observability';
import { waitForChange, type Clock } from './clock';
import type { EvictionPolicy } from './eviction';
import type { GpuLedger } from './gpu-ledger';
import type { ModelRecord } from './model-record';

const MiB = 1024 * 1024;
const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;

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
    private readonly options: AdmissionOptions,
  ) {}

  /** Reserves `need` bytes for `record`, making room as needed, by `deadline` (clock time). */
  async admit(record: ModelRecord, need: number, deadline: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (this.decide(record, need)) return;
      const left = deadline - this.clock.now();
      if (left <= 0) throw this.noCapacity(record, need, 'by the cold-load deadline');
      await waitForChange(this.clock, this.ledger.next(), left, signal);
    }
  }

  /** One decision: true when reserved; false to wait for a change; throws 507 when waiting cannot help. */
  private decide(record: ModelRecord, need: number): boolean {
    const { ledger, policy } = this;
    const usable = ledger.usable();
    if (need > usable) {
      throw new AgentError(
        ErrorCode.InsufficientCapacity,
        `model '${record.name}' needs ${mib(need)} of GPU memory, more than the ${mib(usable)} a GPU here has for models (headroom ${mib(ledger.options.headroomBytes)} kept free)`,
      );
    }
    if (Number.isFinite(usable)) policy.setCapacity?.(usable);
    const free = ledger.free();
    const { maxResident } = this.options;
    const countExcess = maxResident > 0 ? ledger.count() + 1 - maxResident : 0;
    if (free >= need && countExcess <= 0) {
      ledger.reserve(record.name, need);
      return true;
    }
    // Memory already on its way out (unloads in flight, released memory still showing) counts before
    // more models are sent away.
    const deficit = need - free - ledger.bytes('freeing') - ledger.lagging();
    const now = this.clock.now();
    const evictable = (name: string) => this.seam.evictable(name, record);
    const victims = new Set<string>();
    if (deficit > 0) for (const v of policy.chooseVictims(deficit, now, evictable)) victims.add(v);
    for (let i = 0; i < countExcess; i++) {
      const [v] = policy.chooseVictims(1, now, (n) => evictable(n) && !victims.has(n));
      if (v === undefined) break;
      victims.add(v);
    }
    if (victims.size > 0) {
      this.logger.info('evicting to make room', { model: record.name, need, free, victims: [...victims] });
      for (const v of victims) this.seam.evict(v);
      record.victims.push(...victims);
      return false;
    }
    if (deficit <= 0 && countExcess <= 0) return false;
    // Nothing to evict now: wait only if something in flight can still make room.
    const pinned = this.seam.pinned(record);
    if (
      ledger.bytes('freeing') > 0 ||
      ledger.bytes('reserved') > 0 ||
      ledger.lagging() > 0 ||
      pinned.count > 0
    )
      return false;
    throw this.noCapacity(record, need, 'and nothing more can be evicted');
  }

  private noCapacity(record: ModelRecord, need: number, when: string): AgentError {
    const { ledger } = this;
    const pinned = this.seam.pinned(record);
    return new AgentError(
      ErrorCode.InsufficientCapacity,
      `not enough GPU memory for model '${record.name}' ${when}: it needs ${mib(need)}, ${mib(Math.max(0, ledger.free()))} are free ` +
        `(${mib(ledger.bytes('resident'))} resident, ${mib(ledger.bytes('reserved'))} reserved by loads in flight, ` +
        `${mib(ledger.bytes('freeing'))} being unloaded, ${mib(ledger.unaccounted())} used outside the models, ` +
        `${mib(ledger.options.headroomBytes)} headroom); ${pinned.count} resident model(s) holding ${mib(pinned.bytes)} are pinned by requests in flight`,
    );
  }
}
