/**
 * A property-based fuzzer for the archive unpacker: random archives of files, directories, symlinks and
 * hard links (chains through earlier links included), duplicates, gzip or not, truncated anywhere. For
 * each it asserts: the unpack settles within a bound; nothing outside the target directory is created,
 * changed or linked to; every link left inside resolves inside; a config reached through the result never
 * shows a file from outside; and a refused archive leaves nothing behind in the disk cache.
 *
 * CI runs a fixed seed; `npm run fuzz:archives` runs many more (FUZZ_RUNS, FUZZ_SEED).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { ArtifactFetcher, DiskCache, FileSource, inspectArtifact, unpackTar } from '../../src/artifacts';
import { silentLogger } from '../../src/observability';
import { buildTar, type TarEntry } from '../support/archives';
import { tempDir } from '../support/model-repo';
import { WaitTimeout, within } from '../support/wait';

const RUNS = Number(process.env.FUZZ_RUNS ?? 250);
const SEED = process.env.FUZZ_SEED === 'random' ? Date.now() : Number(process.env.FUZZ_SEED ?? 20261201);
const SETTLE_MS = 5000;
const MARKER = 'OUTSIDE_SECRET_MARKER';
const limits = { maxEntries: 200, maxBytes: 1 << 20 };

jest.setTimeout(Math.max(60_000, RUNS * 200));

/** What a tree holds, read without following links: path → type, size, link target, inode, content hash. */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string) => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const st = await fs.lstat(p);
      const rel = path.relative(root, p);
      if (st.isSymbolicLink()) out.set(rel, `link:${await fs.readlink(p)}`);
      else if (st.isDirectory()) {
        out.set(rel, `dir:${st.mode & 0o777}`);
        await walk(p);
      } else {
        const hash = createHash('sha1')
          .update(await fs.readFile(p))
          .digest('hex');
        out.set(rel, `file:${st.size}:${st.nlink}:${st.mtimeMs}:${hash}`);
      }
    }
  };
  await walk(root);
  return out;
}

async function inodesOf(root: string): Promise<Set<string>> {
  const ids = new Set<string>();
  const walk = async (dir: string) => {
    for (const name of await fs.readdir(dir)) {
      const p = path.join(dir, name);
      const st = await fs.lstat(p);
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) ids.add(`${st.dev}:${st.ino}`);
    }
  };
  await walk(root);
  return ids;
}

/** Every link inside `root` resolves inside it, and no file inside shares an inode with one outside. */
async function checkContained(root: string, outsideInodes: Set<string>): Promise<void> {
  const realRoot = await fs.realpath(root);
  const walk = async (dir: string) => {
    for (const name of await fs.readdir(dir)) {
      const p = path.join(dir, name);
      const st = await fs.lstat(p);
      if (st.isSymbolicLink()) {
        const real = await fs.realpath(p);
        expect(real === realRoot || real.startsWith(realRoot + path.sep)).toBe(true);
      } else if (st.isDirectory()) {
        await walk(p);
      } else {
        expect(outsideInodes.has(`${st.dev}:${st.ino}`)).toBe(false);
      }
    }
  };
  await walk(root);
}

/** How `p` settled, within SETTLE_MS (a `WaitTimeout` past it: nothing may hang). */
function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  return within(p, { timeoutMs: SETTLE_MS, what: 'the unpack settling' }).then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => {
      if (error instanceof WaitTimeout) throw error;
      return { ok: false as const, error };
    },
  );
}

// --- generators -------------------------------------------------------------------------------------

const component = fc.constantFrom(
  'a',
  'b',
  'up',
  'x',
  'm',
  '1',
  'config.pbtxt',
  'target',
  'secret',
  '.',
  '..',
);
const relPath = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
/** Link targets that mix the ways out: dots, chains through other links, the sandbox's outside names. */
const linkTarget = fc.oneof(
  relPath,
  fc.constantFrom('.', '..', '../outside/target', '../../outside/secret', 'up/up/up/../../../..', 'up/../..'),
  fc
    .tuple(
      fc.array(fc.constantFrom('up', 'x', 'a'), { maxLength: 5 }),
      fc.integer({ min: 0, max: 6 }),
      fc.constantFrom('', 'target', 'secret', 'outside/secret'),
    )
    .map(
      ([ups, dots, tail]) =>
        [...ups, ...Array<string>(dots).fill('..'), tail].filter((p) => p !== '').join('/') || '.',
    ),
);

