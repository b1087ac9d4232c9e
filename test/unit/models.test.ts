/**
 * The registry's parts on their own, against a hand-written fake Triton and a manual clock: no sockets,
 * no sleeps, milliseconds per test.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {
  tritonNameFor,
  type ArtifactFetcher,
  type LocalArtifact,
  type StagedModel,
  type Stager,
} from '../../src/artifacts';
import { AgentError, ErrorCode } from '../../src/errors';
import {
  Admission,
  FailureMemory,
  Footprints,
  GpuLedger,
  LruPolicy,
  ModelRegistry,
  placementOf,
  type ModelRecord,
  type RegistryOptions,
} from '../../src/models';
import { silentLogger } from '../../src/observability';
import { FakeTriton } from '../support/fake-triton';
import { emptyGpus } from '../support/gpu-sample';
import { ManualClock, settle } from '../support/manual-clock';
import { tempDir } from '../support/model-repo';
import { waitUntil, within } from '../support/wait';

const options: RegistryOptions = {
  modelDataUrl: undefined,
  coldLoadWaitMs: 1000,
  failureTtlMs: 30_000,
  loadTimeoutMs: 1000,
  invokeTimeoutMs: 1000,
  unloadTimeoutMs: 1000,
  unloadDrainTimeoutMs: 500,
  unloadPollMs: 10,
  oomRetries: 2,
  idleUnloadMs: 0,
};

let work: { dir: string; cleanup: () => Promise<void> };
let artifactDir: string;

beforeAll(async () => {
  work = await tempDir('models-unit-');
  artifactDir = path.join(work.dir, 'artifact');
  await fs.mkdir(path.join(artifactDir, 'm', '1'), { recursive: true });
  await fs.writeFile(path.join(artifactDir, 'm', 'config.pbtxt'), 'backend: "python"\n');
});
afterAll(async () => {
  await work.cleanup();
});

/** Artifacts whose size (the estimate's basis) is in the url: `mem://<name>/<bytes>`. */
class FakeFetcher {
  fetches = 0;
  held = 0;
  async fetch(url: string): Promise<LocalArtifact> {
    this.fetches++;
    this.held++;
    let released = false;
    return {
      dir: artifactDir,
      info: { url, kind: 'directory', size: 0, version: 'v1' },
      entry: undefined,
      bytes: Number(url.split('/').pop()),
      fetchMs: 0,
      release: () => {
        if (!released) this.held--;
        released = true;
      },
    };
  }
  async describe(url: string) {
    return { url, kind: 'directory' as const, size: 0, version: 'v1' };
  }
}

class FakeStager implements Stager {
  readonly staged = new Set<string>();
  async stage(_layout: unknown, tritonName: string): Promise<StagedModel> {
    this.staged.add(tritonName);
    return { tritonName, memberNames: [], dirs: [tritonName] };
  }
  async remove(staged: StagedModel): Promise<void> {
    this.staged.delete(staged.tritonName);
  }
  async findIntact(_layout: unknown, tritonName: string): Promise<StagedModel | undefined> {
    return this.staged.has(tritonName) ? { tritonName, memberNames: [], dirs: [tritonName] } : undefined;
  }
  readonly placed: [string, readonly number[]][] = [];
  async place(_layout: unknown, staged: StagedModel, gpus: readonly number[]): Promise<void> {
    this.placed.push([staged.tritonName, gpus]);
  }
}

