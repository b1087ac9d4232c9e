/**
 * The adaptive multi-GPU decision, as a pure function: given each model's busy time and request count
 * over the last period, where it is, and what the ledger says of each GPU, which models get an instance on
 * one more GPU (and which victims go for it) and which give one back. No I/O, no clock: the registry
 * gathers the inputs every period, carries the moves out and keeps the per-model counters.
 */

/** How often the adaptive placement looks at how busy each model's instances are, by default. */
export const SCALE_PERIOD_MS = 2000;

/** Each instance busier than this (time in Triton per period, queueing included) asks for one more GPU. */
export const SCALE_OUT_LOAD = 0.7;
/** Below this per instance on one GPU fewer… */
export const SCALE_IN_LOAD = 0.3;
/** …for this many periods in a row, a model gives a GPU back. */
export const SCALE_IN_PERIODS = 2;

/** One model as the scaler sees it for one period. */
export interface ScalerModel {
  name: string;
  /** Time its requests spent in Triton over the period (summed over requests). */
  busyMs: number;
  /** Requests it answered over the period. */
  requests: number;
  /** Its requests per period smoothed over the periods before (0 for a new model). */
  smoothedRequests: number;
  /** GPUs its instances are on ('all': placed by Triton, never moved). */
  devices: readonly number[] | 'all';
  /** False while it may not move: loading or unloading, placed by its artifact, an ensemble, backing off. */
  movable: boolean;
  /** TensorRT: never shrunk (its engine stays on a GPU it leaves until the whole model unloads). */
  tensorrt: boolean;
  /** Its last measured load time, if any (the cost of sending it away). */
  loadMs: number | undefined;
  /** Periods in a row it has been cool enough to give a GPU back. */
  coolPeriods: number;
}

/** What the scaler reads of the GPUs (the ledger, and a dry run of admission). */
export interface ScalerGpus {
  /** How many GPUs there are. */
  count: number;
  /** Bytes a model is charged. */
  chargeOf(name: string): number;
  /** Bytes free on device `d`. */
  freeOn(d: number): number;
  /** The victims admission would send away to place `bytes` more of `name` on `d`; undefined: cannot. */
  roomOn(name: string, d: number, bytes: number): string[] | undefined;
}

export interface ScaleMove {
  name: string;
  /** Where its instances go. */
  devices: number[];
  /** Models sent away first to make room. */
  victims: string[];
}

export interface ScaleDecision {
  moves: ScaleMove[];
  /** Each considered model's count of cool periods after this one. */
  coolPeriods: Map<string, number>;
  /** Every model's smoothed requests per period, this period included (pass back as `smoothedRequests`). */
  smoothedRequests: Map<string, number>;
}

/** Share of a model's smoothed request rate carried into the next period (the rest is the new period's). */
export const RATE_MEMORY = 0.75;

/** Median load time per byte of charge over the models whose load was measured (Infinity when none). */
export function loadMsPerByte(models: readonly ScalerModel[], gpus: ScalerGpus): number {
  const ratios: number[] = [];
  for (const m of models) {
    const bytes = gpus.chargeOf(m.name);
    if (m.loadMs !== undefined && bytes > 0) ratios.push(m.loadMs / bytes);
    if (ratios.length >= 256) break;
  }
  if (ratios.length === 0) return Infinity;
  ratios.sort((a, b) => a - b);
  return ratios[Math.floor(ratios.length / 2)];
}

/**
 * One period's decisions. A model whose instances were each busier than SCALE_OUT_LOAD gets one more
 * GPU: free room first (the GPU with the most); where there is none, the policy's victims on the GPU
 * whose victims cost least are sent away, but only if that cost (their request rate times their load
 * time: cold-load time per unit of time, were they never back) is below what the busy model gains (its
 * time in Triton beyond SCALE_OUT_LOAD per instance, per unit of time). A model whose traffic would fit
 * on one GPU fewer at SCALE_IN_LOAD for SCALE_IN_PERIODS periods in a row gives its last GPU back.
 */
export function decideScaling(
  models: readonly ScalerModel[],
  gpus: ScalerGpus,
  periodMs: number,
): ScaleDecision {
  const moves: ScaleMove[] = [];
  const coolPeriods = new Map<string, number>();
  // What sending a model away costs follows its traffic over several periods: one period in which its
  // client stalled (a busy machine, a pause) must not make a model in use look free to evict.
  const smoothedRequests = new Map(
    models.map((m) => [m.name, RATE_MEMORY * m.smoothedRequests + (1 - RATE_MEMORY) * m.requests]),
  );
  if (gpus.count < 2) return { moves, coolPeriods, smoothedRequests };
  const perByte = loadMsPerByte(models, gpus);
  const rate = new Map(models.map((m) => [m.name, (smoothedRequests.get(m.name) ?? 0) / periodMs]));
  const loadMsOf = new Map(models.map((m) => [m.name, m.loadMs]));
  // Sending a model away costs its request rate times its load time (a measured one, else its bytes at
  // the median ms per byte); one nobody asked for costs nothing now, whatever its load time.
  const costOf = (victims: readonly string[]) =>
    victims.reduce((sum, v) => {
      const used = rate.get(v) ?? 0;
      if (used === 0) return sum;
      return sum + used * (loadMsOf.get(v) ?? Math.max(1, gpus.chargeOf(v)) * perByte);
    }, 0);
  for (const m of models) {
    if (!m.movable || m.devices === 'all') continue;
    const demand = m.busyMs / periodMs;
    const current = m.devices;
    const n = current.length;
    if (demand > SCALE_OUT_LOAD * n && n < gpus.count) {
      coolPeriods.set(m.name, 0);
      const bytes = gpus.chargeOf(m.name);
      const others = Array.from({ length: gpus.count }, (_, d) => d).filter((d) => !current.includes(d));
      const spare = others
        .filter((d) => gpus.freeOn(d) >= bytes)
        .sort((a, b) => gpus.freeOn(b) - gpus.freeOn(a));
      if (spare.length > 0) {
        moves.push({ name: m.name, devices: [...current, spare[0]], victims: [] });
        continue;
      }
      const gain = demand - SCALE_OUT_LOAD * n;
      let best: { d: number; victims: string[]; cost: number } | undefined;
      for (const d of others) {
        const victims = gpus.roomOn(m.name, d, bytes);
        if (!victims || victims.length === 0) continue;
        const cost = costOf(victims);
        if (!best || cost < best.cost) best = { d, victims, cost };
      }
      if (best && best.cost < gain)
        moves.push({ name: m.name, devices: [...current, best.d], victims: best.victims });
    } else if (n > 1 && demand < SCALE_IN_LOAD * (n - 1) && !m.tensorrt) {
      const cool = m.coolPeriods + 1;
      if (cool >= SCALE_IN_PERIODS) {
        coolPeriods.set(m.name, 0);
        moves.push({ name: m.name, devices: current.slice(0, -1), victims: [] });
      } else coolPeriods.set(m.name, cool);
    } else {
      coolPeriods.set(m.name, 0);
    }
  }
  return { moves, coolPeriods, smoothedRequests };
}
