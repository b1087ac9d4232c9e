import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { runCli } from '../../src/cli';
import { createPolicy, policyNames } from '../../src/models/eviction';
import { AccessLog } from '../../src/observability';
import {
  parseByteSize,
  planCapacity,
  quantile,
  readAccessLogs,
  replay,
  sparkline,
  type ReplayModel,
} from '../../src/planner';

const GiB = 1024 ** 3;
const T0 = Date.UTC(2026, 0, 1);

describe('replay', () => {
  test('matches a brute-force LRU cache on random traces (hits, loads, evictions)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 10 }),
        (sizes, picks, capacity) => {
          const models: ReplayModel[] = sizes.map((s, i) => ({
            name: `m${i}`,
            sizeBytes: s,
            loadCostMs: 10 * s,
          }));
          const requests = picks.map((p) => p % models.length);
          const times = requests.map((_, i) => i * 1000);
          const got = replay({ requests, times }, models, capacity, createPolicy('lru', { churnGuard: 0 }));
          // Oracle: a list in recency order; evict from the front until the newcomer fits.
          let cache: number[] = [];
          let hits = 0;
          let coldMs = 0;
          let evictions = 0;
          for (const m of requests) {
            if (cache.includes(m)) {
              hits++;
              cache = [...cache.filter((x) => x !== m), m];
              continue;
            }
            coldMs += models[m].loadCostMs;
            if (models[m].sizeBytes > capacity) continue;
            const used = () => cache.reduce((a, x) => a + models[x].sizeBytes, 0);
            while (used() + models[m].sizeBytes > capacity) {
              cache.shift();
              evictions++;
            }
            cache.push(m);
          }
          expect(got).toMatchObject({ hits, coldMs, evictions, coldLoads: requests.length - hits });
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a request that arrives while its model loads waits for the rest of the load, and is not a hit (the agent logs it cold)', () => {
    const models: ReplayModel[] = [{ name: 'x', sizeBytes: 1, loadCostMs: 5000, downloadMs: 1000 }];
    const r = replay(
      { requests: [0, 0, 0, 0], times: [0, 1000, 3000, 7000] },
      models,
      10,
      createPolicy('lru', { churnGuard: 0 }),
      {
        latency: true,
      },
    );
    // The first load also downloads: 6 s; later requests wait for what is left of it.
    expect([...(r.addedLatencyMs as Float64Array)]).toEqual([6000, 5000, 3000, 0]);
    // Only the request at 7 s found its model resident; the two that waited for the load are misses, as
    // the agent logs them, though they started no load of their own.
    expect(r).toMatchObject({ hits: 1, joinedLoads: 2, coldLoads: 1, coldMs: 6000, hitBytes: 1 });
  });
});

/** Four 1 GiB models used round robin, one request a second, each load 2 s. */
async function writeRoundRobinLog(file: string, cycles: number, maxBytes = 1 << 20): Promise<void> {
  const log = await AccessLog.open({ file, maxBytes, maxFiles: 10 });
  let t = T0;
  for (let c = 0; c < cycles; c++) {
    for (const m of ['a', 'b', 'c', 'd']) {
      const first = c === 0;
      if (first)
        log.lifecycle({ event: 'load', model: m, footprintBytes: GiB, loadMs: 2000, downloadMs: 0, time: t });
      log.invoke({
        model: m,
        hit: !first,
        footprintBytes: GiB,
        waitMs: first ? 2000 : 0,
        ...(first ? { loadMs: 2000 } : {}),
        time: t,
      });
      t += 1000;
    }
  }
  await log.close();
}