function build(opts: { total?: number; registry?: Partial<RegistryOptions>; maxResident?: number } = {}) {
  const clock = new ManualClock();
  const triton = new FakeTriton(opts.total ?? 100);
  const fetcher = new FakeFetcher();
  const stager = new FakeStager();
  const registry = new ModelRegistry(
    {
      triton,
      stager,
      fetcher: fetcher as unknown as ArtifactFetcher,
      capacity: {
        probe: {
          read: async () => [{ uuid: 'GPU-0', usedBytes: triton.usedBytes(), totalBytes: triton.totalBytes }],
        },
        policy: new LruPolicy({ churnGuard: 0 }),
        headroomBytes: 0,
        maxResident: opts.maxResident ?? 0,
        footprintFactor: 1,
        metricsIntervalMs: 1000,
        releaseWaitMs: 5000,
        footprintsFile: path.join(work.dir, `footprints-${Math.random()}.json`),
        // This fake GPU counts bytes exactly.
        readingStepBytes: 1,
      },
      logger: silentLogger(),
      clock,
    },
    { ...options, ...opts.registry },
  );
  return { clock, triton, fetcher, stager, registry };
}

type Built = ReturnType<typeof build>;

async function open(b: Built) {
  const opened = b.registry.open();
  await settle();
  await opened;
}

const url = (name: string, bytes: number) => `mem://${name}/${bytes}`;

/**
 * Moves the manual clock on, a metrics interval at a time, until `p` settles (at most a minute). The clock
 * moves only while no load is fetching or staging: those phases read the disk in real time, and a clock
 * run on meanwhile would spend a load's cold-load wait before the load had begun to wait.
 */
async function driveUntil(b: Built, p: Promise<unknown>): Promise<void> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  const onDisk = () =>
    b.registry
      .list()
      .map((r) => r.name)
      .filter((n) => ['fetching', 'staging'].includes(b.registry.status(n)?.state ?? ''));
  for (let i = 0; i < 60 && !done; i++) {
    await settle();
    await waitUntil(() => done || onDisk().length === 0, {
      timeoutMs: 5_000,
      what: 'the loads done with the disk',
      detail: () => `still there: ${onDisk().join(', ')}`,
    });
    if (!done) await b.clock.advance(1000);
  }
  await within(p, { timeoutMs: 5_000, what: 'the load settling once the clock has stopped' });
}

/** Waits (real time, briefly) until a model's load reaches `state`: its fetch and staging touch the disk. */
async function until(b: Built, name: string, state: string): Promise<void> {
  await waitUntil(() => b.registry.status(name)?.state === state, {
    timeoutMs: 2_000,
    what: `${name} ${state}`,
    detail: () => `it is ${b.registry.status(name)?.state}`,
  });
  expect(b.registry.status(name)?.state).toBe(state);
}
const tname = (b: Built, name: string) => b.registry.get(name)?.tritonName ?? '';

