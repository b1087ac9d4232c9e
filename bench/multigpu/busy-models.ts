/**
 * Busy models on several GPUs: the agent's scaler (models/scaler.ts, `decideScaling`), admission, GPU
 * ledger and default eviction policy, driven period by period over a simulated workload in which a few
 * models need more than one GPU's compute while a thousand others come and go. It answers what `adaptive`
 * placement buys over packing each model on one GPU and over Triton's default of every model on every GPU.
 *
 * The busy-time model (one scaler period at a time, the agent's default of 2 s):
 *   - each model's requests need `serviceMs` of one GPU each; a model's queue is split evenly over its
 *     instances (one per GPU it is on), and every GPU shares its period fairly between the instances with
 *     work on it (the smaller demands are met in full, the larger split what is left);
 *   - a request's time in Triton is its wait so far plus its service time, stretched by its GPU's load
 *     (at most by the number of instances sharing the GPU); the sum over a period, a queued request
 *     counting the whole period, is the model's busy time fed to the scaler (the agent adds a request's
 *     time when it finishes, so its signal lags this one by up to a request's wait); a request that waits
 *     longer than SageMaker's 60 s is lost;
 *   - a request for a model not on a GPU loads it first (admission, victims from the policy; the load's
 *     cost is added to the requests that waited for it); a model with queued requests cannot be evicted
 *     (the agent pins it while requests are in flight);
 *   - a scaler move takes effect in the next period (Triton keeps serving the model's instances while it
 *     adds one); the load time it spends is reported, not charged to requests.
 *
 * Workload: 1,000 models (50 MB – 5 GB) under Zipf 1.0 at BACKGROUND_RATE req/s and 10 ms each, plus
 * HOT_MODELS models at HOT_RATE req/s and HOT_SERVICE_MS each (1.3 GPUs of compute each), a new hot set
 * every PHASE_MS. Poisson arrivals, seeded.
 */
import { loadConfig } from '../../src/config';
import {
  SCALE_PERIOD_MS,
  decideScaling,
  policyFromSettings,
  type ModelRecord,
  type ScalerModel,
} from '../../src/models';
import { makeModels, rng, shuffled, zipfSampler, type SimModel } from '../eviction-sim/traces';
import { SimClock, admitAtOnce, simAdmission, simLedger } from './sim-parts';

export const DEVICES = 4;
const MODELS = 1000;
const BACKGROUND_RATE = 40;
const BACKGROUND_SERVICE_MS = 10;
const HOT_MODELS = 2;
const HOT_RATE = 21.7;
const HOT_SERVICE_MS = 60;
const PHASE_MS = 10 * 60_000;
/** SageMaker's invocation limit: a request still queued after it is lost. */
const TIMEOUT_MS = 60_000;

export type BusyPlacement = 'pack' | 'triton-default' | 'adaptive';

export interface BusyOutcome {
  placement: BusyPlacement;
  requests: number;
  answered: number;
  /** Waited past TIMEOUT_MS in a queue. */
  timedOut: number;
  /** Admission could not place the model at once. */
  refused: number;
  meanMs: number;
  p99Ms: number;
  coldLoads: number;
  coldSeconds: number;
  /** Scaler moves: one more GPU, one fewer, and the load seconds spent adding instances. */
  grown: number;
  /** Of `grown`, the GPUs added to a model busy at the time (the others: models queued behind one). */
  grownBusy: number;
  shrunk: number;
  moveSeconds: number;
  /** Models sent away to make room for a busy model on one more GPU. */
  moveVictims: number;
}

/** Knuth's Poisson sampler for small means, a rounded normal for large ones. */
function poisson(mean: number, r: () => number): number {
  if (mean > 30) {
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * g));
  }
  const limit = Math.exp(-mean);
  let k = 0;
  for (let p = r(); p > limit; p *= r()) k++;
  return k;
}

