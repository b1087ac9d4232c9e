/**
 * bench/eviction-sim: replays request traces through the agent's eviction policies with a simulated clock,
 * at 1, 10, 100 and 1,000 requests per second, and prints cold-load seconds as a multiple of LRU's for
 * every trace and capacity. `default` is the policy object the agent builds from its default settings
 * (the same factory, `policyFromSettings`, fed by `loadConfig`), replayed by the capacity planner's
 * replay loop, which calls the policy as the agent's registry does.
 *
 *   npm run bench:eviction-sim             100,000 requests per trace
 *   npm run bench:eviction-sim -- --quick  20,000 requests per trace, rates 1 and 1,000 only
 *   extra flags: --rates 1,100  --seed 7  --detail (every contender, every capacity)
 */
import { loadConfig } from '../../src/config';
import { createPolicy, policyFromSettings, type EvictionPolicy } from '../../src/models/eviction';
import { replay, type ReplayResult } from '../../src/planner';
import {
  churnTrace,
  deployTrace,
  driftTrace,
  makeModels,
  scanTrace,
  sessionsTrace,
  zipfTrace,
  type SimModel,
  type Trace,
} from './traces';
import { benchFlags, numberFlag, numberListFlag } from '../support/flags';

const CMD = 'bench:eviction-sim';
const flags = benchFlags(CMD, {
  quick: { type: 'boolean', help: '20,000 requests per trace, rates 1 and 1,000 only' },
  detail: { type: 'boolean', help: 'every policy per trace, not only the summary' },
  count: { type: 'string', default: '', help: 'requests per trace (default 100,000; 20,000 with --quick)' },
  rates: { type: 'string', default: '', help: 'request rates, comma-separated (default 1,10,100,1000)' },
  seed: { type: 'string', default: '1', help: 'the traces seed' },
});
const quick = flags.quick;
const detail = flags.detail;
const N = 1000;
const COUNT = numberFlag(CMD, 'count', flags.count || (quick ? '20000' : '100000'), 1);
const RATES = numberListFlag(CMD, 'rates', flags.rates || (quick ? '1,1000' : '1,10,100,1000'), 0.001);
const SEED = numberFlag(CMD, 'seed', flags.seed);
const CAPACITIES = [0.05, 0.1, 0.2];

/** The agent's defaults, read the way the agent reads them (only the required setting given). */
const defaults = loadConfig({ TRITON_MODEL_REPOSITORY: '/models' });

function agentDefault(): EvictionPolicy {
  const p = policyFromSettings(defaults);
  if (!p) throw new Error('the default configuration turns eviction off');
  return p;
}

/** Goal for the default policy's cold-load seconds relative to LRU's, by trace. */
function goal(trace: string): number {
  if (trace === 'zipf α=1' || trace === 'zipf α=1.3') return 0.8;
  if (trace === 'zipf α=0.7') return 0.85;
  if (trace === 'drifting popularity') return 0.9;
  return 1.05;
}

