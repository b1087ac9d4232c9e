import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { S3Source } from '../../src/artifacts';
import { buildTar } from '../support/archives';
import { identityConfig } from '../support/model-repo';
import { S3Harness } from '../support/s3-harness';
import { S3Proxy, VersionedS3, type ProxiedRequest } from '../support/s3-hostile';
import { request, startStack, type Stack } from '../support/agent-harness';
import { ManualClock, SkippingClock } from '../support/manual-clock';
import { waitUntil } from '../support/wait';

/** An identity model whose weights file holds `weights` (random bytes: compression cannot shrink them). */
const artifact = (name: string, weights: Buffer, gzip: boolean) =>
  buildTar(
    [
      { name: `${name}/config.pbtxt`, content: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }]) },
      { name: `${name}/1/model.py`, content: weights },
    ],
    gzip,
  );

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });
const dataOf = (r: { json: () => Record<string, unknown> }) =>
  (r.json() as { outputs: { data: number[] }[] }).outputs[0].data;

/** Waits (bounded) until `cond` holds. */
const until = (cond: () => boolean, what: string, ms = 10_000) => waitUntil(cond, { timeoutMs: ms, what });

const cacheDir = (stack: Stack, sub: 'entries' | 'tmp') => path.join(stack.repository, '.cache', sub);
const list = (dir: string) => fs.readdir(dir).catch(() => [] as string[]);

/** A digest to compare megabytes by (jest compares buffers byte by byte, slowly). */
const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The digest of the weights file of every cached copy of model `name`. */
async function cachedWeights(stack: Stack, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await list(cacheDir(stack, 'entries'))) {
    const f = path.join(cacheDir(stack, 'entries'), e, 'content', name, '1', 'model.py');
    const b = await fs.readFile(f).catch(() => undefined);
    if (b) out.push(digest(b));
  }
  return out;
}

const rangeStart = (r: ProxiedRequest): number | undefined => {
  const m = /^bytes=(\d+)-$/.exec(String(r.headers.range ?? ''));
  return m ? Number(m[1]) : undefined;
};