/** Latency histogram in 1 ms buckets to 10 s, then 100 ms buckets to 70 s (counts may be fractional). */
class Latencies {
  private readonly fine = new Float64Array(10_000);
  private readonly coarse = new Float64Array(700);
  private total = 0;
  private sum = 0;
  add(ms: number, count: number): void {
    if (count <= 0) return;
    if (ms < 10_000) this.fine[Math.floor(ms)] += count;
    else this.coarse[Math.min(699, Math.floor(ms / 100))] += count;
    this.total += count;
    this.sum += ms * count;
  }
  mean(): number {
    return this.total > 0 ? this.sum / this.total : 0;
  }
  quantile(q: number): number {
    let left = q * this.total;
    for (let i = 0; i < this.fine.length; i++) if ((left -= this.fine[i]) <= 0) return i + 1;
    for (let i = 100; i < this.coarse.length; i++) if ((left -= this.coarse[i]) <= 0) return (i + 1) * 100;
    return 70_000;
  }
}

interface Queued {
  at: number;
  count: number;
}

/** Per model, what the registry keeps for the scaler. */
interface ModelState {
  queue: Queued[];
  queued: number;
  /** Requests still queued after the last period's service: they pin the model. */
  carried: number;
  busyMs: number;
  requests: number;
  smoothedRequests: number;
  coolPeriods: number;
  /** Measured once it has loaded (the agent learns it from its first load). */
  loadMs: number | undefined;
}

