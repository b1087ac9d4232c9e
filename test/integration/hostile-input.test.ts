/**
 * Regression tests for hostile input found by trying the agent as an attacker would: one test per way in
 * (links made by earlier entries, truncated archives, FIFOs, bad urls, ill-formed names, deep nesting).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TritonNameBook } from '../../src/models';
import { startStack, request, repositoryDirs, type Stack } from '../support/agent-harness';
import { buildTar, resnetArtifactEntries, type TarEntry } from '../support/archives';
import { resnetPtConfig, writeModel } from '../support/model-repo';

const MARKER = 'HOSTILE_TEST_SECRET';

describe('hostile input', () => {
  let stack: Stack;
  let outside: string;
  let archives: string;

  beforeAll(async () => {
    stack = await startStack();
    // Beside the repository: what an escape from the cache (<repository>/.cache/tmp/<random>/) would reach.
    outside = path.join(path.dirname(stack.repository), 'target');
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'existing'), 'untouched');
    await fs.writeFile(path.join(outside, 'passwd'), `root:x:0:0:${MARKER}:/root:/bin/sh\n`);
    archives = path.join(path.dirname(stack.repository), 'archives');
    await fs.mkdir(archives);
  });
  afterAll(async () => {
    await stack.stop();
  });

  async function outsideState(): Promise<string[]> {
    const names = await fs.readdir(outside);
    return Promise.all(
      names.sort().map(async (n) => `${n}:${await fs.readFile(path.join(outside, n), 'utf8')}`),
    );
  }

  async function postArchive(name: string, entries: TarEntry[] | Buffer, gzip = true) {
    const file = path.join(archives, `${name}.tar.gz`);
    await fs.writeFile(file, Buffer.isBuffer(entries) ? entries : await buildTar(entries, gzip));
    return request(stack.url, 'POST', '/models', { model_name: name, url: file });
  }

  // From <repository>/.cache/tmp/<random>/, five levels up is the stack's root, where `target` lives.
  const chain: TarEntry[] = [
    { name: 'up', type: 'symlink', linkname: '.' },
    { name: 'x', type: 'symlink', linkname: 'up/up/up/up/up/../../../../target' },
  ];

  test('item 1: links made by earlier entries cannot carry a later entry outside', async () => {
    const before = await outsideState();
    const attempts: [string, TarEntry[]][] = [
      [
        'write-through',
        [...resnetArtifactEntries(resnetPtConfig()), ...chain, { name: 'x/evil', content: 'evil' }],
      ],
      [
        'overwrite',
        [...resnetArtifactEntries(resnetPtConfig()), ...chain, { name: 'x/existing', content: 'changed' }],
      ],
      [
        'hard-link',
        [
          ...resnetArtifactEntries(resnetPtConfig()),
          ...chain,
          { name: 'h', type: 'link', linkname: 'x/existing' },
        ],
      ],
    ];
    for (const [name, entries] of attempts) {
      const res = await postArchive(name, entries);
      expect({ name, status: res.status }).toEqual({ name, status: 400 });
      expect(res.json().error).toMatch(/refused archive entry/);
    }
    expect(await outsideState()).toEqual(before);
    expect(await repositoryDirs(stack.repository)).toEqual([]);
  });

  test('item 1: a config.pbtxt linked through a chain is never read', async () => {
    const res = await postArchive('read-outside', [
      { name: 'resnet/', type: 'directory' },
      ...chain,
      { name: 'resnet/config.pbtxt', type: 'symlink', linkname: '../x/passwd' },
      { name: 'resnet/1/model.pt', content: 'w' },
    ]);
    expect(res.status).toBe(400);
    expect(res.body.toString()).not.toContain(MARKER);
  });

  test('item 2: truncated archives answer 400 at once and hold no slot, state or name', async () => {
    const good = await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(20_000, 1)), false);
    const gz = await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(20_000, 1)), true);
    // More truncated loads than AGENT_FETCH_CONCURRENCY (4): each must release its slot.
    for (let i = 0; i < 6; i++) {
      const cut = i % 2 === 0 ? good.subarray(0, 1200 + i * 3000) : gz.subarray(0, Math.floor(gz.length / 2));
      const res = await postArchive('truncated', cut);
      expect(res.status).toBe(400);
      expect(res.json().error).toMatch(/corrupt or truncated archive/);
      expect((await request(stack.url, 'GET', '/models/truncated/status')).status).toBe(404);
      expect((await request(stack.url, 'DELETE', '/models/truncated')).status).toBe(404);
    }
    expect(await fs.readdir(path.join(stack.repository, '.cache', 'tmp'))).toEqual([]);
    // The same name now loads from a whole archive.
    const res = await postArchive('truncated', good);
    expect(res.status).toBe(200);
    expect((await request(stack.url, 'DELETE', '/models/truncated')).status).toBe(200);
  });

  test('item 3: a FIFO as config.pbtxt is refused without blocking a file thread', async () => {
    for (let i = 0; i < 6; i++) {
      const dir = path.join(stack.models, `fifo${i}`, 'model');
      await fs.mkdir(path.join(dir, 'resnet', '1'), { recursive: true });
      execFileSync('mkfifo', [path.join(dir, 'resnet', 'config.pbtxt')]);
      const res = await request(stack.url, 'POST', '/models', { model_name: `fifo${i}`, url: dir });
      expect(res.status).toBe(400);
      expect(res.json().error).toMatch(/config\.pbtxt is not a regular file/);
    }
    const dir = path.join(stack.models, 'after-fifo', 'model');
    await writeModel(dir, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 10 } } });
    const res = await request(stack.url, 'POST', '/models', { model_name: 'after-fifo', url: dir });
    expect(res.status).toBe(200);
    expect((await request(stack.url, 'DELETE', '/models/after-fifo')).status).toBe(200);
  });

  test('item 4: bad urls answer 400 without walking the tree', async () => {
    const toProc = path.join(stack.models, 'to-proc');
    await fs.symlink('/proc/self', toProc);
    const cases: [string, RegExp][] = [
      ['file://host/x', /may not name a host/],
      ['file:///a%2Fb', /encodes a slash/],
      ['/', /no config\.pbtxt/],
      ['file:///', /no config\.pbtxt/],
      [toProc, /leads into \/proc/],
      ['/usr', /no config\.pbtxt/],
    ];
    for (const [url, why] of cases) {
      const res = await request(stack.url, 'POST', '/models', { model_name: 'bad-url', url });
      expect({ url, status: res.status }).toEqual({ url, status: 400 });
      expect(res.json().error).toMatch(why);
    }
  });

  test('item 5: names that are not well-formed Unicode are refused', async () => {
    const dir = path.join(stack.models, 'surrogate', 'model');
    await writeModel(dir, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 10 } } });
    for (const escaped of ['a\\ud800b', 'a\\udfffb']) {
      const body = `{"model_name":"${escaped}","url":${JSON.stringify(dir)}}`;
      const res = await request(stack.url, 'POST', '/models', body, { 'content-type': 'application/json' });
      expect(res.status).toBe(400);
      expect(res.json().error).toMatch(/not well-formed Unicode/);
    }
    expect(await repositoryDirs(stack.repository)).toEqual([]);
  });

  test('item 5: two names whose hashes collide never share a Triton name', () => {
    // A derivation that collides for every name at the short length, as a 48-bit collision would.
    const book = new TritonNameBook((name, chars) => (chars === 12 ? 'same-000000000000' : `long-${name}`));
    const a = book.claim('first');
    const b = book.claim('second');
    expect(a).toBe('same-000000000000');
    expect(b).toBe('long-second');
    expect(book.claim('first')).toBe(a);
    book.release('first');
    expect(book.claim('third')).toBe('same-000000000000');
  });

  test("a model cannot be loaded from the agent's own repository or cache (their files come and go)", async () => {
    const dir = path.join(stack.models, 'own', 'model');
    await writeModel(dir, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 10 } } });
    expect((await request(stack.url, 'POST', '/models', { model_name: 'own', url: dir })).status).toBe(200);
    const [staged] = await repositoryDirs(stack.repository);
    for (const url of [
      path.join(stack.repository, staged),
      `file://${path.join(stack.repository, staged)}`,
    ]) {
      const r = await request(stack.url, 'POST', '/models', { model_name: 'copy', url });
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(/inside the agent's own directory/);
    }
    expect((await request(stack.url, 'DELETE', '/models/own')).status).toBe(200);
  });

  test('item 7: a config.pbtxt nested 100,000 deep is a 400, not a stack overflow', async () => {
    const depth = 100_000;
    const config = `name: "resnet"\nplatform: "pytorch_libtorch"\nparameters ${'{ key: "k" value '.repeat(depth)}${'}'.repeat(depth)}`;
    const dir = path.join(stack.models, 'deep', 'model');
    await writeModel(dir, 'resnet', { config, versions: { '1': { 'model.pt': 10 } } });
    const res = await request(stack.url, 'POST', '/models', { model_name: 'deep', url: dir });
    expect(res.status).toBe(400);
    expect(res.json().error).toMatch(/nested more than 100 deep/);
  });
});
