import { createPolicy, policyNames } from '../models/eviction';
import type { RequestLog } from './access-log-reader';
import { replay } from './replay';

export interface PlanOptions {
  /** GPU memory sizes to try, bytes. */
  gpuBytes: number[];
  /** GPU memory kept free for activations (the agent's AGENT_GPU_HEADROOM_BYTES). */
  headroomBytes: number;
  /** Policies to replay (default: every registered policy). */
  policies?: string[];
  /** The agent's churn guard, ms (AGENT_CHURN_GUARD_MS). */
  churnGuardMs?: number;
}

/** One policy at one GPU size. */
export interface PlanRow {
  policy: string;
  gpuBytes: number;
  hitRatio: number;
  coldLoads: number;
  coldLoadsPerHour: number;
  coldLoadSecondsPerHour: number;
  /** Added latency a request sees (waiting for its model to load), ms. */
  p50AddedMs: number;
  p99AddedMs: number;
}

export interface CapacityPlan {
  rows: PlanRow[];
  requests: number;
  models: number;
  /** Span of the log, hours (at least one second's worth, so rates stay finite). */
  hours: number;
  /** The agent's own hit ratio as the log recorded it. */
  observedHitRatio: number;
  /** The waits the log recorded (p50, p99, ms), when it recorded any. */
  observedWait?: { p50: number; p99: number };
}

/** The q-quantile (0..1) of `xs` by the nearest-rank method. */
export function quantile(xs: Float64Array, q: number): number {
  if (xs.length === 0) return 0;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/**
 * Replays the logged requests through every policy at every GPU size (the models get the GPU less the
 * headroom) and reports what each would have cost. Each replay starts with an empty GPU, so every
 * model's first request is a cold load at every size: the log should cover more than one warm-up.
 */
export function planCapacity(log: RequestLog, options: PlanOptions): CapacityPlan {
  const policies = options.policies ?? policyNames();
  const unknown = policies.filter((p) => !policyNames().includes(p));
  if (unknown.length > 0)
    throw new Error(`unknown eviction policy ${unknown.join(', ')} (known: ${policyNames().join(', ')})`);
  for (const b of [...options.gpuBytes, options.headroomBytes, options.churnGuardMs ?? 0])
    if (!(Number.isFinite(b) && b >= 0)) throw new RangeError(`not a size or duration: ${b}`);
  const n = log.requests.length;
  if (n === 0) throw new Error('the log has no requests to replay');
  const hours = Math.max(1000, log.times[n - 1] - log.times[0]) / 3_600_000;
  const rows: PlanRow[] = [];
  for (const gpuBytes of options.gpuBytes) {
    const capacity = Math.max(0, gpuBytes - options.headroomBytes);
    for (const policy of policies) {
      const r = replay(
        log,
        log.models,
        capacity,
        createPolicy(policy, { churnGuard: options.churnGuardMs ?? 0, capacityBytes: capacity }),
        { latency: true },
      );
      const added = r.addedLatencyMs as Float64Array;
      rows.push({
        policy,
        gpuBytes,
        hitRatio: r.hits / r.requests,
        coldLoads: r.coldLoads,
        coldLoadsPerHour: r.coldLoads / hours,
        coldLoadSecondsPerHour: r.coldMs / 1000 / hours,
        p50AddedMs: quantile(added, 0.5),
        p99AddedMs: quantile(added, 0.99),
      });
    }
  }
  const waits = log.observedWaitMs;
  return {
    rows,
    requests: n,
    models: log.models.length,
    hours,
    observedHitRatio: log.observedHits / n,
    ...(waits.length > 0 ? { observedWait: { p50: quantile(waits, 0.5), p99: quantile(waits, 0.99) } } : {}),
  };
}
