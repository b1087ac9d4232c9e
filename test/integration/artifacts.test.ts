import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { tritonNameFor } from '../../src/artifacts';
import { buildTar, resnetArtifactEntries } from '../support/archives';
import { identityConfig, resnetPtConfig, resnetTrtConfig } from '../support/model-repo';
import { S3Harness } from '../support/s3-harness';
import { request, repositoryDirs, startStack, type Stack } from '../support/agent-harness';
import { SkippingClock } from '../support/manual-clock';
import { classifierScores } from '../support/triton-emulator';
import { waitUntil } from '../support/wait';

const identityTar = (name = 'm', weights: string | Buffer = 'w') =>
  buildTar([
    { name: `${name}/config.pbtxt`, content: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }]) },
    { name: `${name}/1/model.py`, content: weights },
  ]);

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });
const dataOf = (r: { json: () => Record<string, unknown> }) =>
  (r.json() as { outputs: { data: number[] }[] }).outputs[0].data;

async function cacheEntries(stack: Stack): Promise<string[]> {
  return fs.readdir(path.join(stack.repository, '.cache', 'entries')).catch(() => []);
}

async function cacheTmp(stack: Stack): Promise<string[]> {
  return fs.readdir(path.join(stack.repository, '.cache', 'tmp')).catch(() => []);
}

