import type { EvictionPolicy } from '../models/eviction';

/** A model as the replay sees it: its GPU footprint and what loading it costs. */
export interface ReplayModel {
  name: string;
  sizeBytes: number;
  /** Load time in ms once the artifact is on local disk. */
  loadCostMs: number;
  /** Download time in ms paid by the model's first load only (the disk cache keeps it afterwards). */
  downloadMs?: number;
}

/** Requests in arrival order: model index and arrival time (ms), in two parallel arrays. */
export interface ReplayTrace {
  requests: ArrayLike<number>;
  times: ArrayLike<number>;
}

export interface ReplayResult {
  requests: number;
  /**
   * Requests whose model was resident when they arrived: the agent's definition of a hit (it logs
   * `outcome: "hit"` for these only). A request that arrives while its model is loading is not a hit.
   */
  hits: number;
  /** Bytes of the models of the `hits` requests. */
  hitBytes: number;
  requestedBytes: number;
  /** Loads started (a request for a model that was not resident). */
  coldLoads: number;
  /**
   * Requests that arrived while their model was loading and waited for the rest of that load: neither a
   * hit nor a load of their own (`hits + coldLoads + joinedLoads === requests`). Absent (0) from results
   * of replays that do not model load time.
   */
  joinedLoads?: number;
  /** Load time spent, ms (download included for a model's first load). */
  coldMs: number;
  evictions: number;
  /**
   * Per request, the time in ms it waited for its model: the whole load for the request that started
   * it, the rest of the load for a request that arrived while it was going on, 0 otherwise. Present
   * when asked for.
   */
  addedLatencyMs?: Float64Array;
}

export interface ReplayOptions {
  /** Record each request's added latency (costs 8 bytes a request). */
  latency?: boolean;
}

/**
 * Replays requests through a policy with a GPU of `capacityBytes` for models, calling the policy as the
 * agent's registry does: `onAccess` for every request, `setCapacity` before each load and
 * `chooseVictims` when it needs room, `onEvict` for each victim, `onAdmit` for the loaded model. A model larger than
 * the whole capacity is never resident (every request for it pays its load). Loads take their cost in
 * time: a request arriving while its model loads waits for the rest, and is counted in `joinedLoads`, not
 * in `hits`, as the agent logs it (`cold`).
 */
export function replay(
  trace: ReplayTrace,
  models: readonly ReplayModel[],
  capacityBytes: number,
  policy: EvictionPolicy,
  options: ReplayOptions = {},
): ReplayResult {
  const index = new Map<string, number>();
  models.forEach((m, i) => index.set(m.name, i));
  const resident = new Uint8Array(models.length);
  const loadedOnce = new Uint8Array(models.length);
  const readyAt = new Float64Array(models.length);
  const n = trace.requests.length;
  const latency = options.latency ? new Float64Array(n) : undefined;
  const res: ReplayResult = {
    requests: n,
    hits: 0,
    hitBytes: 0,
    requestedBytes: 0,
    coldLoads: 0,
    joinedLoads: 0,
    coldMs: 0,
    evictions: 0,
    addedLatencyMs: latency,
  };
  let used = 0;
  let joined = 0;
  for (let i = 0; i < n; i++) {
    const m = trace.requests[i];
    const now = trace.times[i];
    const model = models[m];
    const cost = model.loadCostMs + (loadedOnce[m] ? 0 : (model.downloadMs ?? 0));
    policy.onAccess(model.name, model.sizeBytes, cost, now);
    res.requestedBytes += model.sizeBytes;
    if (resident[m]) {
      if (readyAt[m] > now) {
        // Its model is still loading: the request waits for the rest of the load, a miss for the agent.
        joined++;
        if (latency) latency[i] = readyAt[m] - now;
      } else {
        res.hits++;
        res.hitBytes += model.sizeBytes;
      }
      continue;
    }
    res.coldLoads++;
    res.coldMs += cost;
    loadedOnce[m] = 1;
    if (latency) latency[i] = cost;
    if (model.sizeBytes > capacityBytes) continue;
    policy.setCapacity?.(capacityBytes);
    const need = used + model.sizeBytes - capacityBytes;
    if (need > 0) {
      for (const v of policy.chooseVictims(need, now, (name) => name !== model.name)) {
        const idx = index.get(v);
        if (idx === undefined || !resident[idx]) continue;
        resident[idx] = 0;
        used -= models[idx].sizeBytes;
        policy.onEvict(v, now);
        res.evictions++;
      }
    }
    resident[m] = 1;
    readyAt[m] = now + cost;
    used += model.sizeBytes;
    policy.onAdmit(model.name, now);
  }
  res.joinedLoads = joined;
  return res;
}