describe('lifecycle: the one load path', () => {
  test('concurrent requests for a cold model share one fetch and one Triton load', async () => {
    const b = build();
    await open(b);
    await b.registry.load('a', url('a', 10));
    b.registry.list(); // listed
    const rec = b.registry.get('a') as ModelRecord;
    // Triton loses it (restart): the next requests reload it once, through the same path.
    b.triton.restart();
    const leases = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const l = await b.registry.acquire('a');
        const out = await b.registry.infer(l, { inputs: [] });
        l.release();
        return out;
      }),
    );
    expect(leases).toHaveLength(5);
    expect(b.triton.count(`load:${rec.tritonName}`)).toBe(2);
    expect(b.fetcher.fetches).toBe(2);
    expect(rec.loads).toBe(2);
  });

  test('a failed first load undoes everything: staged files, artifact hold, reservation, the name', async () => {
    const b = build();
    await open(b);
    const t = 'bad';
    b.triton.failNextLoad(
      tritonNameFor(t),
      `load failed for model '${tritonNameFor(t)}': Invalid argument: unable to find 'model.py'`,
    );
    const err = (await b.registry.load(t, url(t, 10)).catch((e: unknown) => e)) as AgentError;
    expect(err.code).toBe(ErrorCode.InvalidModel);
    // The error names the user's model, not the Triton name.
    expect(err.message).toBe(
      "model 'bad' failed to load: load failed for model 'bad': Invalid argument: unable to find 'model.py'",
    );
    expect(b.registry.get(t)).toBeUndefined();
    expect(b.stager.staged.size).toBe(0);
    expect(b.fetcher.held).toBe(0);
    // Its reservation is held until a sample shows whether the failed load left memory behind...
    expect(b.registry.ledger?.free()).toBe(90);
    expect(b.registry.ledger?.holding()).toBe(true);
    // ... and this one, a metrics interval later, shows it did not.
    await b.clock.advance(1000);
    expect(b.registry.ledger?.holding()).toBe(false);
    expect(b.registry.ledger?.free()).toBe(100);
    await expect(b.registry.load(t, url(t, 10))).resolves.toBeDefined();
  });

  test('Triton out of memory despite the estimate: evict more, retry, learn a lower bound', async () => {
    // Its wait for a sample after the failure is a metrics interval (1 s here) of the cold-load wait.
    const b = build({ registry: { coldLoadWaitMs: 5000 } });
    await open(b);
    for (const m of ['a', 'b', 'c']) {
      b.triton.sizes.set(tritonNameFor(m), 30);
      await b.registry.load(m, url(m, 30));
    }
    // Declares 5 bytes (estimate 5) but takes 40 in Triton.
    b.triton.sizes.set(tritonNameFor('liar'), 40);
    // After the failure it waits for a sample taken a metrics interval later: time moves on.
    const loading = b.registry.load('liar', url('liar', 5));
    await driveUntil(b, loading);
    expect(b.triton.loaded()).toContain(tname(b, 'liar'));
    expect(b.triton.usedBytes()).toBeLessThanOrEqual(100);
    expect(b.triton.count(`load:${tname(b, 'liar')}`)).toBe(2);
    // The failure taught a lower bound: more than the 10 free to it (its 5 and the 5 beside them).
    expect(b.registry.status('liar')?.footprintBytes).toBe(11);
    expect(b.registry.status('liar')?.footprintMeasured).toBe(false);
  });

  test('a footprint the backend reports (memory_usage) is learned after the answer and corrects the ledger', async () => {
    const b = build();
    await open(b);
    b.triton.reportMemoryUsage = true;
    b.triton.sizes.set(tritonNameFor('m'), 40);
    await b.registry.load('m', url('m', 5));
    await settle();
    expect(b.registry.status('m')).toMatchObject({ footprintBytes: 40, footprintMeasured: true });
    expect(b.registry.ledger?.bytes('resident')).toBe(40);
  });

  test('an unload waits for requests in flight, but only until the drain timeout', async () => {
    const b = build();
    await open(b);
    await b.registry.load('a', url('a', 10));
    const lease = await b.registry.acquire('a');
    const unloading = b.registry.unload('a');
    await settle();
    expect(b.triton.count(`unload:${tname(b, 'a')}`)).toBe(0);
    await b.clock.advance(499);
    expect(b.triton.calls.filter((c) => c.startsWith('unload:'))).toHaveLength(0);
    await b.clock.advance(1);
    await unloading;
    expect(b.registry.get('a')).toBeUndefined();
    lease.release();
  });

  test('an unload starts as soon as the last request ends', async () => {
    const b = build();
    await open(b);
    await b.registry.load('a', url('a', 10));
    const lease = await b.registry.acquire('a');
    const unloading = b.registry.unload('a');
    await settle();
    lease.release();
    await unloading;
    expect(b.triton.loaded()).toEqual([]);
  });
});

