/**
 * Writes an access log for a generated workload, as the agent would have written it, for trying the
 * capacity planner (and for the chart in the README):
 *
 *   npx tsx bench/eviction-sim/write-log.ts --out example.log            150 models, 24 h at 2 req/s
 *   npm run plan -- --log example.log --gpu 16GiB,24GiB,32GiB,40GiB,48GiB,64GiB,80GiB
 *
 * Workload: 150 models with log-normal footprints from 50 MB to 5 GB (load time linear in size), Zipf 1.0
 * popularity that drifts by 10 ranks an hour, requests at a steady rate. Hits and cold loads are what the
 * agent's default policy would have seen on a 48 GiB GPU (1 GiB headroom); each model's first load also
 * downloads its artifact at 200 MB/s.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../src/config';
import { policyFromSettings, type EvictionPolicy } from '../../src/models/eviction';
import { AccessLog } from '../../src/observability';
import { parseByteSize, replay } from '../../src/planner';
import { driftTrace, makeModels } from './traces';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      models: { type: 'string', default: '150' },
      hours: { type: 'string', default: '24' },
      rate: { type: 'string', default: '2' },
      gpu: { type: 'string', default: '48GiB' },
      seed: { type: 'string', default: '11' },
    },
  });
  if (!values.out) throw new Error('--out FILE is required');
  const n = Number(values.models);
  const rate = Number(values.rate);
  const count = Math.round(Number(values.hours) * 3600 * rate);
  const seed = Number(values.seed);
  const defaults = loadConfig({ TRITON_MODEL_REPOSITORY: '/models' });
  const models = makeModels(n, seed).map((m) => ({ ...m, downloadMs: m.sizeBytes / 200e3 }));
  const trace = driftTrace(n, count, rate, seed + 1, 10);
  const start = Date.UTC(2026, 0, 1);
  const times = Float64Array.from(trace.times, (t) => start + t);
  const capacity = parseByteSize(values.gpu as string) - defaults.gpuHeadroomBytes;
  const r = replay(
    { requests: trace.requests, times },
    models,
    capacity,
    policyFromSettings(defaults) as EvictionPolicy,
    { latency: true },
  );
  const log = await AccessLog.open({
    file: path.resolve(values.out),
    maxBytes: 1024 ** 3,
    maxFiles: 1,
    bufferBytes: 64 * 1024 ** 2,
  });
  const loaded = new Set<number>();
  const added = r.addedLatencyMs as Float64Array;
  for (let i = 0; i < count; i++) {
    const m = models[trace.requests[i]];
    // As the agent logs it: a request that waited for a load (its own, or one in progress) is cold; the
    // one that started the load carries the load's figures.
    const cold = added[i] > 0;
    const started = cold && added[i] >= m.loadCostMs;
    const first = !loaded.has(trace.requests[i]);
    if (started) loaded.add(trace.requests[i]);
    log.invoke({
      model: m.name,
      hit: !cold,
      footprintBytes: m.sizeBytes,
      ...(started
        ? { loadMs: Math.round(m.loadCostMs), downloadMs: first ? Math.round(m.downloadMs) : 0 }
        : {}),
      ...(cold ? { waitMs: Math.round(added[i]) } : {}),
      time: times[i],
    });
    if (i % 10_000 === 0) await log.flush();
  }
  await log.close();
  console.log(`${count} requests for ${n} models written to ${values.out} (${log.stats().dropped} dropped)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
