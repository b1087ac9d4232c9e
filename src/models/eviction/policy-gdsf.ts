import { IndexedMinHeap } from './min-heap';
import { takeVictims, type EvictionPolicy, type ModelFacts, type PolicyOptions } from './policy';

/**
 * Textbook GreedyDual-Size-Frequency (Cherkasova): priority H = L + frequency × cost ÷ size, the victim
 * is the lowest H, and L rises to each victim's H so long-unused models age out. Frequency counts only
 * while resident (a model's count restarts when it is evicted).
 */
export class GdsfPolicy implements EvictionPolicy {
  readonly name: string = 'gdsf';
  private readonly facts = new Map<string, ModelFacts>();
  private readonly freq = new Map<string, number>();
  private readonly heap = new IndexedMinHeap();
  private inflation = 0;

  constructor(private readonly options: PolicyOptions = { churnGuard: 0 }) {}

  private value(model: string): number {
    const f = this.facts.get(model);
    if (!f) return this.inflation;
    return this.inflation + ((this.freq.get(model) ?? 1) * f.loadCostMs) / Math.max(1, f.sizeBytes);
  }

  onAccess(model: string, sizeBytes: number, loadCostMs: number, now: number): void {
    this.facts.set(model, { sizeBytes, loadCostMs, lastAccess: now });
    this.freq.set(model, (this.freq.get(model) ?? 0) + 1);
    if (this.heap.has(model)) this.heap.set(model, this.value(model));
  }

  onAdmit(model: string, _now?: number): void {
    if (!this.freq.has(model)) this.freq.set(model, 1);
    this.heap.set(model, this.value(model));
  }

  onEvict(model: string, _now?: number): void {
    const h = this.heap.priority(model);
    if (h !== undefined) this.inflation = Math.max(this.inflation, h);
    this.heap.delete(model);
    this.freq.delete(model);
  }

  chooseVictims(needBytes: number, now: number, evictable: (model: string) => boolean): string[] {
    return takeVictims(this.heap.ascending(), this.facts, needBytes, now, evictable, this.options.churnGuard);
  }
}

export interface AgedGdsfOptions extends PolicyOptions {
  /**
   * Half-life of a request's weight in the frequency estimate, counted in requests the policy has seen
   * (Infinity: no aging). Counting requests rather than milliseconds makes the policy behave the same at
   * 1 and at 1,000 requests per second: what matters is how many other requests came since.
   */
  halfLife: number;
}

/**
 * GDSF with frequencies that age and are kept for every model, resident or not: each request adds 1 to a
 * count that halves every `halfLife` requests. Priority = frequency × cost ÷ size, the value of keeping a
 * model per byte (the greedy answer to the knapsack of which models to keep). Because every count decays
 * at the same rate, a model's rank only changes when it is used, so residents sit in a heap keyed by
 * log2(count at last use) + tick of last use ÷ halfLife + log2(cost ÷ size), a number that does not move
 * as requests go by. The tick is the policy's own request counter; wall time is used only by the churn
 * guard.
 */
export class AgedGdsfPolicy implements EvictionPolicy {
  readonly name: string;
  private readonly facts = new Map<string, ModelFacts>();
  /** count at the last access (before decay since then). */
  private readonly count = new Map<string, number>();
  /** the request tick of each model's last access. */
  private readonly lastTick = new Map<string, number>();
  private readonly heap = new IndexedMinHeap();
  private tick = 0;

  constructor(private readonly options: AgedGdsfOptions) {
    if (!(options.halfLife > 0)) throw new Error(`half-life must be positive, got ${options.halfLife}`);
    this.name = Number.isFinite(options.halfLife) ? `gdsf-aged(${options.halfLife})` : 'gdsf-history';
  }

  private key(model: string): number {
    const f = this.facts.get(model);
    const c = this.count.get(model) ?? 1;
    if (!f) return -Infinity;
    const age = Number.isFinite(this.options.halfLife)
      ? (this.lastTick.get(model) ?? 0) / this.options.halfLife
      : 0;
    return Math.log2(c) + age + Math.log2(Math.max(1e-9, f.loadCostMs) / Math.max(1, f.sizeBytes));
  }

  onAccess(model: string, sizeBytes: number, loadCostMs: number, now: number): void {
    const t = ++this.tick;
    const prevTick = this.lastTick.get(model);
    let c = this.count.get(model) ?? 0;
    if (prevTick !== undefined && Number.isFinite(this.options.halfLife))
      c *= 2 ** (-(t - prevTick) / this.options.halfLife);
    this.count.set(model, c + 1);
    this.lastTick.set(model, t);
    this.facts.set(model, { sizeBytes, loadCostMs, lastAccess: now });
    if (this.heap.has(model)) this.heap.set(model, this.key(model));
  }

  onAdmit(model: string, _now?: number): void {
    this.heap.set(model, this.key(model));
  }

  onEvict(model: string, _now?: number): void {
    this.heap.delete(model);
  }

  chooseVictims(needBytes: number, now: number, evictable: (model: string) => boolean): string[] {
    return takeVictims(this.heap.ascending(), this.facts, needBytes, now, evictable, this.options.churnGuard);
  }
}
