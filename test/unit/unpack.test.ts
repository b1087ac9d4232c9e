import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { unpackTar } from '../../src/artifacts/unpack';
import { AgentError, ErrorCode } from '../../src/errors';
import { buildTar, resnetArtifactEntries } from '../support/archives';
import { resnetPtConfig, tempDir } from '../support/model-repo';

const limits = { maxEntries: 100, maxBytes: 1 << 20 };

describe('unpackTar', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  beforeEach(async () => {
    work = await tempDir('unpack-');
  });
  afterEach(async () => {
    await work.cleanup();
  });

  const target = () => path.join(work.dir, 'out');
  const run = (buf: Buffer, l = limits) => unpackTar(Readable.from([buf]), target(), l);

  /** Only the temporary target may have been written, never anything beside it. */
  async function expectNothingOutside() {
    const names = (await fs.readdir(work.dir)).sort();
    expect(names.filter((n) => n !== 'out')).toEqual([]);
  }

  test('unpacks the launch-post layout, gzipped or not', async () => {
    for (const gzip of [true, false]) {
      await fs.rm(target(), { recursive: true, force: true });
      const r = await run(await buildTar(resnetArtifactEntries(resnetPtConfig(), 'w'.repeat(1000)), gzip));
      expect(r).toEqual({ entries: 4, bytes: resnetPtConfig().length + 1000 });
      expect(await fs.readFile(path.join(target(), 'resnet/1/model.pt'), 'utf8')).toBe('w'.repeat(1000));
    }
  });

  test('big files stream through in chunks', async () => {
    const big = Buffer.alloc(5 << 20, 3);
    const r = await run(await buildTar([{ name: 'm/1/model.pt', content: big }]), {
      maxEntries: 10,
      maxBytes: 6 << 20,
    });
    expect(r.bytes).toBe(5 << 20);
    expect((await fs.stat(path.join(target(), 'm/1/model.pt'))).size).toBe(5 << 20);
  });

  test('strips setuid and setgid bits', async () => {
    await run(await buildTar([{ name: 'm/run.sh', content: '#!/bin/sh', mode: 0o6755 }]));
    expect((await fs.stat(path.join(target(), 'm/run.sh'))).mode & 0o7777).toBe(0o755);
  });

  test('links inside the artifact are kept', async () => {
    await run(
      await buildTar([
        { name: 'm/1/model.pt', content: 'x' },
        { name: 'm/2', type: 'symlink', linkname: '1' },
        { name: 'm/3/model.pt', type: 'link', linkname: 'm/1/model.pt' },
      ]),
    );
    expect(await fs.readlink(path.join(target(), 'm/2'))).toBe('1');
    expect(await fs.readFile(path.join(target(), 'm/3/model.pt'), 'utf8')).toBe('x');
  });

  test.each([
    [
      'absolute path',
      [{ name: '/etc/evil', content: 'x' }],
      /refused archive entry '\/etc\/evil': absolute path/,
    ],
    [
      '.. component',
      [{ name: 'm/../../evil', content: 'x' }],
      /refused archive entry 'm\/\.\.\/\.\.\/evil': path contains '\.\.'/,
    ],
    [
      'symlink outside',
      [{ name: 'm/link', type: 'symlink', linkname: '../../etc/passwd' }],
      /symlink points outside the artifact/,
    ],
    [
      'absolute symlink',
      [{ name: 'm/link', type: 'symlink', linkname: '/etc/passwd' }],
      /symlink to absolute path/,
    ],
    ['hard link outside', [{ name: 'm/hl', type: 'link', linkname: '../outside' }], /path contains '\.\.'/],
    [
      'hard link to nothing',
      [{ name: 'm/hl', type: 'link', linkname: 'm/none' }],
      /not a file earlier in the archive/,
    ],
    [
      'character device',
      [{ name: 'm/tty', type: 'character-device' }],
      /character-device entries are not allowed/,
    ],
    ['block device', [{ name: 'm/sda', type: 'block-device' }], /block-device entries are not allowed/],
    ['fifo', [{ name: 'm/pipe', type: 'fifo' }], /fifo entries are not allowed/],
  ] as [string, Parameters<typeof buildTar>[0], RegExp][])(
    'refuses %s, naming the entry',
    async (_l, entries, message) => {
      const err = await run(await buildTar(entries)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AgentError);
      expect((err as AgentError).code).toBe(ErrorCode.InvalidModel);
      expect((err as Error).message).toMatch(message);
      await expectNothingOutside();
    },
  );

  test('a symlink cannot be used to write through it', async () => {
    const err = await run(
      await buildTar([
        { name: 'm/dir', type: 'symlink', linkname: '.' },
        { name: 'm/dir/../../x', content: 'x' },
      ]),
    ).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/path contains '\.\.'/);
    await expectNothingOutside();
  });

  test('tar bombs: the running totals of entries and bytes', async () => {
    const many = Array.from({ length: 11 }, (_, i) => ({ name: `m/f${i}`, content: 'x' }));
    expect(
      (
        (await run(await buildTar(many), { maxEntries: 10, maxBytes: 1000 }).catch(
          (e: unknown) => e,
        )) as Error
      ).message,
    ).toMatch(/more than 10 entries/);
    await fs.rm(target(), { recursive: true, force: true });
    // Each file is small; together they pass the byte limit.
    const heavy = Array.from({ length: 5 }, (_, i) => ({ name: `m/f${i}`, content: Buffer.alloc(300) }));
    const err = (await run(await buildTar(heavy), { maxEntries: 100, maxBytes: 1000 }).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toMatch(/refused archive entry 'm\/f3': the archive unpacks to more than 1000 bytes/);
    await fs.rm(target(), { recursive: true, force: true });
    // A highly compressible bomb is stopped once the written bytes pass the limit.
    const bomb = await buildTar([{ name: 'm/zeros', content: Buffer.alloc(20 << 20) }]);
    expect(bomb.length).toBeLessThan(100_000);
    expect(((await run(bomb).catch((e: unknown) => e)) as Error).message).toMatch(
      /unpacks to more than 1048576 bytes/,
    );
  });

  test('corrupt and truncated archives', async () => {
    const good = await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(50_000, 1)));
    const corrupt = Buffer.from(good);
    for (let i = 40; i < 200; i++) corrupt[i] ^= 0x5a;
    const e1 = (await run(corrupt).catch((e: unknown) => e)) as AgentError;
    expect(e1.code).toBe(ErrorCode.InvalidModel);
    expect(e1.message).toMatch(/corrupt or truncated archive/);
    await fs.rm(target(), { recursive: true, force: true });
    const e2 = (await run(good.subarray(0, good.length / 2)).catch((e: unknown) => e)) as AgentError;
    expect(e2.message).toMatch(/corrupt or truncated archive/);
    await fs.rm(target(), { recursive: true, force: true });
    const rawTar = await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(50_000, 1)), false);
    const e3 = (await run(rawTar.subarray(0, 20_000)).catch((e: unknown) => e)) as AgentError;
    expect(e3.message).toMatch(/corrupt or truncated archive/);
    await fs.rm(target(), { recursive: true, force: true });
    const e4 = (await run(
      Buffer.from('this is not an archive at all, just text that goes on'.repeat(20)),
    ).catch((e: unknown) => e)) as AgentError;
    expect(e4.code).toBe(ErrorCode.InvalidModel);
  });
});