export async function simulateBusy(
  placement: BusyPlacement,
  minutes: number,
  deviceBytes: number,
  seed = 7,
): Promise<BusyOutcome> {
  const models: SimModel[] = makeModels(MODELS, 1);
  const serviceMs = models.map(() => BACKGROUND_SERVICE_MS);
  const r = rng(seed);
  const clock = new SimClock();
  const ledger = simLedger(clock, DEVICES, deviceBytes);
  const policy = policyFromSettings(loadConfig({ TRITON_MODEL_REPOSITORY: '/models' }));
  if (!policy) throw new Error('the default settings have eviction on');
  const state = new Map<string, ModelState>(
    models.map((m) => [
      m.name,
      {
        queue: [],
        queued: 0,
        carried: 0,
        busyMs: 0,
        requests: 0,
        smoothedRequests: 0,
        coolPeriods: 0,
        loadMs: undefined,
      },
    ]),
  );
  const resident = (name: string) => ledger.stateOf(name) === 'resident';
  const latencies = new Latencies();
  const byName = new Map(models.map((m, i) => [m.name, i]));
  const out: BusyOutcome = {
    placement,
    requests: 0,
    answered: 0,
    timedOut: 0,
    refused: 0,
    meanMs: 0,
    p99Ms: 0,
    coldLoads: 0,
    coldSeconds: 0,
    grown: 0,
    grownBusy: 0,
    shrunk: 0,
    moveSeconds: 0,
    moveVictims: 0,
  };
  const admission = simAdmission(
    ledger,
    policy,
    clock,
    // A model with requests waiting from an earlier period is pinned, as the agent pins a model with
    // requests in flight. One whose requests all arrived this period served them before it goes (a
    // period is 2 s; its requests take milliseconds when nothing queues).
    (name, exclude) => name !== exclude.name && resident(name) && (state.get(name)?.carried ?? 0) === 0,
    (name) => {
      const s = state.get(name);
      if (!s || s.queued === 0) return;
      // Served before it goes: their wait so far (a cold load included) plus one service time.
      for (const q of s.queue) latencies.add(clock.now() - q.at + serviceMs[byName.get(name)!], q.count);
      out.answered += s.queued;
      s.queued = 0;
      s.queue.length = 0;
    },
  );
  const kind = placement === 'triton-default' ? 'all' : 'choose';
  const records = new Map(
    models.map((m) => [m.name, { name: m.name, placement: { kind }, victims: [] } as unknown as ModelRecord]),
  );
  const perm = shuffled(MODELS, r);
  const zipf = zipfSampler(MODELS, 1.0, r);

  const P = SCALE_PERIOD_MS;
  const periods = Math.round((minutes * 60_000) / P);
  let hot: number[] = [];
  for (let k = 0; k < periods; k++) {
    const t = k * P;
    clock.t = t;
    // A new hot set every phase: the old one cools down to background rates.
    if (Math.floor(t / PHASE_MS) !== Math.floor((t - P) / PHASE_MS) || k === 0) {
      for (const i of hot) serviceMs[i] = BACKGROUND_SERVICE_MS;
      hot = [];
      while (hot.length < HOT_MODELS) {
        const pick = perm[Math.floor(r() * MODELS)];
        if (!hot.includes(pick)) hot.push(pick);
      }
      for (const i of hot) serviceMs[i] = HOT_SERVICE_MS;
    }
    // Arrivals.
    const arrivals = new Map<number, number>();
    const background = poisson((BACKGROUND_RATE * P) / 1000, r);
    for (let n = 0; n < background; n++) {
      const i = perm[zipf()];
      arrivals.set(i, (arrivals.get(i) ?? 0) + 1);
    }
    for (const i of hot) arrivals.set(i, (arrivals.get(i) ?? 0) + poisson((HOT_RATE * P) / 1000, r));
    // Cold loads for models that are not on a GPU.
    const delay = new Map<number, number>();
    for (const [i, count] of arrivals) {
      if (count === 0) continue;
      const m = models[i];
      out.requests += count;
      for (let n = 0; n < count; n++) policy.onAccess(m.name, m.sizeBytes, m.loadCostMs, t);
      const s = state.get(m.name)!;
      s.requests += count;
      if (!resident(m.name)) {
        if (!(await admitAtOnce(admission, records.get(m.name)!, m.sizeBytes))) {
          out.refused += count;
          continue;
        }
        ledger.settle(m.name);
        policy.onAdmit(m.name, t);
        out.coldLoads++;
        out.coldSeconds += m.loadCostMs / 1000;
        s.loadMs = m.loadCostMs;
        delay.set(i, m.loadCostMs);
      }
      s.queue.push({ at: t - (delay.get(i) ?? 0), count });
      s.queued += count;
    }
    // Service: each model's queue over its instances; each GPU's period shared fairly between the
    // instances with work on it (as concurrent instances share a GPU: none is starved by a longer queue).
    const work = new Float64Array(DEVICES);
    const onDevice: number[][] = Array.from({ length: DEVICES }, () => []);
    // A request's service is stretched by the GPU's load, but never by more than the instances sharing
    // the GPU (a queue behind one instance does not slow another's kernels).
    const spread = (name: string): number[] => {
      const d = ledger.devicesOf(name);
      return d === undefined ? [] : d === 'all' ? Array.from({ length: DEVICES }, (_, x) => x) : [...d];
    };
    const active: { i: number; name: string; devices: number[] }[] = [];
    for (const [name, s] of state) {
      if (s.queued === 0) continue;
      const i = byName.get(name)!;
      const devices = spread(name);
      if (devices.length === 0) continue;
      active.push({ i, name, devices });
      for (const d of devices) {
        const w = (s.queued / devices.length) * serviceMs[i];
        work[d] += w;
        onDevice[d].push(w);
      }
    }
    // Water-filling: the smallest demands are met in full, the rest split what is left equally.
    const fairShare = onDevice.map((demands) => {
      demands.sort((a, b) => a - b);
      let left = P;
      for (let k = 0; k < demands.length; k++) {
        const each = left / (demands.length - k);
        if (demands[k] > each) return each;
        left -= demands[k];
      }
      return Infinity;
    });
    for (const { i, name, devices } of active) {
      const s = state.get(name)!;
      let served = 0;
      let stretch = 0;
      for (const d of devices) {
        const w = (s.queued / devices.length) * serviceMs[i];
        served += (s.queued / devices.length) * Math.min(1, fairShare[d] / Math.max(w, 1e-9));
        stretch += Math.max(1, Math.min(onDevice[d].length, work[d] / P)) / devices.length;
      }
      const service = serviceMs[i] * stretch;
      // Oldest first; a request's time in Triton is its wait so far plus its (stretched) service.
      let left = served;
      while (left > 1e-9 && s.queue.length > 0) {
        const q = s.queue[0];
        const take = Math.min(q.count, left);
        latencies.add(t - q.at + service, take);
        s.busyMs += take * service;
        q.count -= take;
        left -= take;
        if (q.count <= 1e-9) s.queue.shift();
      }
      out.answered += served;
      s.queued -= served;
      // Whatever is still queued spent the whole period waiting in Triton; past the limit it is lost.
      for (const q of s.queue) s.busyMs += q.count * P;
      while (s.queue.length > 0 && t + P - s.queue[0].at > TIMEOUT_MS) {
        out.timedOut += s.queue[0].count;
        s.queued -= s.queue[0].count;
        s.queue.shift();
      }
      if (s.queued < 1e-6) {
        s.queued = 0;
        s.queue.length = 0;
      }
      s.carried = s.queued;
    }
    // The scaler, every period, as the registry runs it.
    if (placement === 'adaptive') {
      const inputs: ScalerModel[] = [];
      for (const [name, s] of state) {
        if (!resident(name) && s.requests === 0 && s.smoothedRequests === 0) continue;
        const devices = ledger.devicesOf(name);
        inputs.push({
          name,
          busyMs: s.busyMs,
          requests: s.requests,
          smoothedRequests: s.smoothedRequests,
          devices: devices === undefined ? [] : devices,
          movable: resident(name) && devices !== undefined && devices !== 'all',
          tensorrt: false,
          loadMs: s.loadMs,
          coolPeriods: s.coolPeriods,
        });
      }
      const decision = decideScaling(
        inputs,
        {
          count: DEVICES,
          chargeOf: (name) => ledger.chargeOf(name),
          freeOn: (d) => ledger.freeOn(d),
          roomOn: (name, d, bytes) => admission.roomOn(records.get(name)!, d, bytes),
        },
        P,
      );
      for (const [name, v] of decision.smoothedRequests) state.get(name)!.smoothedRequests = v;
      for (const [name, v] of decision.coolPeriods) state.get(name)!.coolPeriods = v;
      for (const move of decision.moves) {
        const before = spread(move.name);
        if (move.victims.length > 0) {
          admission.evictFor(records.get(move.name)!, move.victims);
          out.moveVictims += move.victims.length;
          await new Promise<void>((res) => setImmediate(res));
        }
        const bytes = ledger.chargeOf(move.name);
        const added = move.devices.filter((d) => !before.includes(d));
        if (added.some((d) => ledger.freeOn(d) < bytes)) continue;
        ledger.move(move.name, move.devices);
        if (added.length > 0) {
          out.grown++;
          if (hot.includes(byName.get(move.name)!)) out.grownBusy++;
          out.moveSeconds += models[byName.get(move.name)!].loadCostMs / 1000;
        } else out.shrunk++;
      }
    }
    for (const s of state.values()) {
      s.busyMs = 0;
      s.requests = 0;
    }
  }
  // What is still queued at the end is neither answered nor lost: left out of both.
  out.meanMs = latencies.mean();
  out.p99Ms = latencies.quantile(0.99);
  return out;
}