describe('hostile artifact sources: replaced objects, resumes, slow stores, fair slots', () => {
  let s3: S3Harness;
  let proxy: S3Proxy;
  let stack: Stack | undefined;
  let clock = new SkippingClock();

  beforeAll(async () => {
    s3 = await S3Harness.start(['models', 'other']);
    proxy = await S3Proxy.start(s3.endpoint);
  });
  afterAll(async () => {
    await proxy.stop();
    await s3.stop();
  });
  afterEach(async () => {
    proxy.clear();
    await stack?.stop();
    stack = undefined;
  });

  /** An agent whose S3 endpoint is `endpoint` (the recording proxy in front of s3rver by default). */
  const start = async (env: Record<string, string> = {}, endpoint = proxy.endpoint): Promise<Stack> => {
    clock = new SkippingClock();
    stack = await startStack({
      env: { ...s3.env(), AWS_ENDPOINT_URL_S3: endpoint, MODEL_DATA_URL: 's3://models/hostile/', ...env },
      clock,
    });
    return stack;
  };

  test('regression: a resumed download with a strong ETag sends If-Match with the ETag HEAD returned', async () => {
    const st = await start();
    const key = 'hostile/strong.tar.gz';
    const weights = randomBytes(1_500_000);
    await s3.put('models', key, await artifact('strong', weights, true));
    proxy.inject({ kind: 'drop', afterBytes: 400_000 });
    const r = await request(st.url, 'POST', '/models/strong.tar.gz/invoke', int32(5));
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([5]);
    const etag = proxy.of('HEAD', key)[0].responseHeaders?.etag;
    expect(etag).toMatch(/^"[0-9a-f]+"$/);
    const gets = proxy.of('GET', key);
    expect(gets).toHaveLength(2);
    expect(gets.map((g) => g.headers['if-match'])).toEqual([etag, etag]);
    expect(rangeStart(gets[0])).toBeUndefined();
    expect(rangeStart(gets[1])).toBeGreaterThan(0);
    expect(rangeStart(gets[1])).toBeLessThanOrEqual(400_000);
    expect(await cachedWeights(st, 'strong')).toEqual([digest(weights)]);
  });

  test('regression: a .tar.gz replaced mid-download is a retryable 503, not a 400 "corrupt"; the retry gets the new one', async () => {
    const st = await start();
    const key = 'hostile/swap.tar.gz';
    const [w1, w2] = [randomBytes(1_500_000), randomBytes(1_500_000)];
    const v2 = await artifact('swap', w2, true);
    await s3.put('models', key, await artifact('swap', w1, true));
    proxy.inject({ kind: 'drop', afterBytes: 400_000, before: () => s3.put('models', key, v2) });
    const r = await request(st.url, 'POST', '/models/swap.tar.gz/invoke', int32(1));
    expect({ status: r.status, error: r.json().error }).toEqual({
      status: 503,
      error: expect.stringMatching(
        /changed while it was being downloaded \(ETag "[0-9a-f]+" became "[0-9a-f]+"\)/,
      ),
    });
    expect(await list(cacheDir(st, 'tmp'))).toEqual([]);
    expect(await list(cacheDir(st, 'entries'))).toEqual([]);
    // Retryable: the agent sees the new version on its next look and fetches it whole.
    clock.skip(1100);
    const again = await request(st.url, 'POST', '/models/swap.tar.gz/invoke', int32(2));
    expect(again.status).toBe(200);
    expect(dataOf(again)).toEqual([2]);
    expect(await cachedWeights(st, 'swap')).toEqual([digest(w2)]);
  });

  test.each([
    {
      store: 'weak ETags',
      setup: (p: S3Proxy) => (p.etags = 'weak'),
      grow: false,
      outcome: /changed while it was being downloaded \(ETag W\/"[0-9a-f]+" became W\/"[0-9a-f]+"\)/,
    },
    {
      store: 'no ETag (the replacement is larger)',
      setup: (p: S3Proxy) => (p.etags = 'none'),
      grow: true,
      outcome: /changed while it was being downloaded/,
    },
    {
      store: 'no validator at all (same size)',
      setup: (p: S3Proxy) => {
        p.etags = 'none';
        p.stripLastModified = true;
      },
      grow: false,
      outcome: 'the new version, whole',
    },
  ])(
    'regression: a plain .tar replaced mid-download from a store with $store restarts from byte 0, never mixing versions',
    async ({ setup, grow, outcome }) => {
      const st = await start();
      const key = `hostile/plain-${randomBytes(4).toString('hex')}.tar`;
      const name = 'plain';
      const w1 = randomBytes(1_000_000);
      const w2 = randomBytes(grow ? 1_100_000 : 1_000_000);
      const v2 = await artifact(name, w2, false);
      await s3.put('models', key, await artifact(name, w1, false));
      setup(proxy);
      proxy.inject({ kind: 'drop', afterBytes: 300_000, before: () => s3.put('models', key, v2) });
      const r = await request(st.url, 'POST', `/models/${path.basename(key)}/invoke`, int32(3));
      // No ranged GET: without a strong validator nothing is resumed, the download starts again.
      const gets = proxy.of('GET', key);
      expect(gets.map((g) => [g.headers.range, g.headers['if-match']])).toEqual([
        [undefined, undefined],
        [undefined, undefined],
      ]);
      if (outcome instanceof RegExp) {
        expect(r.status).toBe(503);
        expect(r.json().error).toMatch(outcome);
        expect(await list(cacheDir(st, 'entries'))).toEqual([]);
      } else {
        expect(r.status).toBe(200);
        expect(await cachedWeights(st, name)).toEqual([digest(w2)]);
      }
      expect(await list(cacheDir(st, 'tmp'))).toEqual([]);
    },
  );

  describe('a store that honours If-Match and keeps versions', () => {
    let store: VersionedS3;
    let versioned: VersionedS3;
    let front: S3Proxy;
    let frontVersioned: S3Proxy;
    beforeAll(async () => {
      store = await VersionedS3.start(false);
      versioned = await VersionedS3.start(true);
      front = await S3Proxy.start(store.endpoint);
      frontVersioned = await S3Proxy.start(versioned.endpoint);
    });
    afterAll(async () => {
      for (const x of [front, frontVersioned, store, versioned]) await x.stop();
    });

    test('regression: the resumed GET of a replaced .tar.gz gets 412 Precondition Failed: a 503, not a 400', async () => {
      const st = await start({}, front.endpoint);
      const key = 'hostile/pre.tar.gz';
      const v1 = await artifact('pre', randomBytes(1_000_000), true);
      const v2 = await artifact('pre', randomBytes(1_000_000), true);
      store.put('models', key, v1);
      front.inject({
        kind: 'drop',
        afterBytes: 300_000,
        before: async () => void store.put('models', key, v2),
      });
      const r = await request(st.url, 'POST', '/models/pre.tar.gz/invoke', int32(1));
      expect(r.status).toBe(503);
      expect(r.json().error).toMatch(
        /changed while it was being downloaded \(the store refused the pinned version \(412\)\)/,
      );
      const gets = front.of('GET', key);
      expect(gets.map((g) => g.status)).toEqual([200, 412]);
      expect(rangeStart(gets[1])).toBeGreaterThan(0);
      expect(await list(cacheDir(st, 'tmp'))).toEqual([]);
      expect(await list(cacheDir(st, 'entries'))).toEqual([]);
    });

    test('a versioned object replaced mid-download resumes on the version described: its bytes, whole', async () => {
      const st = await start({}, frontVersioned.endpoint);
      const key = 'hostile/ver.tar';
      const [w1, w2] = [randomBytes(1_000_000), randomBytes(1_000_000)];
      const first = versioned.put('models', key, await artifact('ver', w1, false));
      const v2 = await artifact('ver', w2, false);
      frontVersioned.inject({
        kind: 'drop',
        afterBytes: 300_000,
        before: async () => void versioned.put('models', key, v2),
      });
      const r = await request(st.url, 'POST', '/models/ver.tar/invoke', int32(6));
      expect(r.status).toBe(200);
      const gets = frontVersioned.of('GET', key);
      expect(gets.map((g) => g.query.get('versionId'))).toEqual([first.versionId, first.versionId]);
      expect(rangeStart(gets[1])).toBeGreaterThan(0);
      expect(await cachedWeights(st, 'ver')).toEqual([digest(w1)]);
    });

    test('regression: a reader slower than the stall timeout is not a stalled store: one GET, every byte', async () => {
      // The stall watch runs on this clock; the reader "takes" 10 s per chunk by moving it while it holds
      // the chunk. Only the wait for the store may count as a stall, never the reader's own time.
      const clock = new ManualClock();
      const src = new S3Source({
        endpoint: frontVersioned.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        maxAttempts: 1,
        resumeAttempts: 5,
        stallTimeoutMs: 200,
        clock,
      });
      const key = 'hostile/slow-reader.tar';
      const body = randomBytes(6 * 1024 * 1024);
      versioned.put('models', key, body);
      try {
        const info = await src.describe(`s3://models/${key}`);
        const stream = await src.open(info);
        const got: Buffer[] = [];
        for await (const chunk of stream) {
          got.push(chunk as Buffer);
          await clock.advance(10_000);
        }
        expect(Buffer.concat(got).equals(body)).toBe(true);
        expect(frontVersioned.of('GET', key)).toHaveLength(1);
      } finally {
        src.close();
      }
    });

    test('describe() reports the ETag and the VersionId the store gave', async () => {
      const src = new S3Source({
        endpoint: versioned.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        maxAttempts: 1,
        resumeAttempts: 0,
        stallTimeoutMs: 5000,
      });
      const v = versioned.put('models', 'hostile/info.tar', Buffer.from('x'));
      try {
        expect(await src.describe('s3://models/hostile/info.tar')).toMatchObject({
          kind: 'archive',
          size: 1,
          version: v.etag,
          etag: v.etag,
          versionId: v.versionId,
        });
      } finally {
        src.close();
      }
    });
  });

  test('regression: a source below the minimum rate fails cleanly with a 503 naming the rate, and frees its slot', async () => {
    const st = await start({
      AGENT_FETCH_CONCURRENCY: '1',
      AGENT_FETCH_MIN_BYTES_PER_SEC: '1000000',
      AGENT_FETCH_RATE_WINDOW_MS: '400',
    });
    await s3.put('models', 'hostile/slow.tar', await artifact('slow', randomBytes(3_000_000), false));
    await s3.put('models', 'hostile/fast.tar', await artifact('fast', randomBytes(100_000), false));
    // About 200 KB/s: never stalled, far below the minimum.
    proxy.always('hostile/slow.tar', { kind: 'slow', bytesPerTick: 4096, tickMs: 20 });
    const slow = request(st.url, 'POST', '/models/slow.tar/invoke', int32(1));
    await until(() => proxy.of('GET', 'hostile/slow.tar').length === 1, 'the slow GET');
    // Same bucket, one slot: waits for the slow download, which the rate check ends.
    const asked = Date.now();
    const fast = request(st.url, 'POST', '/models/fast.tar/invoke', int32(2)).then((r) => ({
      ...r,
      ms: Date.now() - asked,
    }));
    const [s, f] = await Promise.all([slow, fast]);
    expect(s.status).toBe(503);
    expect(s.json().error).toMatch(
      /the download of s3:\/\/models\/hostile\/slow\.tar was stopped after [\d.]+ s with \d+ of \d+ bytes received: it averaged \d+ bytes\/s over the last 0\.4 s, below the minimum rate \(AGENT_FETCH_MIN_BYTES_PER_SEC=1000000\)/,
    );
    expect(f.status).toBe(200);
    expect(dataOf(f)).toEqual([2]);
    // The slow download alone would have held the slot for 15 s.
    expect(f.ms).toBeLessThan(5000);
    // The slow GET was over (its connection closed) before the fast one got the slot.
    const slowGet = proxy.of('GET', 'hostile/slow.tar')[0];
    expect(slowGet.done).toBe(true);
    expect(proxy.of('GET', 'hostile/slow.tar')).toHaveLength(1);
    expect(await list(cacheDir(st, 'tmp'))).toEqual([]);
    expect(await cachedWeights(st, 'slow')).toEqual([]);
    expect(await cachedWeights(st, 'fast')).toHaveLength(1);
  });

  test('a download past the fetch deadline fails cleanly with a 503 naming the deadline', async () => {
    const st = await start({ AGENT_FETCH_DEADLINE_MS: '300', AGENT_FETCH_MIN_BYTES_PER_SEC: '0' });
    await s3.put('models', 'hostile/late.tar', await artifact('late', randomBytes(2_000_000), false));
    proxy.always('hostile/late.tar', { kind: 'slow', bytesPerTick: 16_384, tickMs: 10 });
    const r = await request(st.url, 'POST', '/models/late.tar/invoke', int32(1));
    expect(r.status).toBe(503);
    expect(r.json().error).toMatch(/still running after the fetch deadline \(AGENT_FETCH_DEADLINE_MS=300\)/);
    await until(() => proxy.activeGets === 0, 'the abandoned GET to close');
    expect(await list(cacheDir(st, 'tmp'))).toEqual([]);
    expect(await list(cacheDir(st, 'entries'))).toEqual([]);
  });

  test("regression: fair slots: another bucket's fetch starts while the first bucket has fetches queued", async () => {
    const st = await start({ AGENT_FETCH_CONCURRENCY: '2' });
    const slowKeys = ['a1', 'a2', 'a3', 'a4'].map((k) => `hostile/${k}.tar`);
    // Each download of the first bucket is answered only when the test lets it go.
    const release = new Map<string, () => void>();
    for (const k of slowKeys) {
      await s3.put('models', k, await artifact(path.basename(k, '.tar'), randomBytes(50_000), false));
      proxy.always(k, { kind: 'hold', until: new Promise<void>((r) => release.set(k, r)) });
    }
    await s3.put('other', 'hostile/b.tar', await artifact('b', randomBytes(50_000), false));
    const slow = slowKeys.map((k) => request(st.url, 'POST', `/models/${path.basename(k)}/invoke`, int32(1)));
    // All four described (so queued in the fetcher), two of them holding the two slots.
    await until(
      () => slowKeys.every((k) => proxy.of('HEAD', k)[0]?.done) && proxy.of('GET').length === 2,
      'two downloads running and two queued',
    );
    const b = request(st.url, 'POST', '/models', { model_name: 'b', url: 's3://other/hostile/b.tar' });
    await until(() => proxy.of('HEAD', 'hostile/b.tar')[0]?.done === true, "the other bucket's HEAD");
    // A round trip through the agent (same process): it has queued b by now.
    await request(st.url, 'GET', '/ping');
    // One slot frees: it goes to the other bucket, not to the first bucket's older queue.
    release.get(proxy.of('GET')[0].key)?.();
    await until(() => proxy.of('GET').length === 3, 'the next download to start');
    expect(proxy.of('GET')[2].key).toBe('hostile/b.tar');
    for (const r of release.values()) r();
    expect((await b).status).toBe(200);
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(proxy.of('GET')).toHaveLength(5);
  });
});
