import { takeVictims, type EvictionPolicy, type ModelFacts, type PolicyOptions } from './policy';

/**
 * Least recently used: what the peers (Seldon, ModelMesh) do. Resident models live in a Map kept in
 * access order (delete + set moves a key to the end), so a victim choice walks from the oldest.
 */
export class LruPolicy implements EvictionPolicy {
  readonly name = 'lru';
  private readonly facts = new Map<string, ModelFacts>();
  private readonly resident = new Map<string, true>();

  constructor(private readonly options: PolicyOptions = { churnGuard: 0 }) {}

  onAccess(model: string, sizeBytes: number, loadCostMs: number, now: number): void {
    this.facts.set(model, { sizeBytes, loadCostMs, lastAccess: now });
    if (this.resident.has(model)) {
      this.resident.delete(model);
      this.resident.set(model, true);
    }
  }

  onAdmit(model: string, _now?: number): void {
    this.resident.delete(model);
    this.resident.set(model, true);
  }

  onEvict(model: string, _now?: number): void {
    this.resident.delete(model);
  }

  chooseVictims(needBytes: number, now: number, evictable: (model: string) => boolean): string[] {
    return takeVictims(this.resident.keys(), this.facts, needBytes, now, evictable, this.options.churnGuard);
  }
}