describe('regressions found in review', () => {
  test('a Triton restart during a load keeps that load reserved; it ends resident and charged', async () => {
    const b = build();
    await open(b);
    await b.registry.load('old', url('old', 20));
    const release = b.triton.holdNextLoad(tritonNameFor('a'));
    const loading = b.registry.load('a', url('a', 60));
    await until(b, 'a', 'loading');
    b.triton.restart();
    await b.registry.restoreAfterTritonRestart();
    release();
    await loading;
    expect(b.registry.ledger?.chargeOf('a')).toBe(60);
    expect(b.registry.ledger?.stateOf('a')).toBe('resident');
  });

  test('names that never load (a bad TargetModel) leave no trace in the eviction policy', async () => {
    const b = build({ registry: { modelDataUrl: 'mem://' } });
    await open(b);
    b.fetcher.fetch = async (u: string) => {
      throw new AgentError(ErrorCode.ArtifactNotFound, `model artifact not found: ${u}`);
    };
    for (let i = 0; i < 50; i++) await expect(b.registry.acquire(`junk-${i}`)).rejects.toBeDefined();
    const facts = (b.registry.policy as unknown as { facts: Map<string, unknown> }).facts;
    expect(facts.size).toBe(0);
    expect(b.registry.size).toBe(0);
  });

  test('a lazy model deleted while a request waits for it is loaded anew for that request, not a 404', async () => {
    const b = build({ registry: { modelDataUrl: 'mem://' } });
    await open(b);
    b.fetcher.fetch = (async (u: string) => {
      const a = await new FakeFetcher().fetch(`${u}/10`);
      return { ...a, info: { ...a.info, url: u } };
    }) as FakeFetcher['fetch'];
    const release = b.triton.holdNextLoad(tritonNameFor('lazy'));
    const waiting = b.registry.acquire('lazy');
    await until(b, 'lazy', 'loading');
    const deleting = b.registry.unload('lazy');
    release();
    await deleting;
    const lease = await waiting;
    expect(lease.record.name).toBe('lazy');
    expect(lease.cold).toBe(true);
    lease.release();
  });

  test('two loads of one name in the same turn: the second is a 409, not a second Triton load', async () => {
    const b = build();
    await open(b);
    const [x, y] = await Promise.allSettled([
      b.registry.load('a', url('a', 10)),
      b.registry.load('a', url('a', 10)),
    ]);
    expect([x.status, y.status].sort()).toEqual(['fulfilled', 'rejected']);
    expect(b.triton.count(`load:${tritonNameFor('a')}`)).toBe(1);
  });

  test('an out-of-memory lower bound wins over a footprint measured too small', () => {
    const fp = new Footprints({ factor: 1, file: path.join(work.dir, 'fp3.json') });
    fp.measure('k', 10);
    fp.needsMoreThan('k', 50);
    expect(fp.estimate('k', undefined, 1)).toBe(51);
  });

  test("a reload's transient second copy is not counted as a model against the resident limit", () => {
    const l = new GpuLedger({ headroomBytes: 0, metricsIntervalMs: 100, releaseWaitMs: 0 }, () => 0);
    l.reserve('m', 10, [0]);
    l.settle('m');
    l.reserve('m\u0000rescale', 10, [0, 1], { transient: true });
    expect(l.count()).toBe(1);
  });
});