/** The table: the three placements over the same workload, on GPUs each holding `share` of the models' bytes. */
export async function busyTable(minutes: number, shares: readonly number[]): Promise<string> {
  const total = makeModels(MODELS, 1).reduce((a, m) => a + m.sizeBytes, 0);
  const lines = [
    `\n${DEVICES} GPUs, ${MODELS} models at ${BACKGROUND_RATE} req/s (${BACKGROUND_SERVICE_MS} ms each) and ${HOT_MODELS} busy models at ${HOT_RATE} req/s (${HOT_SERVICE_MS} ms each: ${((HOT_RATE * HOT_SERVICE_MS) / 1000).toFixed(1)} GPUs of compute), a new busy set every ${PHASE_MS / 60_000} min; ${minutes} simulated minutes, ${SCALE_PERIOD_MS / 1000} s periods\n`,
    '| each GPU holds | placement | answered | lost (60 s) | refused | mean ms | p99 ms | cold loads | cold s | GPUs added (to busy models) / given back | move load s | move victims |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const share of shares) {
    for (const placement of ['pack', 'triton-default', 'adaptive'] as const) {
      const o = await simulateBusy(placement, minutes, Math.round(total * share));
      const pct = (x: number) => `${((100 * x) / o.requests).toFixed(2)}%`;
      lines.push(
        `| ${(share * 100).toFixed(0)}% | ${placement} | ${pct(o.answered)} | ${pct(o.timedOut)} | ${pct(o.refused)} | ${o.meanMs.toFixed(0)} | ${o.p99Ms.toFixed(0)} | ${o.coldLoads} | ${o.coldSeconds.toFixed(0)} | ${o.grown} (${o.grownBusy}) / ${o.shrunk} | ${o.moveSeconds.toFixed(0)} | ${o.moveVictims} |`,
      );
    }
  }
  return lines.join('\n');
}