/** The offline reference: knows every future request; evicts the farthest next use, weighted by size ÷ cost. */
function clairvoyant(trace: Trace, models: SimModel[], capacity: number): ReplayResult {
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
  const res: ReplayResult = {
    requests: n,
    hits: 0,
    hitBytes: 0,
    requestedBytes: 0,
    coldLoads: 0,
    coldMs: 0,
    evictions: 0,
  };
  for (let i = 0; i < n; i++) {
    const m = trace.requests[i];
    const model = models[m];
    nextUse.set(m, next[i]);
    res.requestedBytes += model.sizeBytes;
    if (resident.has(m)) {
      res.hits++;
      res.hitBytes += model.sizeBytes;
      continue;
    }
    res.coldLoads++;
    res.coldMs += model.loadCostMs;
    if (model.sizeBytes > capacity) continue;
    if (used + model.sizeBytes > capacity) {
      const score = (x: number) =>
        ((nextUse.get(x) as number) - i) * (models[x].sizeBytes / models[x].loadCostMs);
      const ranked = [...resident].sort((a, b) => score(b) - score(a));
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

function traces(rate: number, seed: number): Trace[] {
  return [
    zipfTrace(N, 0.7, COUNT, rate, seed + 1),
    zipfTrace(N, 1.0, COUNT, rate, seed + 2),
    zipfTrace(N, 1.3, COUNT, rate, seed + 3),
    driftTrace(N, COUNT, rate, seed + 4),
    churnTrace(N, COUNT, rate, seed + 5),
    scanTrace(N, COUNT, rate, seed + 6),
    sessionsTrace(N, COUNT, rate, seed + 7),
    deployTrace(N, COUNT, rate, seed + 8),
  ];
}

function main(): void {
  const models = makeModels(N, 42 + SEED);
  const total = models.reduce((a, m) => a + m.sizeBytes, 0);
  console.log(
    `${N} models, ${(total / 1e9).toFixed(0)} GB in all (sizes ${(Math.min(...models.map((m) => m.sizeBytes)) / 1e6).toFixed(0)} MB to ${(Math.max(...models.map((m) => m.sizeBytes)) / 1e9).toFixed(1)} GB); ${COUNT} requests per trace`,
  );
  console.log(
    `default policy: AGENT_EVICTION_POLICY=${defaults.evictionPolicy}, AGENT_CHURN_GUARD_MS=${defaults.churnGuardMs}`,
  );
  // worst ratio over capacities, per rate and trace
  const worst = new Map<string, Map<number, number>>();
  const worstGuard = new Map<string, Map<number, number>>();
  const record = (table: Map<string, Map<number, number>>, trace: string, rate: number, ratio: number) => {
    const row = table.get(trace) ?? new Map<number, number>();
    row.set(rate, Math.max(row.get(rate) ?? 0, ratio));
    table.set(trace, row);
  };
  let failures = 0;
  for (const rate of RATES) {
    for (const trace of traces(rate, SEED * 100)) {
      for (const frac of CAPACITIES) {
        const capacity = frac * total;
        const contenders: [string, () => ReplayResult][] = [
          ['lru', () => replay(trace, models, capacity, createPolicy('lru', { churnGuard: 0 }))],
          ['default', () => replay(trace, models, capacity, agentDefault())],
          [
            'default + 2 s churn guard',
            () =>
              replay(
                trace,
                models,
                capacity,
                policyFromSettings({ ...defaults, churnGuardMs: 2000 }) as EvictionPolicy,
              ),
          ],
        ];
        if (detail) {
          contenders.push(
            ['gdsf', () => replay(trace, models, capacity, createPolicy('gdsf', { churnGuard: 0 }))],
            [
              'gdsf-aged',
              () => replay(trace, models, capacity, createPolicy('gdsf-aged', { churnGuard: 0 })),
            ],
            ['clairvoyant', () => clairvoyant(trace, models, capacity)],
          );
          console.log(`\n${trace.name}, ${rate} req/s, capacity ${frac * 100}% of the total footprint`);
          console.log('| policy | hit ratio | byte hit ratio | cold-load s | evictions | cold-load vs LRU |');
          console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
        }
        let lruCold = 0;
        for (const [name, run] of contenders) {
          const r = run();
          if (name === 'lru') lruCold = r.coldMs;
          const ratio = r.coldMs / lruCold;
          if (detail)
            console.log(
              `| ${name} | ${(r.hits / r.requests).toFixed(3)} | ${(r.hitBytes / r.requestedBytes).toFixed(3)} | ${(r.coldMs / 1000).toFixed(0)} | ${r.evictions} | ${ratio.toFixed(3)} |`,
            );
          if (name === 'default') {
            record(worst, trace.name, rate, ratio);
            if (ratio > goal(trace.name) + 1e-9) {
              failures++;
              console.log(
                `  above goal: ${trace.name} at ${rate} req/s, ${frac * 100}%: ${ratio.toFixed(3)}`,
              );
            }
          }
          if (name === 'default + 2 s churn guard') record(worstGuard, trace.name, rate, ratio);
        }
      }
    }
  }
  const printTable = (title: string, table: Map<string, Map<number, number>>, withGoal: boolean) => {
    console.log(`\n${title}`);
    console.log(`| trace | ${RATES.map((r) => `${r} req/s`).join(' | ')} |${withGoal ? ' goal |' : ''}`);
    console.log(`| --- | ${RATES.map(() => '---:').join(' | ')} |${withGoal ? ' ---: |' : ''}`);
    for (const [trace, row] of table)
      console.log(
        `| ${trace} | ${RATES.map((r) => (row.get(r) ?? NaN).toFixed(2)).join(' | ')} |${withGoal ? ` ≤ ${goal(trace).toFixed(2)} |` : ''}`,
      );
  };
  printTable(
    'default policy: cold-load seconds ÷ LRU, worst of capacities 5/10/20% (lower is better)',
    worst,
    true,
  );
  printTable('the same with a 2 s churn guard (AGENT_CHURN_GUARD_MS=2000)', worstGuard, false);
  console.log(failures === 0 ? '\nevery goal met' : `\n${failures} results above their goal`);
  if (failures > 0) process.exitCode = 1;
}

main();