describe('admission: accounting first', () => {
  test('a swap evicts the least recently used model and never waits for a metrics sample', async () => {
    const b = build();
    await open(b);
    for (const m of ['a', 'b', 'c']) await b.registry.load(m, url(m, 30));
    const lease = await b.registry.acquire('a');
    lease.release();
    // No clock movement at all: the decision uses the ledger, not a fresh sample.
    await b.registry.load('d', url('d', 30));
    expect(b.triton.loaded()).toEqual([tname(b, 'a'), tname(b, 'c'), tname(b, 'd')].sort());
    expect(b.registry.get('b')?.state).toBe('evicted');
  });

  test('a load that fits alone waits for an unload in flight instead of answering 507', async () => {
    const b = build();
    await open(b);
    for (const m of ['a', 'b', 'c']) await b.registry.load(m, url(m, 30));
    const release = b.triton.holdUnloads();
    const loading = b.registry.load('d', url('d', 30));
    await until(b, 'd', 'waiting-for-capacity');
    release();
    await b.clock.advance(10); // the unload poll backs off from 2 ms
    await loading;
    expect(b.triton.loaded()).toContain(tname(b, 'd'));
  });

  test('concurrent loads that together do not fit: both end resident one after the other, never over', async () => {
    const b = build();
    await open(b);
    await b.registry.load('a', url('a', 30));
    const [x, y] = await Promise.allSettled([
      b.registry.load('x', url('x', 60)),
      b.registry.load('y', url('y', 60)),
    ]);
    expect([x.status, y.status]).toEqual(['fulfilled', 'fulfilled']);
    expect(b.triton.usedBytes()).toBeLessThanOrEqual(100);
    expect(b.triton.loaded()).toHaveLength(1);
  });

  test('pinned models are waited for, and 507 comes only at the deadline, saying why', async () => {
    const b = build({ registry: { coldLoadWaitMs: 200 } });
    await open(b);
    const leases = [];
    for (const m of ['a', 'b', 'c']) {
      await b.registry.load(m, url(m, 30));
      leases.push(await b.registry.acquire(m));
    }
    const loading = b.registry.load('d', url('d', 30)).catch((e: unknown) => e);
    await until(b, 'd', 'waiting-for-capacity');
    await b.clock.advance(200);
    const err = (await loading) as AgentError;
    expect(err.code).toBe(ErrorCode.InsufficientCapacity);
    expect(err.message).toMatch(
      /by the cold-load deadline: it needs 30 bytes and 10 bytes are free\. The ledger: 90 bytes resident/,
    );
    expect(err.message).toMatch(/3 resident model\(s\) holding 90 bytes are pinned/);
    for (const l of leases) l.release();
  });

  test('all memory kept as headroom: the 507 says so instead of "needs 0 MiB, more than 0 MiB"', async () => {
    const b = build({ total: 100 });
    await open(b);
    const l = b.registry.ledger as GpuLedger;
    (l.options as { headroomBytes: number }).headroomBytes = 100;
    await expect(b.registry.load('a', url('a', 10))).rejects.toThrow(
      /all of this GPU's memory is kept free as headroom/,
    );
  });

  test('a model larger than the GPU is refused at once and evicts nobody', async () => {
    const b = build();
    await open(b);
    await b.registry.load('a', url('a', 30));
    await expect(b.registry.load('huge', url('huge', 150))).rejects.toMatchObject({
      code: ErrorCode.InsufficientCapacity,
    });
    expect(b.triton.loaded()).toEqual([tname(b, 'a')]);
  });

  test('the resident-count limit evicts even when memory would fit', async () => {
    const b = build({ maxResident: 2 });
    await open(b);
    for (const m of ['a', 'b', 'c']) await b.registry.load(m, url(m, 10));
    expect(b.triton.loaded()).toEqual([tname(b, 'b'), tname(b, 'c')].sort());
  });

  test('Triton restart: resident models come back, most recently used first', async () => {
    const b = build();
    await open(b);
    for (const m of ['a', 'b', 'c']) await b.registry.load(m, url(m, 10));
    for (const m of ['c', 'a', 'b']) (await b.registry.acquire(m)).release();
    b.triton.restart();
    b.triton.calls.length = 0;
    await b.registry.restoreAfterTritonRestart();
    expect(b.triton.calls.filter((c) => c.startsWith('load:'))).toEqual(
      ['b', 'a', 'c'].map((m) => `load:${tname(b, m)}`),
    );
  });
});

