/**
 * bench/eviction-sim: replays request traces through the agent's own eviction policies (src/models/eviction)
 * with a simulated clock and prints, per trace and capacity, hit ratio, byte hit ratio, cold-load seconds
 * and evictions for LRU, textbook GDSF, the aged GDSF, the adaptive policy and an offline clairvoyant
 * reference (evicts the model whose next use is farthest, weighted by size over cost).
 *
 *   npm run bench:eviction-sim             200,000 requests per trace (the day trace: 172,800)
 *   npm run bench:eviction-sim -- --quick  a fifth of that
 */
import {
  AdaptivePolicy,
  AgedGdsfPolicy,
  GdsfPolicy,
  LruPolicy,
  defaultExperts,
  type EvictionPolicy,
} from '../../src/models/eviction';
import {
  churnTrace,
  driftTrace,
  makeModels,
  scanTrace,
  zipfTrace,
  type SimModel,
  type Trace,
} from './traces';

const quick = process.argv.includes('--quick');
const N = 1000;
const COUNT = quick ? 40_000 : 200_000;

interface Result {
  hits: number;
  requests: number;
  hitBytes: number;
  requestedBytes: number;
  coldMs: number;
  evictions: number;
}

/** Replays `trace` through `policy` with a GPU of `capacity` bytes. */
export function simulate(trace: Trace, models: SimModel[], capacity: number, policy: EvictionPolicy): Result {
  const resident = new Set<number>();
  let used = 0;
  const res: Result = { hits: 0, requests: 0, hitBytes: 0, requestedBytes: 0, coldMs: 0, evictions: 0 };
  for (let i = 0; i < trace.requests.length; i++) {
    const m = trace.requests[i];
    const now = trace.times[i];
    const model = models[m];
    policy.onAccess(model.name, model.sizeBytes, model.loadCostMs, now);
    res.requests++;
    res.requestedBytes += model.sizeBytes;
    if (resident.has(m)) {
      res.hits++;
      res.hitBytes += model.sizeBytes;
      continue;
    }
    res.coldMs += model.loadCostMs;
    if (model.sizeBytes > capacity) continue;
    const need = used + model.sizeBytes - capacity;
    if (need > 0) {
      for (const v of policy.chooseVictims(need, now, (name) => name !== model.name)) {
        const idx = Number(v.slice(1));
        if (!resident.delete(idx)) continue;
        used -= models[idx].sizeBytes;
        policy.onEvict(v, now);
        res.evictions++;
      }
    }
    resident.add(m);
    used += model.sizeBytes;
    policy.onAdmit(model.name, now);
  }
  return res;
}

/** The offline reference: knows every future request. */
function clairvoyant(trace: Trace, models: SimModel[], capacity: number): Result {
  const n = trace.requests.length;
  const next = new Int32Array(n);
  const last = new Map<number, number>();
  for (let i = n - 1; i >= 0; i--) {
    next[i] = last.get(trace.requests[i]) ?? n * 2;
    last.set(trace.requests[i], i);
  }
  const nextUse = new Map<number, number>();
  const resident = new Set<number>();
  let used = 0;
  const res: Result = { hits: 0, requests: 0, hitBytes: 0, requestedBytes: 0, coldMs: 0, evictions: 0 };
  for (let i = 0; i < n; i++) {
    const m = trace.requests[i];
    const model = models[m];
    nextUse.set(m, next[i]);
    res.requests++;
    res.requestedBytes += model.sizeBytes;
    if (resident.has(m)) {
      res.hits++;
      res.hitBytes += model.sizeBytes;
      continue;
    }
    res.coldMs += model.loadCostMs;
    if (model.sizeBytes > capacity) continue;
    if (used + model.sizeBytes > capacity) {
      const ranked = [...resident].sort((a, b) => {
        const score = (x: number) =>
          ((nextUse.get(x) as number) - i) * (models[x].sizeBytes / models[x].loadCostMs);
        return score(b) - score(a);
      });
      for (const v of ranked) {
        if (used + model.sizeBytes <= capacity) break;
        resident.delete(v);
        used -= models[v].sizeBytes;
        res.evictions++;
      }
    }
    resident.add(m);
    used += model.sizeBytes;
  }
  return res;
}

function main(): void {
  const models = makeModels(N, 42);
  const total = models.reduce((a, m) => a + m.sizeBytes, 0);
  const traces: Trace[] = [
    zipfTrace(N, 0.7, COUNT, 1),
    zipfTrace(N, 1.0, COUNT, 2),
    zipfTrace(N, 1.3, COUNT, 3),
    driftTrace(N, quick ? 34_560 : 172_800, 4),
    churnTrace(N, COUNT, 5),
    scanTrace(N, COUNT, 6),
  ];
  console.log(
    `${N} models, ${(total / 1e9).toFixed(0)} GB in all (sizes ${(Math.min(...models.map((m) => m.sizeBytes)) / 1e6).toFixed(0)} MB to ${(Math.max(...models.map((m) => m.sizeBytes)) / 1e9).toFixed(1)} GB)`,
  );
  const summary: string[] = [];
  for (const trace of traces) {
    for (const frac of [0.05, 0.1, 0.2]) {
      const capacity = frac * total;
      const opts = { churnGuard: 0, capacityBytes: capacity };
      const contenders: [string, () => Result][] = [
        ['lru', () => simulate(trace, models, capacity, new LruPolicy(opts))],
        ['gdsf', () => simulate(trace, models, capacity, new GdsfPolicy(opts))],
        [
          'gdsf-aged(2h)',
          () => simulate(trace, models, capacity, new AgedGdsfPolicy({ ...opts, halfLife: 7_200_000 })),
        ],
        [
          'adaptive',
          () =>
            simulate(
              trace,
              models,
              capacity,
              new AdaptivePolicy({ capacityBytes: capacity, experts: defaultExperts(opts), window: 2000 }),
            ),
        ],
        ['clairvoyant', () => clairvoyant(trace, models, capacity)],
      ];
      console.log(
        `\n${trace.name}, capacity ${frac * 100}% of the total footprint (${trace.requests.length} requests)`,
      );
      console.log('| policy | hit ratio | byte hit ratio | cold-load s | evictions | cold-load vs LRU |');
      console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
      let lruCold = 0;
      for (const [name, run] of contenders) {
        const r = run();
        if (name === 'lru') lruCold = r.coldMs;
        const ratio = r.coldMs / lruCold;
        console.log(
          `| ${name} | ${(r.hits / r.requests).toFixed(3)} | ${(r.hitBytes / r.requestedBytes).toFixed(3)} | ${(r.coldMs / 1000).toFixed(0)} | ${r.evictions} | ${ratio.toFixed(2)} |`,
        );
        if (name === 'adaptive') summary.push(`| ${trace.name} | ${frac * 100}% | ${ratio.toFixed(2)} |`);
      }
    }
  }
  console.log('\nadaptive cold-load seconds relative to LRU');
  console.log('| trace | capacity | adaptive / lru |');
  console.log('| --- | --- | ---: |');
  for (const s of summary) console.log(s);
}

main();
