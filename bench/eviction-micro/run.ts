/**
 * bench/eviction-micro: cost of one victim choice with 10,000 registered and 1,000 resident models, for
 * each policy, against a brute-force baseline that scans every resident (what a sort-on-demand or linear
 * LRU scan costs); and the latency of GET /models pages over 10,000 registered models through real HTTP.
 *
 *   npm run bench:eviction-micro
 */
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import {
  AdaptivePolicy,
  AgedGdsfPolicy,
  LruPolicy,
  defaultExperts,
  type EvictionPolicy,
} from '../../src/models/eviction';
import { ModelRegistry } from '../../src/models';
import { createApp } from '../../src/http';
import { silentLogger } from '../../src/observability';
import type { ArtifactFetcher, Stager } from '../../src/artifacts';

import type { TritonControl } from '../../src/triton';
import { rng } from '../eviction-sim/traces';

const REGISTERED = 10_000;
const RESIDENT = 1_000;
const ITERATIONS = 20_000;

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function victimChoice(name: string, policy: EvictionPolicy): { p50: number; p99: number; max: number } {
  const r = rng(7);
  const sizes = Array.from({ length: REGISTERED }, () => Math.round(5e7 + r() * 5e9));
  const resident = new Set<number>();
  let now = 0;
  for (let i = 0; i < REGISTERED; i++) policy.onAccess(`m${i}`, sizes[i], 500 + sizes[i] / 1e6, (now += 10));
  for (let i = 0; i < RESIDENT; i++) {
    resident.add(i);
    policy.onAdmit(`m${i}`, now);
  }
  const samples: number[] = [];
  const residentList = () => [...resident];
  let list = residentList();
  for (let it = 0; it < ITERATIONS + 2000; it++) {
    // A hit on a resident model, then a miss that needs room for one model.
    const hit = list[Math.floor(r() * list.length)];
    policy.onAccess(`m${hit}`, sizes[hit], 500 + sizes[hit] / 1e6, (now += 10));
    let miss = Math.floor(r() * REGISTERED);
    while (resident.has(miss)) miss = Math.floor(r() * REGISTERED);
    policy.onAccess(`m${miss}`, sizes[miss], 500 + sizes[miss] / 1e6, (now += 10));
    const t0 = process.hrtime.bigint();
    const victims = policy.chooseVictims(sizes[miss], now, () => true);
    const t1 = process.hrtime.bigint();
    if (it >= 2000) samples.push(Number(t1 - t0) / 1000); // after warm-up, in µs
    for (const v of victims) {
      const idx = Number(v.slice(1));
      resident.delete(idx);
      policy.onEvict(v, now);
    }
    resident.add(miss);
    policy.onAdmit(`m${miss}`, now);
    list = residentList();
  }
  void name;
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) };
}

/** Baseline: scan every resident for the least recently used, per choice (no index). */
function bruteForce(): { p50: number; p99: number; max: number } {
  const r = rng(7);
  const last = new Map<number, number>();
  for (let i = 0; i < RESIDENT; i++) last.set(i, r());
  const samples: number[] = [];
  for (let it = 0; it < ITERATIONS + 2000; it++) {
    last.set(Math.floor(r() * RESIDENT), it);
    const t0 = process.hrtime.bigint();
    let best = -1;
    let bestT = Infinity;
    for (const [k, t] of last) {
      if (t < bestT) {
        bestT = t;
        best = k;
      }
    }
    const t1 = process.hrtime.bigint();
    if (best < 0) throw new Error('unreachable');
    if (it >= 2000) samples.push(Number(t1 - t0) / 1000);
  }
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) };
}