describe('the GPU ledger', () => {
  const ledger = () =>
    new GpuLedger({ headroomBytes: 10, metricsIntervalMs: 100, releaseWaitMs: 1000 }, () => now);
  let now = 0;

  test('charges follow a model from reserved to resident to freeing to gone', () => {
    const l = ledger();
    l.observe({ at: 0, devices: [{ uuid: 'a', usedBytes: 0, totalBytes: 100 }] });
    expect(l.free()).toBe(90);
    l.reserve('m', 30);
    expect(l.free()).toBe(60);
    l.settle('m');
    l.startFreeing('m');
    expect([l.bytes('resident'), l.bytes('freeing'), l.free()]).toEqual([0, 30, 60]);
    l.release('m');
    expect(l.free()).toBe(90);
  });

  test('used memory no charge explains is subtracted; recently released memory is waited for', () => {
    now = 0;
    const l = ledger();
    l.reserve('m', 30);
    l.settle('m');
    l.observe({ at: 0, devices: [{ uuid: 'a', usedBytes: 50, totalBytes: 100 }] });
    expect(l.unaccounted()).toBe(20);
    expect(l.free()).toBe(40);
    now = 500;
    l.release('m');
    // Just after the release a sample may still show it: it is explained, not unaccounted.
    l.observe({ at: 550, devices: [{ uuid: 'a', usedBytes: 50, totalBytes: 100 }] });
    expect(l.unaccounted()).toBe(20);
    now = 700;
    l.observe({ at: 700, devices: [{ uuid: 'a', usedBytes: 50, totalBytes: 100 }] });
    expect(l.unaccounted()).toBe(50);
    expect(l.lagging()).toBe(30);
  });

  test('a learned release lag keeps just-released memory out of what is free until it comes back', () => {
    now = 0;
    const l = ledger();
    l.observe({ at: 0, devices: [{ uuid: 'a', usedBytes: 0, totalBytes: 100 }] });
    l.reserve('m', 30);
    l.settle('m');
    now = 100;
    l.release('m');
    expect(l.free()).toBe(90); // nothing learned yet: free at once
    l.learnReleaseLag(150);
    now = 120;
    l.release('x'); // unknown: no effect
    expect(l.settling(0)).toBe(30);
    expect(l.free()).toBe(60);
    expect(l.untilSettled()).toBe(130);
    now = 251;
    expect(l.free()).toBe(90);
    expect(l.untilSettled()).toBe(Infinity);
  });

  test('every model is charged on every device: free is the smallest over devices', () => {
    const l = ledger();
    l.observe({
      at: 0,
      devices: [
        { uuid: 'a', usedBytes: 0, totalBytes: 100 },
        { uuid: 'b', usedBytes: 40, totalBytes: 100 },
      ],
    });
    expect(l.free()).toBe(50);
  });
});

describe('admission decisions alone', () => {
  test('decisions are synchronous: two admissions never count the same free bytes', async () => {
    const clock = new ManualClock();
    const l = new GpuLedger({ headroomBytes: 0, metricsIntervalMs: 100, releaseWaitMs: 0 }, () =>
      clock.now(),
    );
    l.observe({ at: 0, devices: [{ uuid: 'a', usedBytes: 0, totalBytes: 100 }] });
    const admission = new Admission(
      l,
      new LruPolicy({ churnGuard: 0 }),
      { evictable: () => false, evict: () => undefined, pinned: () => ({ count: 0, bytes: 0 }) },
      clock,
      silentLogger(),
      { maxResident: 0 },
    );
    const rec = (name: string) =>
      ({ name, placement: { kind: 'all' }, victims: [] }) as unknown as ModelRecord;
    const ctl = new AbortController();
    await admission.admit(rec('x'), 60, clock.now() + 1000, ctl.signal);
    const second = admission.admit(rec('y'), 60, clock.now() + 1000, ctl.signal).catch((e: unknown) => e);
    // Nothing evictable, nothing pinned, but a reservation in flight: it waits for that load to settle.
    await settle();
    l.cancel('x');
    await second;
    expect(l.bytes('reserved')).toBe(60);
  });
});

