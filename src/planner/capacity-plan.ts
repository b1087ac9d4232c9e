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
  /**
   * The GPU size and policy of the agent that wrote the log: the plan then replays that policy at that
   * size too, so the log's own hit ratio can be set beside the replay's (`CapacityPlan.agent`).
   */
  agent?: { gpuBytes: number; policy: string };
}

/**
 * What the planner calls a hit, in its output and its docs: the agent's own definition (it logs
 * `outcome: "hit"` for these requests only), which the replay counts the same way.
 */
export const HIT_DEFINITION =
  'a request is a hit when its model was resident when it arrived; one that waited for a load in progress is not';

/**
 * One policy at one GPU size. When `noRoom` is set the headroom takes the whole GPU: nothing was replayed
 * and every number below is 0, meaning nothing; the table and the chart say so instead of showing them.
 */
export interface PlanRow {
  policy: string;
  gpuBytes: number;
  /** What models may use: the GPU less the headroom (0 when the headroom takes it all). */
  modelBytes: number;
  /** The headroom takes the whole GPU: no model can ever be resident, so nothing was replayed. */
  noRoom: boolean;
  /** Share of requests that were hits (HIT_DEFINITION). */
  hitRatio: number;
  coldLoads: number;
  /** Requests that arrived while their model was loading and waited for the rest (not hits). */
  joinedLoads: number;
  coldLoadsPerHour: number;
  coldLoadSecondsPerHour: number;
  /** Added latency a request sees (waiting for its model to load), ms. */
  p50AddedMs: number;
  p99AddedMs: number;
}

/** The log's own hit ratio beside the replay's, at the agent's GPU size with the agent's policy. */
export interface AgentComparison {
  gpuBytes: number;
  policy: string;
  modelBytes: number;
  /** The headroom takes the whole GPU: there is no replay to compare with. */
  noRoom: boolean;
  /** As the agent served the requests (the log's `hit` lines ÷ its requests). */
  loggedHitRatio: number;
  /** As the replay counts them (undefined when `noRoom`). */
  replayedHitRatio?: number;
}

export interface CapacityPlan {
  rows: PlanRow[];
  requests: number;
  models: number;
  /** Span of the log, hours (at least one second's worth, so rates stay finite). */
  hours: number;
  /** GPU memory kept free at every size, bytes. */
  headroomBytes: number;
  /** The agent's own hit ratio as the log recorded it (HIT_DEFINITION, as the agent counts). */
  observedHitRatio: number;
  /** The waits the log recorded (p50, p99, ms), when it recorded any. */
  observedWait?: { p50: number; p99: number };
  /** Present when `PlanOptions.agent` was given. */
  agent?: AgentComparison;
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
 * model's first request is a cold load at every size: the log should cover more than one warm-up. A size
 * the headroom takes whole is not replayed (its rows say `noRoom`).
 */
export function planCapacity(log: RequestLog, options: PlanOptions): CapacityPlan {
  const policies = options.policies ?? policyNames();
  const unknown = policies.filter((p) => !policyNames().includes(p));
  if (unknown.length > 0)
    throw new Error(`unknown eviction policy ${unknown.join(', ')} (known: ${policyNames().join(', ')})`);
  if (options.agent && !policyNames().includes(options.agent.policy))
    throw new Error(`unknown eviction policy ${options.agent.policy} (known: ${policyNames().join(', ')})`);
  const sizes = [...options.gpuBytes, ...(options.agent ? [options.agent.gpuBytes] : [])];
  for (const b of [...sizes, options.headroomBytes, options.churnGuardMs ?? 0])
    if (!(Number.isFinite(b) && b >= 0)) throw new RangeError(`not a size or duration: ${b}`);
  const n = log.requests.length;
  if (n === 0) throw new Error('the log has no requests to replay');
  const hours = Math.max(1000, log.times[n - 1] - log.times[0]) / 3_600_000;
  const row = (gpuBytes: number, policy: string): PlanRow => {
    const modelBytes = Math.max(0, gpuBytes - options.headroomBytes);
    if (modelBytes === 0)
      return {
        policy,
        gpuBytes,
        modelBytes,
        noRoom: true,
        hitRatio: 0,
        coldLoads: 0,
        joinedLoads: 0,
        coldLoadsPerHour: 0,
        coldLoadSecondsPerHour: 0,
        p50AddedMs: 0,
        p99AddedMs: 0,
      };
    const r = replay(
      log,
      log.models,
      modelBytes,
      createPolicy(policy, { churnGuard: options.churnGuardMs ?? 0, capacityBytes: modelBytes }),
      { latency: true },
    );
    const added = r.addedLatencyMs as Float64Array;
    return {
      policy,
      gpuBytes,
      modelBytes,
      noRoom: false,
      hitRatio: r.hits / r.requests,
      coldLoads: r.coldLoads,
      joinedLoads: r.joinedLoads ?? 0,
      coldLoadsPerHour: r.coldLoads / hours,
      coldLoadSecondsPerHour: r.coldMs / 1000 / hours,
      p50AddedMs: quantile(added, 0.5),
      p99AddedMs: quantile(added, 0.99),
    };
  };
  const rows: PlanRow[] = [];
  for (const gpuBytes of options.gpuBytes) for (const policy of policies) rows.push(row(gpuBytes, policy));
  const observedHitRatio = log.observedHits / n;
  let agent: AgentComparison | undefined;
  if (options.agent) {
    const { gpuBytes, policy } = options.agent;
    const r = rows.find((x) => x.gpuBytes === gpuBytes && x.policy === policy) ?? row(gpuBytes, policy);
    agent = {
      gpuBytes,
      policy,
      modelBytes: r.modelBytes,
      noRoom: r.noRoom,
      loggedHitRatio: observedHitRatio,
      ...(r.noRoom ? {} : { replayedHitRatio: r.hitRatio }),
    };
  }
  const waits = log.observedWaitMs;
  return {
    rows,
    requests: n,
    models: log.models.length,
    hours,
    headroomBytes: options.headroomBytes,
    observedHitRatio,
    ...(waits.length > 0 ? { observedWait: { p50: quantile(waits, 0.5), p99: quantile(waits, 0.99) } } : {}),
    ...(agent ? { agent } : {}),
  };
}