describe('artifacts from S3, local archives and file:// URLs', () => {
  let s3: S3Harness;
  let stack: Stack;

  beforeAll(async () => {
    s3 = await S3Harness.start();
  });
  afterAll(async () => {
    await s3.stop();
  });
  afterEach(async () => {
    s3.clearFaults();
    await stack?.stop();
  });

  let clock = new SkippingClock();
  const start = (env: Record<string, string> = {}, emulator = {}) => {
    clock = new SkippingClock();
    return startStack({
      env: {
        ...s3.env(),
        MODEL_DATA_URL: 's3://models/resnet-mme-gpu/',
        AGENT_S3_STALL_TIMEOUT_MS: '300',
        ...env,
      },
      emulator,
      clock,
    }).then((s) => (stack = s));
  };

  test('POST /models takes a local .tar.gz, a file:// URL and an s3:// URL', async () => {
    await start();
    const tarball = path.join(stack.models, 'resnet_pt_v0.tar.gz');
    await fs.writeFile(tarball, await buildTar(resnetArtifactEntries(resnetPtConfig(), 'pt-weights')));
    await s3.put('models', 'direct/m.tar.gz', await identityTar());
    const tarDir = path.join(stack.models, 'fileurl');
    await fs.mkdir(tarDir);
    await fs.writeFile(path.join(tarDir, 'm.tgz'), await identityTar());
    for (const [name, url] of [
      ['pt', tarball],
      ['fromfileurl', pathToFileURL(path.join(tarDir, 'm.tgz')).toString()],
      ['froms3', 's3://models/direct/m.tar.gz'],
    ]) {
      const r = await request(stack.url, 'POST', '/models', { model_name: name, url });
      expect([name, r.status]).toEqual([name, 200]);
      expect(r.json()).toEqual({ modelName: name, modelUrl: url });
    }
    expect(dataOf(await request(stack.url, 'POST', '/models/froms3/invoke', int32(5)))).toEqual([5]);
    expect(await cacheEntries(stack)).toHaveLength(3);
    const missing = await request(stack.url, 'POST', '/models', {
      model_name: 'x',
      url: 's3://models/none/x.tar.gz',
    });
    expect(missing.status).toBe(400);
    expect(missing.json()).toEqual({ error: 'model artifact not found: s3://models/none/x.tar.gz' });
  });

  test('lazy loading: invoking an unknown TargetModel fetches, unpacks, loads and answers', async () => {
    await start();
    await s3.put(
      'models',
      'resnet-mme-gpu/resnet_pt_v0.tar.gz',
      await buildTar(resnetArtifactEntries(resnetPtConfig(), 'p')),
    );
    await s3.put(
      'models',
      'resnet-mme-gpu/resnet_trt_v0.tar.gz',
      await buildTar(resnetArtifactEntries(resnetTrtConfig(), 't', 'model.plan')),
    );
    const item = new Float32Array(3 * 224 * 224).map((_, i) => (i % 13) / 13);
    for (const [target, input] of [
      ['resnet_pt_v0.tar.gz', 'INPUT__0'],
      ['resnet_trt_v0.tar.gz', 'input'],
    ]) {
      const r = await request(
        stack.url,
        'POST',
        '/endpoints/resnet/invocations',
        JSON.stringify({
          inputs: [{ name: input, shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(item) }],
        }),
        { 'content-type': 'application/octet-stream', 'X-Amzn-SageMaker-Target-Model': target },
      );
      expect(r.status).toBe(200);
      expect(dataOf(r)).toEqual(Array.from(classifierScores(item, 1000)));
    }
    const list = (await request(stack.url, 'GET', '/models')).json();
    expect(list).toEqual({
      models: [
        { modelName: 'resnet_pt_v0.tar.gz', modelUrl: 's3://models/resnet-mme-gpu/resnet_pt_v0.tar.gz' },
        { modelName: 'resnet_trt_v0.tar.gz', modelUrl: 's3://models/resnet-mme-gpu/resnet_trt_v0.tar.gz' },
      ],
    });
    const status = (await request(stack.url, 'GET', '/models/resnet_pt_v0.tar.gz/status')).json();
    expect(status).toMatchObject({ modelName: 'resnet_pt_v0.tar.gz', state: 'resident', invocations: 1 });
    // Lazy loads also answer on the MME route; names that would leave the prefix are refused.
    expect((await request(stack.url, 'POST', '/models/..%2Fsecret.tar.gz/invoke', int32(1))).status).toBe(
      400,
    );
    const nf = await request(stack.url, 'POST', '/models/absent.tar.gz/invoke', int32(1));
    expect(nf.status).toBe(404);
    expect(nf.json()).toEqual({
      error: 'model artifact not found: s3://models/resnet-mme-gpu/absent.tar.gz',
    });
  });

  test('single flight: 20 concurrent cold invokes make one download and one Triton load', async () => {
    await start({}, { loadLatencyMs: 100 });
    await s3.put('models', 'resnet-mme-gpu/sf.tar.gz', await identityTar('sf', 'x'.repeat(200_000)));
    const before = s3.getCount('resnet-mme-gpu/sf.tar.gz');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => request(stack.url, 'POST', '/models/sf.tar.gz/invoke', int32(i))),
    );
    expect(results.map((r) => (r.status === 200 ? 200 : r.body.toString()))).toEqual(new Array(20).fill(200));
    results.forEach((r, i) => expect(dataOf(r)).toEqual([i]));
    expect(s3.getCount('resnet-mme-gpu/sf.tar.gz') - before).toBe(1);
    expect(stack.emulator.counters(tritonNameFor('sf.tar.gz')).loads).toBe(1);
  });

  test('different models download in parallel up to the limit', async () => {
    await start({ AGENT_FETCH_CONCURRENCY: '2' });
    const keys = ['p1', 'p2', 'p3', 'p4'];
    for (const k of keys)
      await s3.put('models', `resnet-mme-gpu/${k}.tar.gz`, await identityTar(k, 'y'.repeat(400_000)));
    s3.maxActiveGets = 0;
    s3.inject(...keys.map(() => ({ kind: 'slow' as const, chunkBytes: 64 * 1024, delayMs: 10 })));
    const results = await Promise.all(
      keys.map((k) => request(stack.url, 'POST', `/models/${k}.tar.gz/invoke`, int32(1))),
    );
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(s3.maxActiveGets).toBe(2);
  });

  test('a cold load longer than the wait answers not-ready, keeps loading, and the next call finds it', async () => {
    await start({ AGENT_COLD_LOAD_WAIT_MS: '100' }, { loadLatencyMs: 400 });
    await s3.put('models', 'resnet-mme-gpu/cold.tar.gz', await identityTar('cold'));
    const first = await request(stack.url, 'POST', '/models/cold.tar.gz/invoke', int32(3));
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toBe('1');
    expect(first.json().error).toMatch(/still loading; try again shortly/);
    const runtime = await request(stack.url, 'POST', '/endpoints/e/invocations', int32(3), {
      'X-Amzn-SageMaker-Target-Model': 'cold.tar.gz',
    });
    expect(runtime.status).toBe(429);
    expect(runtime.headers.get('x-amzn-errortype')).toBe('ModelNotReadyException');
    const status = (await request(stack.url, 'GET', '/models/cold.tar.gz/status')).json();
    expect(status.state).toBe('loading');
    // No fixed sleep: wait until the load that goes on in the background is done.
    await waitUntil(
      async () => (await request(stack.url, 'GET', '/models/cold.tar.gz/status')).json().state === 'resident',
      { timeoutMs: 5_000, what: 'the background load of cold.tar.gz done' },
    );
    const next = await request(stack.url, 'POST', '/models/cold.tar.gz/invoke', int32(3));
    expect(next.status).toBe(200);
    expect(stack.emulator.counters(tritonNameFor('cold.tar.gz')).loads).toBe(1);
  });

  test('a broken artifact: the same clear error at once, no refetch, until the artifact changes', async () => {
    await start();
    const key = 'resnet-mme-gpu/broken.tar.gz';
    const good = await identityTar('broken');
    await s3.put('models', key, good.subarray(0, good.length - 20));
    const a = await request(stack.url, 'POST', '/models/broken.tar.gz/invoke', int32(1));
    expect(a.status).toBe(400);
    expect(a.json().error).toMatch(/corrupt or truncated archive/);
    const gets = s3.getCount(key);
    const storm = await Promise.all(
      Array.from({ length: 10 }, () => request(stack.url, 'POST', '/models/broken.tar.gz/invoke', int32(1))),
    );
    for (const r of storm) expect(r.json()).toEqual(a.json());
    expect(s3.getCount(key)).toBe(gets);
    expect((await request(stack.url, 'GET', '/models/broken.tar.gz/status')).json()).toMatchObject({
      state: 'failed',
      error: a.json().error,
    });
    // Same artifact after the re-check interval: still the remembered error, still no download.
    clock.skip(1100);
    expect((await request(stack.url, 'POST', '/models/broken.tar.gz/invoke', int32(1))).status).toBe(400);
    expect(s3.getCount(key)).toBe(gets);
    // A fixed upload (new ETag) clears it.
    await s3.put('models', key, good);
    clock.skip(1100);
    const fixed = await request(stack.url, 'POST', '/models/broken.tar.gz/invoke', int32(8));
    expect(fixed.status).toBe(200);
    expect(dataOf(fixed)).toEqual([8]);
    expect(await cacheTmp(stack)).toEqual([]);
  });

  test('S3 faults: 500s, a dropped connection and a stalled body end in success', async () => {
    await start();
    const key = 'resnet-mme-gpu/faulty.tar.gz';
    // Incompressible, so the faults land mid-body of the compressed stream.
    const body = await identityTar('faulty', randomBytes(2_000_000));
    await s3.put('models', key, body);
    s3.inject(
      { kind: 'status', status: 500, code: 'InternalError' },
      { kind: 'status', status: 503, code: 'SlowDown' },
      { kind: 'drop', afterBytes: 300_000 },
      { kind: 'stall', afterBytes: 600_000 },
      { kind: 'slow', chunkBytes: 256 * 1024, delayMs: 5 },
    );
    const before = s3.getCount(key);
    const r = await request(stack.url, 'POST', '/models/faulty.tar.gz/invoke', int32(4));
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([4]);
    expect(s3.getCount(key) - before).toBe(5);
  });

  test('S3 failing on every attempt is a clean 503, and nothing is left behind', async () => {
    await start({ AGENT_S3_MAX_ATTEMPTS: '2', AGENT_S3_RESUME_ATTEMPTS: '1', AGENT_FAILURE_TTL_MS: '1000' });
    await s3.put('models', 'resnet-mme-gpu/down.tar.gz', await identityTar('down'));
    s3.inject(
      ...Array.from({ length: 10 }, () => ({ kind: 'status' as const, status: 500, code: 'InternalError' })),
    );
    const r = await request(stack.url, 'POST', '/models/down.tar.gz/invoke', int32(1));
    expect(r.status).toBe(503);
    expect(r.json().error).toMatch(/GET .*s3:\/\/models\/resnet-mme-gpu\/down\.tar\.gz failed/);
    expect(await cacheEntries(stack)).toEqual([]);
    expect(await cacheTmp(stack)).toEqual([]);
    expect(await repositoryDirs(stack.repository)).toEqual([]);
  });

  test.each([
    [
      'an absolute path',
      [{ name: '/etc/evil', content: 'x' }],
      /refused archive entry '\/etc\/evil': absolute path/,
    ],
    ['a .. component', [{ name: 'm/../../evil', content: 'x' }], /path contains '\.\.'/],
    [
      'a symlink out',
      [{ name: 'm/l', type: 'symlink' as const, linkname: '../../../etc' }],
      /symlink points outside/,
    ],
    [
      'a device',
      [{ name: 'm/tty', type: 'character-device' as const }],
      /character-device entries are not allowed/,
    ],
    ['no config.pbtxt', [{ name: 'm/1/model.pt', content: 'x' }], /no config\.pbtxt/],
  ])(
    'refuses an artifact with %s: 400 naming it, nothing left outside the cache tmp',
    async (_l, entries, message) => {
      await start();
      const ok = path.join(stack.models, 'ok.tar.gz');
      await fs.writeFile(ok, await identityTar('ok'));
      expect((await request(stack.url, 'POST', '/models', { model_name: 'ok', url: ok })).status).toBe(200);
      const bad = path.join(stack.models, 'bad.tar.gz');
      await fs.writeFile(bad, await buildTar(entries));
      const r = await request(stack.url, 'POST', '/models', { model_name: 'bad', url: bad });
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(message);
      expect(await cacheTmp(stack)).toEqual([]);
      expect(await cacheEntries(stack)).toHaveLength(1);
      expect(await repositoryDirs(stack.repository)).toEqual([tritonNameFor('ok')]);
      expect(dataOf(await request(stack.url, 'POST', '/models/ok/invoke', int32(2)))).toEqual([2]);
    },
  );

  test('an agent restart adopts what Triton still serves, removes the rest, and never refetches', async () => {
    await start();
    await s3.put('models', 'resnet-mme-gpu/keep.tar.gz', await identityTar('keep'));
    expect((await request(stack.url, 'POST', '/models/keep.tar.gz/invoke', int32(1))).status).toBe(200);
    await s3.put('models', 'resnet-mme-gpu/gone.tar.gz', await identityTar('gone'));
    expect((await request(stack.url, 'POST', '/models/gone.tar.gz/invoke', int32(1))).status).toBe(200);
    const gets = s3.getCount('resnet-mme-gpu/keep.tar.gz');
    await fs.mkdir(path.join(stack.repository, '.cache', 'tmp', 'half-written'), { recursive: true });
    await fs.mkdir(path.join(stack.repository, '.cache', 'entries', 'no-meta'), { recursive: true });
    // A new agent on the same repository and cache; Triton keeps running, but lost 'gone' meanwhile,
    // and holds a model nobody staged.
    await stack.agent.stop(100);
    const gone = tritonNameFor('gone.tar.gz');
    await stack.emulator.lifecycle.unload(gone, true);
    await stack.emulator.idle();
    await fs.mkdir(path.join(stack.repository, 'stray', '1'), { recursive: true });
    await fs.writeFile(
      path.join(stack.repository, 'stray', 'config.pbtxt'),
      identityConfig('stray', [{ type: 'TYPE_INT32', dims: [1] }]),
    );
    await fs.writeFile(path.join(stack.repository, 'stray', '1', 'model.py'), 'x');
    await stack.emulator.lifecycle.load('stray');
    const { Agent } = await import('../../src/agent');
    const agent = new Agent(stack.agent.config, stack.agent.logger);
    await agent.start();
    try {
      expect(await cacheTmp(stack)).toEqual([]);
      expect(await cacheEntries(stack)).toHaveLength(2);
      // 'keep' was adopted: listed at once, answers without a new Triton load or download.
      const listed = (await request(agent.url, 'GET', '/models')).json().models as { modelName: string }[];
      expect(listed.map((m) => m.modelName)).toEqual(['keep.tar.gz']);
      const r = await request(agent.url, 'POST', '/models/keep.tar.gz/invoke', int32(6));
      expect(r.status).toBe(200);
      expect(dataOf(r)).toEqual([6]);
      expect(stack.emulator.counters(tritonNameFor('keep.tar.gz')).loads).toBe(1);
      expect(s3.getCount('resnet-mme-gpu/keep.tar.gz')).toBe(gets);
      // Charged as resident (its bytes are what was learned of it: a 1-byte model may be charged 0).
      expect(agent.registry.ledger?.devicesOf('keep.tar.gz')).toBeDefined();
      // What it could not account for is unloaded; of the repository it removes only what it staged.
      expect(stack.emulator.loadedModels()).toEqual([tritonNameFor('keep.tar.gz')]);
      expect(await repositoryDirs(stack.repository)).toEqual([tritonNameFor('keep.tar.gz'), 'stray']);
    } finally {
      await agent.stop(100);
    }
  });

  describe('restart adoption verifies what it adopts', () => {
    /** Loads `keep` (and `other`) through S3, stops the agent; Triton keeps both loaded. */
    const servedThenStopped = async () => {
      await start();
      for (const k of ['keep', 'other']) {
        await s3.put('models', `resnet-mme-gpu/${k}.tar.gz`, await identityTar(k));
        expect((await request(stack.url, 'POST', `/models/${k}.tar.gz/invoke`, int32(1))).status).toBe(200);
      }
      await stack.agent.stop(100);
      return { keep: tritonNameFor('keep.tar.gz'), other: tritonNameFor('other.tar.gz') };
    };
    const restart = async () => {
      const { Agent } = await import('../../src/agent');
      const agent = new Agent(stack.agent.config, stack.agent.logger);
      await agent.start();
      return agent;
    };
    const listed = async (url: string) =>
      ((await request(url, 'GET', '/models')).json().models as { modelName: string; modelUrl: string }[]).map(
        (m) => [m.modelName, m.modelUrl],
      );
    const marker = (tritonName: string) =>
      path.join(stack.repository, tritonName, '.staged-by-mme-agent.json');

    test('an S3 object replaced while the agent was down: not adopted, still listed, its new version loaded on first use', async () => {
      const { keep, other } = await servedThenStopped();
      await s3.put('models', 'resnet-mme-gpu/keep.tar.gz', await identityTar('keep', 'version two'));
      const gets = s3.getCount('resnet-mme-gpu/keep.tar.gz');
      const agent = await restart();
      try {
        // Nothing was downloaded before the agent answered: the new version loads on first use.
        expect(s3.getCount('resnet-mme-gpu/keep.tar.gz')).toBe(gets);
        expect(await listed(agent.url)).toEqual([
          ['keep.tar.gz', 's3://models/resnet-mme-gpu/keep.tar.gz'],
          ['other.tar.gz', 's3://models/resnet-mme-gpu/other.tar.gz'],
        ]);
        expect(stack.emulator.loadedModels()).toEqual([other]);
        // Known, not loaded: neither resident nor evicted (it was never on the GPU in this run).
        expect((await request(agent.url, 'GET', '/models/keep.tar.gz/status')).json().state).toBe(
          'registered',
        );
        const r = await request(agent.url, 'POST', '/models/keep.tar.gz/invoke', int32(4));
        expect(r.status).toBe(200);
        expect(dataOf(r)).toEqual([4]);
        expect(s3.getCount('resnet-mme-gpu/keep.tar.gz')).toBe(gets + 1);
        expect(stack.emulator.counters(keep).loads).toBe(2);
        // Its staged files point at the new version's cache entry, which exists.
        const link = await fs.readlink(path.join(stack.repository, keep, '1'));
        expect((await fs.stat(link)).isDirectory()).toBe(true);
      } finally {
        await agent.stop(100);
      }
    });

    test('the disk cache lost an artifact: /ping is ready at once and the artifact downloads on first use', async () => {
      const { other } = await servedThenStopped();
      await fs.rm(path.join(stack.repository, '.cache', 'entries'), { recursive: true });
      const gets = s3.getCount('resnet-mme-gpu/keep.tar.gz');
      const agent = await restart();
      try {
        expect((await request(agent.url, 'GET', '/ping')).status).toBe(200);
        expect(s3.getCount('resnet-mme-gpu/keep.tar.gz')).toBe(gets);
        expect((await listed(agent.url)).map(([n]) => n)).toEqual(['keep.tar.gz', 'other.tar.gz']);
        expect((await request(agent.url, 'POST', '/models/keep.tar.gz/invoke', int32(2))).status).toBe(200);
        expect(s3.getCount('resnet-mme-gpu/keep.tar.gz')).toBe(gets + 1);
        expect(stack.emulator.loadedModels()).toContain(tritonNameFor('keep.tar.gz'));
        expect(stack.emulator.loadedModels()).not.toContain(other);
      } finally {
        await agent.stop(100);
      }
    });

    test('an edited marker url is not believed: the model is not adopted and not listed under it', async () => {
      const { keep } = await servedThenStopped();
      const m = JSON.parse(await fs.readFile(marker(keep), 'utf8')) as Record<string, string>;
      await fs.writeFile(
        marker(keep),
        JSON.stringify({ ...m, url: 's3://models/resnet-mme-gpu/other.tar.gz' }),
      );
      const agent = await restart();
      try {
        const names = await listed(agent.url);
        expect(names).toEqual([['other.tar.gz', 's3://models/resnet-mme-gpu/other.tar.gz']]);
        expect(stack.emulator.loadedModels()).not.toContain(keep);
        expect(await repositoryDirs(stack.repository)).toEqual([tritonNameFor('other.tar.gz')]);
      } finally {
        await agent.stop(100);
      }
    });

    test('a staged file replaced by a link to /etc/passwd, a FIFO as a marker or config: nothing read, not adopted', async () => {
      const { keep, other } = await servedThenStopped();
      // keep's version directory now links elsewhere; other's config is a FIFO (reading it would hang).
      await fs.rm(path.join(stack.repository, keep, '1'));
      await fs.symlink('/etc/passwd', path.join(stack.repository, keep, '1'));
      await fs.rm(path.join(stack.repository, other, 'config.pbtxt'));
      execFileSync('mkfifo', [path.join(stack.repository, other, 'config.pbtxt')]);
      const agent = await restart();
      try {
        expect((await request(agent.url, 'GET', '/ping')).status).toBe(200);
        expect(stack.emulator.loadedModels()).toEqual([]);
        // Both are still the caller's models: listed, and restaged from their sources on first use.
        expect((await listed(agent.url)).map(([n]) => n)).toEqual(['keep.tar.gz', 'other.tar.gz']);
        const r = await request(agent.url, 'POST', '/models/keep.tar.gz/invoke', int32(8));
        expect(dataOf(r)).toEqual([8]);
        expect(await fs.readlink(path.join(stack.repository, keep, '1'))).not.toBe('/etc/passwd');
      } finally {
        await agent.stop(100);
      }
    });
  });

  test('an archive that unpacks to more than the whole disk cache stops there: refused, remembered, nothing kept', async () => {
    await start({ MODEL_CACHE_BYTES: '1000000' });
    // 8 MB of zeros: a few KB gzipped, eight times the cache.
    await s3.put('models', 'resnet-mme-gpu/bomb.tar.gz', await identityTar('bomb', Buffer.alloc(8_000_000)));
    const r = await request(stack.url, 'POST', '/models/bomb.tar.gz/invoke', int32(1));
    // Not 507: no eviction can make room for it, and SageMaker must not take it for a full instance.
    expect(r.status).toBe(400);
    // Refused while unpacking (after about 1 MB written), not once all 8 MB were on disk.
    expect(r.json().error).toMatch(
      /more than the whole disk cache \(MODEL_CACHE_BYTES=1000000\); unpacking stopped here/,
    );
    expect(await cacheEntries(stack)).toEqual([]);
    expect(await cacheTmp(stack)).toEqual([]);
    // The next artifact that fits is unaffected.
    await s3.put('models', 'resnet-mme-gpu/small.tar.gz', await identityTar('small'));
    expect((await request(stack.url, 'POST', '/models/small.tar.gz/invoke', int32(3))).status).toBe(200);
  });

  test('the disk budget evicts unused artifacts LRU-first and never one a loaded model holds', async () => {
    const big = 'z'.repeat(400_000);
    await start({ MODEL_CACHE_BYTES: '1000000' });
    for (const k of ['c1', 'c2'])
      await s3.put('models', `resnet-mme-gpu/${k}.tar.gz`, await identityTar(k, big));
    const sagemakerDir = path.join(stack.models, 'sm', 'model');
    await fs.mkdir(path.join(sagemakerDir, 'm', '1'), { recursive: true });
    await fs.writeFile(
      path.join(sagemakerDir, 'm', 'config.pbtxt'),
      identityConfig('m', [{ type: 'TYPE_INT32', dims: [1] }]),
    );
    await fs.writeFile(path.join(sagemakerDir, 'm', '1', 'model.py'), big);
    expect(
      (await request(stack.url, 'POST', '/models', { model_name: 'sm', url: sagemakerDir })).status,
    ).toBe(200);
    expect((await request(stack.url, 'POST', '/models/c1.tar.gz/invoke', int32(1))).status).toBe(200);
    expect((await request(stack.url, 'POST', '/models/c2.tar.gz/invoke', int32(1))).status).toBe(200);
    // Both held by loaded models: a third artifact cannot fit.
    await s3.put('models', 'resnet-mme-gpu/c3.tar.gz', await identityTar('c3', big));
    const full = await request(stack.url, 'POST', '/models/c3.tar.gz/invoke', int32(1));
    expect(full.status).toBe(507);
    expect(full.json().error).toMatch(/No space left in the disk cache/);
    // Unloading c1 releases its artifact, which is then the LRU victim.
    expect((await request(stack.url, 'DELETE', '/models/c1.tar.gz')).status).toBe(200);
    expect((await request(stack.url, 'POST', '/models/c3.tar.gz/invoke', int32(1))).status).toBe(200);
    expect(await cacheEntries(stack)).toHaveLength(2);
    expect(dataOf(await request(stack.url, 'POST', '/models/c2.tar.gz/invoke', int32(9)))).toEqual([9]);
    // SageMaker's directory was never touched.
    expect(await fs.readFile(path.join(sagemakerDir, 'm', '1', 'model.py'), 'utf8')).toBe(big);
  });
});