const entry: fc.Arbitrary<TarEntry> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(relPath, fc.string({ maxLength: 40 })).map(([name, content]) => ({ name, content })),
  },
  { weight: 2, arbitrary: relPath.map((name) => ({ name: `${name}/`, type: 'directory' as const })) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(relPath, linkTarget)
      .map(([name, linkname]) => ({ name, type: 'symlink' as const, linkname })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(relPath, fc.oneof(relPath, linkTarget))
      .map(([name, linkname]) => ({ name, type: 'link' as const, linkname })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<TarEntry>(
      { name: 'up', type: 'symlink', linkname: '.' },
      { name: 'x', type: 'symlink', linkname: 'up/up/up/up/up/../../../../outside/target' },
      { name: 'x/evil', content: 'evil' },
      { name: 'x/secret', content: 'overwrite' },
      { name: 'm/config.pbtxt', type: 'symlink', linkname: '../x/../outside/secret' },
      { name: 'h', type: 'link', linkname: 'x/secret' },
    ),
  },
);

const archive = fc.record({
  entries: fc.array(entry, { minLength: 1, maxLength: 12 }),
  gzip: fc.boolean(),
  /** Where to cut the archive, as a fraction of its length (1 = whole). */
  cut: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
});

// --- the properties ---------------------------------------------------------------------------------

describe('archive fuzzer', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let outside: string;
  let before: Map<string, string>;
  let outsideInodes: Set<string>;

  beforeAll(async () => {
    work = await tempDir('fuzz-');
    // The sandbox: `<work>/outside` holds what an escape would touch; archives unpack into `<work>/in/out`,
    // so '../outside' and '../../outside' are the obvious ways out.
    outside = path.join(work.dir, 'outside');
    await fs.mkdir(path.join(outside, 'target'), { recursive: true });
    await fs.writeFile(path.join(outside, 'secret'), `name: "${MARKER}"\nplatform: "pytorch_libtorch"\n`);
    await fs.writeFile(path.join(outside, 'target', 'secret'), MARKER);
    await fs.mkdir(path.join(work.dir, 'in'));
    before = await snapshot(outside);
    outsideInodes = await inodesOf(outside);
  });
  afterAll(async () => {
    await work.cleanup();
  });

  async function unpackOnce(buf: Buffer) {
    const root = path.join(work.dir, 'in', 'out');
    await fs.rm(root, { recursive: true, force: true });
    const result = await settle(unpackTar(Readable.from([buf]), root, limits));
    expect(await snapshot(outside)).toEqual(before);
    expect((await fs.readdir(work.dir)).sort()).toEqual(['in', 'outside']);
    expect(await fs.readdir(path.join(work.dir, 'in'))).toEqual(['out']);
    if (result.ok) {
      await checkContained(root, outsideInodes);
      // Whatever the loader reads from the result, it never reads a file from outside.
      const layout = await settle(inspectArtifact(root));
      const seen = layout.ok ? JSON.stringify(layout.value.top.summary) : String(layout.error);
      expect(seen).not.toContain(MARKER);
    }
    return result;
  }

  test('random archives never write, change, link or read outside their directory, and always settle', async () => {
    await fc.assert(
      fc.asyncProperty(archive, async ({ entries, gzip, cut }) => {
        const full = await buildTar(entries, gzip);
        await unpackOnce(full.subarray(0, Math.floor(full.length * cut)));
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  test('a small archive truncated at every offset settles with a clear refusal', async () => {
    for (const gzip of [false, true]) {
      const full = await buildTar(
        [
          { name: 'm/', type: 'directory' },
          { name: 'm/config.pbtxt', content: 'platform: "pytorch_libtorch"\n' },
          { name: 'm/1/model.pt', content: 'w'.repeat(700) },
        ],
        gzip,
      );
      // Every offset of the gzip form; every 7th of the raw form (and all around block boundaries).
      for (let cut = 0; cut < full.length; cut += gzip || cut % 512 > 505 || cut % 512 < 6 ? 1 : 7) {
        const r = await unpackOnce(full.subarray(0, cut));
        // A raw tar cut exactly between entries is a shorter valid tar; anything else must be refused.
        const between = cut === 0 || (!gzip && [512, 1536, 3072, 3584].includes(cut));
        expect({ cut, gzip, ok: r.ok }).toEqual({ cut, gzip, ok: between });
        if (!r.ok) expect(String(r.error)).toMatch(/corrupt or truncated archive|refused archive entry/);
      }
    }
  });

  test('a refused archive leaves nothing behind in the disk cache', async () => {
    const cacheRoot = path.join(work.dir, 'in', 'cache');
    const cache = new DiskCache(cacheRoot, 1 << 30);
    await cache.open();
    const fetcher = new ArtifactFetcher({
      sources: [new FileSource()],
      cache,
      limits,
      concurrency: 2,
      progressIntervalMs: 60_000,
      stallTimeoutMs: SETTLE_MS,
      logger: silentLogger(),
    });
    const file = path.join(work.dir, 'in', 'artifact.tar.gz');
    try {
      await fc.assert(
        fc.asyncProperty(archive, async ({ entries, gzip, cut }) => {
          const full = await buildTar(entries, gzip);
          await fs.writeFile(file, full.subarray(0, Math.floor(full.length * cut)));
          const r = await settle(fetcher.fetch(file));
          if (r.ok) {
            r.value.release();
            for (const e of cache.list()) await cache.remove(e);
          }
          expect(await fs.readdir(path.join(cacheRoot, 'tmp'))).toEqual([]);
          expect(await fs.readdir(path.join(cacheRoot, 'entries'))).toEqual([]);
          expect(await snapshot(outside)).toEqual(before);
        }),
        { numRuns: Math.ceil(RUNS / 5), seed: SEED },
      );
    } finally {
      await fs.rm(cacheRoot, { recursive: true, force: true });
      await fs.rm(file, { force: true });
    }
  });
});