describe('footprints', () => {
  test('settled readings teach a footprint in both directions, and measured ones are kept on disk', async () => {
    const file = path.join(work.dir, 'fp.json');
    const MiB = 1024 * 1024;
    const fp = new Footprints({ factor: 2, file });
    // No model yet: the reading is the device's base.
    fp.observe([{ uuid: 'a', usedBytes: 300 * MiB, keys: [] }]);
    expect(fp.base('a')).toBe(300 * MiB);
    // A guess from the file (2 × 10 MiB), far from the 35 MiB it takes: a few readings correct it.
    expect(fp.estimate('k', undefined, 10 * MiB)).toBe(20 * MiB);
    for (let i = 0; i < 3; i++) fp.observe([{ uuid: 'a', usedBytes: 335 * MiB, keys: ['k'] }]);
    expect(Math.abs(fp.estimate('k', undefined, 10 * MiB) - 35 * MiB)).toBeLessThan(MiB);
    expect(fp.learned('k')).toBe(true);
    // A declared size too large (80 MiB) comes down as well.
    expect(fp.estimate('d', 80 * MiB, 1)).toBe(80 * MiB);
    for (let i = 0; i < 5; i++) fp.observe([{ uuid: 'a', usedBytes: 365 * MiB, keys: ['k', 'd'] }]);
    expect(Math.abs(fp.estimate('d', 80 * MiB, 1) - 30 * MiB)).toBeLessThan(2 * MiB);
    await fp.flushed();
    const kept = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, number>;
    expect(Object.keys(kept).sort()).toEqual(['d', 'k']);
    const again = new Footprints({ factor: 2, file });
    await again.open();
    expect(again.learned('k')).toBe(true);
    expect(Math.abs(again.estimate('k', undefined, 1) - 35 * MiB)).toBeLessThan(MiB);
  });

  test('an out-of-memory failure teaches a lower bound above the estimate', () => {
    const fp = new Footprints({ factor: 1, file: path.join(work.dir, 'fp2.json') });
    fp.needsMoreThan('k', 50);
    expect(fp.estimate('k', 10, 10)).toBe(51);
  });
});

describe('failure memory', () => {
  test('remembers for its TTL on the injected clock', async () => {
    const clock = new ManualClock();
    const mem = new FailureMemory(1000, clock);
    mem.remember('m', new AgentError(ErrorCode.InvalidModel, 'broken'), 'v1');
    expect(mem.recall('m')?.version).toBe('v1');
    await clock.advance(999);
    expect(mem.recall('m')).toBeDefined();
    await clock.advance(1);
    expect(mem.recall('m')).toBeUndefined();
  });
});