describe('capacity planner', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'planner-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('a working set that fits exactly at one size: loaded once there, every request cold below it with LRU', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25);
    const log = await readAccessLogs([file]);
    expect(log.models.map((m) => [m.name, m.sizeBytes, m.loadCostMs])).toEqual([
      ['a', GiB, 2000],
      ['b', GiB, 2000],
      ['c', GiB, 2000],
      ['d', GiB, 2000],
    ]);
    expect(log.requests.length).toBe(100);
    expect(log.observedHits).toBe(96);
    const plan = planCapacity(log, { gpuBytes: [3 * GiB, 4 * GiB, 5 * GiB], headroomBytes: 0 });
    const hours = 99 / 3600;
    expect(plan.hours).toBeCloseTo(hours, 12);
    expect(plan.observedHitRatio).toBe(0.96);
    expect(plan.observedWait).toEqual({ p50: 0, p99: 2000 });
    for (const policy of policyNames()) {
      for (const gpu of [4 * GiB, 5 * GiB]) {
        const row = plan.rows.find((r) => r.policy === policy && r.gpuBytes === gpu);
        expect(row).toMatchObject({ hitRatio: 0.96, coldLoads: 4, p50AddedMs: 0, p99AddedMs: 2000 });
        expect(row?.coldLoadsPerHour).toBeCloseTo(4 / hours, 6);
        expect(row?.coldLoadSecondsPerHour).toBeCloseTo(8 / hours, 6);
      }
      // One model too many for the GPU: no policy can hit more than... every policy misses at least
      // once a cycle after the first.
      const small = plan.rows.find((r) => r.policy === policy && r.gpuBytes === 3 * GiB);
      expect(small?.coldLoads).toBeGreaterThanOrEqual(4 + 24);
    }
    // LRU on a cycle one model longer than the cache misses every time.
    expect(plan.rows.find((r) => r.policy === 'lru' && r.gpuBytes === 3 * GiB)).toMatchObject({
      hitRatio: 0,
      coldLoads: 100,
      p50AddedMs: 2000,
    });
    // Headroom comes off the GPU: 4 GiB less 1 GiB of headroom behaves like 3 GiB.
    const withHeadroom = planCapacity(log, { gpuBytes: [4 * GiB], headroomBytes: GiB, policies: ['lru'] });
    expect(withHeadroom.rows[0].coldLoads).toBe(100);
    expect(() => planCapacity(log, { gpuBytes: [GiB], headroomBytes: 0, policies: ['fifo'] })).toThrow(
      /unknown eviction policy fifo/,
    );
  });

  test('reads rotated files in any order, skips lines that are not access log lines, estimates missing numbers', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25, 1500);
    const files = (await fsp.readdir(dir)).map((f) => path.join(dir, f));
    expect(files.length).toBeGreaterThan(2);
    await fsp.appendFile(file, 'not json\n{"type":"invoke"}\n');
    await fsp.appendFile(
      file,
      `${JSON.stringify({ time: new Date(T0 + 200_000).toISOString(), type: 'invoke', outcome: 'cold', model: 'new' })}\n`,
    );
    const log = await readAccessLogs(files);
    expect(log.requests.length).toBe(101);
    expect([...log.times]).toEqual([...log.times].sort((a, b) => a - b));
    expect(log.skippedLines).toBe(2);
    expect(log.estimatedModels).toEqual(['new']);
    expect(log.models.find((m) => m.name === 'new')).toMatchObject({ sizeBytes: GiB, loadCostMs: 2000 });
    await expect(readAccessLogs([path.join(dir, 'missing.log')])).rejects.toThrow(/ENOENT/);
    const empty = path.join(dir, 'empty.log');
    await fsp.writeFile(empty, '');
    await expect(readAccessLogs([empty])).rejects.toThrow(/no invocations/);
  });

  test('end to end through the package bin: table, sparklines, SVG chart with one line per policy', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25);
    const chart = path.join(dir, 'plan.svg');
    const out: string[] = [];
    const err: string[] = [];
    const status = await runCli(
      ['plan', '--log', file, '--gpu', '3GiB,4GiB,5GiB', '--headroom', '0', '--chart', chart],
      (l) => out.push(l),
      (l) => err.push(l),
    );
    expect(err).toEqual([]);
    expect(status).toBe(0);
    const text = out.join('\n');
    expect(text).toContain('every model stays resident after its first load from 4GiB (adaptive)');
    const lruRow = out.find((l) => /^3GiB\s+lru\s/.test(l));
    expect(lruRow?.split(/\s{2,}/).slice(2, 3)).toEqual(['0.000']);
    expect(out.filter((l) => /^\s+(lru|adaptive|gdsf|gdsf-aged)\s+[▁▂▃▄▅▆▇█]{3}\s/.test(l))).toHaveLength(
      policyNames().length,
    );
    const svg = await fsp.readFile(chart, 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const lines = [...svg.matchAll(/<polyline class="policy" data-policy="([^"]+)"[^>]* points="([^"]+)"/g)];
    expect(lines.map((m) => m[1]).sort()).toEqual([...policyNames()].sort());
    for (const m of lines) expect(m[2].split(' ')).toHaveLength(3);
  });

  test('usage mistakes exit 2 with the reason and change nothing', async () => {
    const run = async (argv: string[]) => {
      const err: string[] = [];
      const status = await runCli(
        argv,
        () => undefined,
        (l) => err.push(l),
      );
      return { status, err: err.join('\n') };
    };
    expect(await run([])).toMatchObject({ status: 2, err: expect.stringContaining('plan') });
    expect(await run(['fly'])).toMatchObject({
      status: 2,
      err: expect.stringContaining("unknown command 'fly'"),
    });
    expect(await run(['plan', '--gpu', '24GiB'])).toMatchObject({
      status: 2,
      err: expect.stringContaining('--log'),
    });
    expect(await run(['plan', '--log', 'x', '--gpu', 'lots'])).toMatchObject({
      status: 2,
      err: expect.stringContaining("'lots' is not a size"),
    });
    expect(await run(['plan', '--log', 'x', '--gpu', '1GiB', '--colour'])).toMatchObject({ status: 2 });
    const missing = await run([
      'plan',
      '--log',
      path.join(dir, 'none.log'),
      '--gpu',
      '1GiB',
      '--chart',
      path.join(dir, 'c.svg'),
    ]);
    expect(missing.status).toBe(1);
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});

describe('planner helpers', () => {
  test('sizes', () => {
    expect(parseByteSize('24GiB')).toBe(24 * GiB);
    expect(parseByteSize('80 GB')).toBe(80e9);
    expect(parseByteSize('512MiB')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('1.5GiB')).toBe(1.5 * GiB);
    expect(parseByteSize('1073741824')).toBe(GiB);
    expect(parseByteSize('0', true)).toBe(0);
    for (const bad of ['', 'GiB', '-1GiB', '24 potatoes', '0'])
      expect(() => parseByteSize(bad)).toThrow(/is not a (positive )?size/);
  });

  test('quantile by nearest rank matches sorting', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 50 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        (xs, q) => {
          const sorted = [...xs].sort((a, b) => a - b);
          expect(quantile(Float64Array.from(xs), q)).toBe(sorted[Math.ceil(q * xs.length) - 1]);
        },
      ),
    );
  });

  test('sparkline spans the range', () => {
    expect(sparkline([0, 7, 14])).toBe('▁▅█');
    expect(sparkline([5, 5])).toBe('▁▁');
    expect(sparkline([0, 10], 0, 20)).toBe('▁▅');
  });
});