async function listPages(): Promise<{ p50: number; p99: number; pages: number }> {
  // Stub parts: every load succeeds at once, so 10,000 models register in-process quickly.
  const triton = {
    load: async () => undefined,
    unload: async () => undefined,
    modelMetadata: async () => ({ name: 'x', versions: ['1'], platform: 'python', inputs: [], outputs: [] }),
    modelConfig: async () => ({ max_batch_size: 0 }),
    modelStatistics: async () => [],
    repositoryIndex: async () => [],
  } as unknown as TritonControl;
  // One real (tiny) artifact directory that every stub fetch returns.
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'micro-'));
  await fsp.mkdir(path.join(dir, 'm', '1'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'm', 'config.pbtxt'), 'platform: "python"\n');
  const stager = {
    stage: async () => ({ tritonName: 't', memberNames: [], dirs: [] }),
    remove: async () => undefined,
  } as unknown as Stager;
  const fetcher = {
    fetch: async (url: string) => ({
      dir,
      info: { url, kind: 'directory', size: 0, version: '1' },
      entry: undefined,
      bytes: 1,
      fetchMs: 0,
      release: () => undefined,
    }),
    describe: async () => ({}),
  } as unknown as ArtifactFetcher;
  const registry = new ModelRegistry(
    { triton, stager, fetcher, capacity: undefined, logger: silentLogger() },
    {
      modelDataUrl: undefined,
      coldLoadWaitMs: 1000,
      failureTtlMs: 1000,
      loadTimeoutMs: 1000,
      invokeTimeoutMs: 1000,
      unloadTimeoutMs: 1000,
      unloadDrainTimeoutMs: 1000,
      unloadPollMs: 10,
      oomRetries: 0,
      idleUnloadMs: 0,
    },
  );
  // The registry's own load path, without HTTP for the 10,000 setups.
  for (let i = 0; i < REGISTERED; i++)
    await registry.load(`model-${String(i).padStart(5, '0')}`, `s3://bucket/m${i}.tar.gz`);
  const listed = registry.list().filter((r) => r.loads > 0).length;
  const app = createApp({
    registry,
    logger: silentLogger(),
    settings: { maxBodyBytes: 1e6, defaultModelName: undefined, listPageSize: 1000 },
  });
  const server = http.createServer(app);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const samples: number[] = [];
  let pages = 0;
  for (let round = 0; round < 20; round++) {
    let token: string | undefined;
    do {
      const t0 = process.hrtime.bigint();
      const res = await fetch(
        `${base}/models?max_results=1000${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`,
      );
      const body = (await res.json()) as { models: unknown[]; nextPageToken?: string };
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
      token = body.nextPageToken;
      pages++;
    } while (token);
  }
  server.close();
  registry.close();
  await fsp.rm(dir, { recursive: true, force: true });
  if (listed === 0) console.log('(note: stub models did not list; see loads)');
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), pages };
}

async function main(): Promise<void> {
  console.log(
    `victim choice with ${REGISTERED} registered and ${RESIDENT} resident models, ${ITERATIONS} choices each (µs)`,
  );
  console.log('| policy | p50 µs | p99 µs | max µs |');
  console.log('| --- | ---: | ---: | ---: |');
  const base = bruteForce();
  console.log(
    `| brute-force LRU scan (baseline) | ${base.p50.toFixed(1)} | ${base.p99.toFixed(1)} | ${base.max.toFixed(0)} |`,
  );
  const opts = { churnGuard: 0, capacityBytes: RESIDENT * 2.5e9 };
  const policies: [string, EvictionPolicy][] = [
    ['lru', new LruPolicy(opts)],
    ['gdsf-aged', new AgedGdsfPolicy({ ...opts, halfLife: 7_200_000 })],
    [
      'adaptive (default)',
      new AdaptivePolicy({ capacityBytes: opts.capacityBytes, experts: defaultExperts(opts), window: 2000 }),
    ],
  ];
  for (const [name, p] of policies) {
    const r = victimChoice(name, p);
    console.log(`| ${name} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(0)} |`);
  }
  const pages = await listPages();
  console.log(
    `\nGET /models over ${REGISTERED} registered models, pages of 1000, ${pages.pages} pages through real HTTP`,
  );
  console.log(`| p50 ms | p99 ms |\n| ---: | ---: |\n| ${pages.p50.toFixed(2)} | ${pages.p99.toFixed(2)} |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