describe('placement on several GPUs', () => {
  test('placementOf: CPU stays CPU; named GPUs kept unless ignored; none named: the mode decides', () => {
    const gpu = (gpus: number[], count = 1) => ({ kind: 'KIND_GPU', count, gpus });
    const cpu = { kind: 'KIND_CPU', count: 2, gpus: [] };
    for (const mode of ['adaptive', 'pack', 'triton-default'] as const)
      for (const artifactGpus of ['respect', 'ignore'] as const)
        expect(placementOf([cpu], mode, artifactGpus)).toEqual({ kind: 'cpu' });
    expect(placementOf([gpu([2]), gpu([0])], 'adaptive')).toEqual({ kind: 'fixed', devices: [0, 2] });
    expect(placementOf([gpu([2])], 'adaptive', 'ignore')).toEqual({ kind: 'choose', unpin: true });
    expect(placementOf([gpu([2])], 'triton-default', 'ignore')).toEqual({ kind: 'all', unpin: true });
    // One group names GPUs, another does not: not fully pinned, so the mode decides.
    expect(placementOf([gpu([1]), gpu([])], 'pack')).toEqual({ kind: 'choose' });
    expect(placementOf([gpu([1]), gpu([])], 'triton-default')).toEqual({ kind: 'all' });
    expect(placementOf([gpu([1]), gpu([])], 'triton-default', 'ignore')).toEqual({
      kind: 'all',
      unpin: true,
    });
    expect(placementOf([], 'adaptive', 'ignore')).toEqual({ kind: 'choose' });
    expect(placementOf([], 'triton-default', 'ignore')).toEqual({ kind: 'all' });
  });

  const MiB = 1;
  function setup(devices: number, total = 100) {
    const clock = new ManualClock();
    const ledger = new GpuLedger({ headroomBytes: 0, metricsIntervalMs: 100, releaseWaitMs: 0 }, () =>
      clock.now(),
    );
    ledger.observe(emptyGpus(devices, total));
    const policy = new LruPolicy({ churnGuard: 0 });
    const evicted: string[] = [];
    const admission = new Admission(
      ledger,
      policy,
      {
        evictable: (n) => ledger.stateOf(n) === 'resident',
        evict: (n) => {
          evicted.push(n);
          ledger.startFreeing(n);
        },
        pinned: () => ({ count: 0, bytes: 0 }),
      },
      clock,
      silentLogger(),
      { maxResident: 0 },
    );
    const ctl = new AbortController();
    const admit = async (name: string, bytes: number, placement: ModelRecord['placement']) => {
      const rec = { name, placement, victims: [] } as unknown as ModelRecord;
      policy.onAccess(name, bytes, 1000, clock.now());
      const devices = await admission.admit(rec, bytes, clock.now() + 1000, ctl.signal);
      ledger.settle(name);
      policy.onAdmit(name, clock.now());
      return devices;
    };
    return { ledger, admit, evicted, clock };
  }

  test('pack: a 4-GPU instance holds four times the models, each on one GPU, best fit first', async () => {
    const { admit, evicted, ledger } = setup(4);
    const placed: unknown[] = [];
    for (let i = 0; i < 12; i++) placed.push(await admit(`m${i}`, 30 * MiB, { kind: 'choose' }));
    expect(evicted).toEqual([]);
    expect(placed).toEqual([[0], [0], [0], [1], [1], [1], [2], [2], [2], [3], [3], [3]]);
    expect([0, 1, 2, 3].map((d) => ledger.charged(d))).toEqual([90, 90, 90, 90]);
  });

  test('triton-default: every model on every GPU, so the fourth model evicts', async () => {
    const { admit, evicted } = setup(4);
    for (let i = 0; i < 3; i++) expect(await admit(`m${i}`, 30, { kind: 'all' })).toBe('all');
    const pending = admit('m3', 30, { kind: 'all' });
    await settle();
    expect(evicted).toEqual(['m0']);
    expect(pending).toBeDefined();
  });

  test('eviction frees room on the device that needs it', async () => {
    const { admit, evicted, ledger } = setup(2);
    await admit('a', 60, { kind: 'fixed', devices: [0] });
    await admit('b', 60, { kind: 'fixed', devices: [1] });
    await admit('c', 30, { kind: 'fixed', devices: [1] });
    // d must go on device 1 (its artifact says so): only models there are candidates, LRU first.
    void admit('d', 50, { kind: 'fixed', devices: [1] });
    await settle();
    expect(evicted).toEqual(['b']);
    expect(ledger.charged(0)).toBe(60);
  });

  test('a model that fits on no single GPU is refused at once; a CPU model takes no GPU memory', async () => {
    const { admit, ledger } = setup(4);
    await expect(admit('huge', 150, { kind: 'choose' })).rejects.toMatchObject({
      code: ErrorCode.InsufficientCapacity,
    });
    expect(await admit('cpu', 500, { kind: 'cpu' })).toEqual([]);
    expect([0, 1, 2, 3].map((d) => ledger.freeOn(d))).toEqual([100, 100, 100, 100]);
  });
});

describe('scalerPeriods: an event for "n scaler periods have been decided"', () => {
  test('refused at once where no scaler runs (pack placement); settled when the registry closes', async () => {
    const packed = build({ registry: { placement: 'pack' } });
    await expect(packed.registry.scalerPeriods(1)).rejects.toThrow('the adaptive scaler is not running');
    packed.registry.close();
    // One GPU: no period is decided, so a waiter would wait until the agent stops, and then stops waiting.
    const adaptive = build();
    await open(adaptive);
    const waiting = adaptive.registry.scalerPeriods(1).then(
      () => 'resolved',
      (err: Error) => err.message,
    );
    await adaptive.clock.advance(10_000);
    adaptive.registry.close();
    expect(await waiting).toBe('the agent stopped');
  });
});
