import type { EvictionPolicy } from './policy';

/**
 * A cache simulated alongside the real one: the same requests, the same capacity, its own policy. It only
 * keeps names and sizes, so it costs a map lookup per request and a victim choice per (simulated) miss.
 */
export class ShadowCache {
  private readonly resident = new Map<string, number>();
  private used = 0;
  /** Load cost of this shadow's misses, decayed with the adaptive policy's window. */
  score = 0;

  constructor(
    readonly policy: EvictionPolicy,
    public capacityBytes: number,
  ) {}

  access(model: string, sizeBytes: number, loadCostMs: number, now: number, decay: number): void {
    this.score *= decay;
    this.policy.onAccess(model, sizeBytes, loadCostMs, now);
    const had = this.resident.get(model);
    if (had !== undefined) {
      if (had === sizeBytes) return;
      this.used += sizeBytes - had;
      this.resident.set(model, sizeBytes);
    } else {
      this.score += loadCostMs;
      if (sizeBytes > this.capacityBytes) return; // could never be resident
      const need = this.used + sizeBytes - this.capacityBytes;
      if (need > 0) {
        for (const v of this.policy.chooseVictims(need, now, (m) => m !== model)) this.evict(v, now);
      }
      this.resident.set(model, sizeBytes);
      this.used += sizeBytes;
      this.policy.onAdmit(model, now);
    }
  }

  private evict(model: string, now: number): void {
    const s = this.resident.get(model);
    if (s === undefined) return;
    this.resident.delete(model);
    this.used -= s;
    this.policy.onEvict(model, now);
  }
}

export interface AdaptiveOptions {
  /** Capacity the shadows simulate (the GPU bytes models may use); updated with setCapacity. */
  capacityBytes: number;
  /** Each expert twice: one ranks the real residents, one runs in its shadow cache. */
  experts: () => EvictionPolicy[];
  /** Requests after which a shadow miss counts half as much when choosing the leader. */
  window: number;
}

/**
 * Several policies run side by side as cheap shadow caches over the same requests; the one whose shadow
 * lost the least load time over the recent window decides the real victims. Recency wins when the hot set
 * moves fast, frequency when popularity is stable, and the agent need not know which it faces.
 */
export class AdaptivePolicy implements EvictionPolicy {
  readonly name = 'adaptive';
  private readonly rankers: EvictionPolicy[];
  private readonly shadows: ShadowCache[];
  private readonly decay: number;
  private leader = 0;

  constructor(options: AdaptiveOptions) {
    this.rankers = options.experts();
    this.shadows = options.experts().map((p) => new ShadowCache(p, options.capacityBytes));
    this.decay = 2 ** (-1 / Math.max(1, options.window));
  }

  /** The expert in charge now (for logs and the simulator). */
  get leaderName(): string {
    return this.rankers[this.leader].name;
  }

  setCapacity(bytes: number): void {
    for (const s of this.shadows) s.capacityBytes = bytes;
  }

  onAccess(model: string, sizeBytes: number, loadCostMs: number, now: number): void {
    for (const r of this.rankers) r.onAccess(model, sizeBytes, loadCostMs, now);
    let best = this.leader;
    for (let i = 0; i < this.shadows.length; i++) {
      this.shadows[i].access(model, sizeBytes, loadCostMs, now, this.decay);
      // Switch only on a clear margin, so two close experts do not take turns.
      if (this.shadows[i].score < this.shadows[best].score * 0.97) best = i;
    }
    this.leader = best;
  }

  onAdmit(model: string, now: number): void {
    for (const r of this.rankers) r.onAdmit(model, now);
  }

  onEvict(model: string, now: number): void {
    for (const r of this.rankers) r.onEvict(model, now);
  }

  chooseVictims(needBytes: number, now: number, evictable: (model: string) => boolean): string[] {
    return this.rankers[this.leader].chooseVictims(needBytes, now, evictable);
  }
}
