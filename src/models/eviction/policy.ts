/**
 * Eviction policies: pure decision code, no I/O and no clock of their own (time is passed in), so the
 * same code runs in the agent and in the trace simulator (bench/eviction-sim).
 *
 * A policy sees every request (`onAccess`), learns which models are resident (`onAdmit`, `onEvict`) and,
 * when room is needed, ranks resident models as victims (`chooseVictims`). It never sees pinned models
 * as victims: the caller's `evictable` says which residents may go.
 */
export interface EvictionPolicy {
  readonly name: string;
  /**
   * A request for `model` at time `now` (hit or miss). `sizeBytes` is its GPU footprint (measured or
   * estimated) and `loadCostMs` what loading it costs (measured load time, plus download time when it
   * is not on disk).
   */
  onAccess(model: string, sizeBytes: number, loadCostMs: number, now: number): void;
  /** `model` is now resident. */
  onAdmit(model: string, now: number): void;
  /** `model` left the GPU. */
  onEvict(model: string, now: number): void;
  /**
   * Victims, in eviction order, whose sizes add up to at least `needBytes` when possible (fewer when the
   * evictable residents cannot free that much). Does not change the policy's state.
   */
  chooseVictims(needBytes: number, now: number, evictable: (model: string) => boolean): string[];
  /** The GPU bytes models may use, for policies that simulate the cache (optional). */
  setCapacity?(bytes: number): void;
}

export interface PolicyOptions {
  /** GPU bytes models may use (what the adaptive policy's shadow caches simulate). */
  capacityBytes?: number;
  /**
   * Churn guard: models used within this long before `now` are victims only after every other candidate,
   * so one large load cannot flush the models that are being used right now. 0 turns it off.
   */
  churnGuard: number;
}

/** Per-model facts every policy keeps (for resident and non-resident models alike). */
export interface ModelFacts {
  sizeBytes: number;
  loadCostMs: number;
  lastAccess: number;
}

/**
 * Walks `ordered` (best victim first) taking evictable models until `needBytes` is covered; models
 * touched within the churn guard are held back and used only if the others do not suffice.
 */
export function takeVictims(
  ordered: Iterable<string>,
  facts: Map<string, ModelFacts>,
  needBytes: number,
  now: number,
  evictable: (model: string) => boolean,
  churnGuard: number,
): string[] {
  const out: string[] = [];
  const held: string[] = [];
  let freed = 0;
  if (needBytes <= 0) return out;
  for (const m of ordered) {
    if (!evictable(m)) continue;
    const f = facts.get(m);
    if (churnGuard > 0 && f && now - f.lastAccess < churnGuard) {
      held.push(m);
      continue;
    }
    out.push(m);
    freed += f?.sizeBytes ?? 0;
    if (freed >= needBytes) return out;
  }
  for (const m of held) {
    out.push(m);
    freed += facts.get(m)?.sizeBytes ?? 0;
    if (freed >= needBytes) break;
  }
  return out;
}

/** Named policy factories (grpc-js style registry), so configuration picks one by name. */
const registry = new Map<string, (options: PolicyOptions) => EvictionPolicy>();

export function registerPolicy(name: string, factory: (options: PolicyOptions) => EvictionPolicy): void {
  registry.set(name, factory);
}

export function createPolicy(name: string, options: PolicyOptions): EvictionPolicy {
  const f = registry.get(name);
  if (!f) throw new Error(`unknown eviction policy '${name}' (known: ${[...registry.keys()].join(', ')})`);
  return f(options);
}

export function policyNames(): string[] {
  return [...registry.keys()];
}
