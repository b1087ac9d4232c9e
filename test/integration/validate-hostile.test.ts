import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { resnetPtConfig, tempDir } from '../support/model-repo';
import { ustarHeader } from '../support/archives';
import { waitUntil } from '../support/wait';

const ROOT = path.join(__dirname, '..', '..');

// The CLI runs as a child process compiled by tsx: slow on a busy 2-core machine.
jest.setTimeout(90_000);

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/** Starts `triton-sagemaker-mme-agent validate …` from the sources with its own TMPDIR, as a user would. */
function startValidate(args: string[], tmp: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'validate', ...args], {
    cwd: ROOT,
    env: { ...process.env, TMPDIR: tmp, TSX_DISABLE_CACHE: '1' },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<Run>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, out, err: err.trimEnd() })),
  );
  return { child, done };
}

/** Bytes under TMPDIR's validate directories (what an interrupted run would leave behind). */
async function scratchBytes(tmp: string): Promise<number> {
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await fs.stat(p).catch(() => ({ size: 0 }))).size;
    }
  };
  for (const name of await leftovers(tmp)) await walk(path.join(tmp, name));
  return total;
}

/** The command's own temporary folders (tsx keeps a compile cache beside them, which is not ours). */
const leftovers = async (dir: string) => (await fs.readdir(dir)).filter((n) => n.startsWith('mme-validate-'));

/** Gzipped tar members concatenated; `files` of `bytes` zeros each (one gzip member per MiB). */
async function zerosArchive(
  file: string,
  files: { name: string; mib?: number; bytes?: number }[],
): Promise<void> {
  const config = Buffer.from(resnetPtConfig());
  const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
  const fh = await fs.open(file, 'w');
  const mibOfZeros = zlib.gzipSync(Buffer.alloc(1024 * 1024));
  try {
    await fh.write(
      zlib.gzipSync(
        Buffer.concat([ustarHeader('resnet/config.pbtxt', config.length), config, pad(config.length)]),
      ),
    );
    for (const f of files) {
      const size = f.mib !== undefined ? f.mib * 1024 * 1024 : (f.bytes ?? 0);
      if (f.mib !== undefined) {
        await fh.write(zlib.gzipSync(ustarHeader(f.name, size)));
        for (let i = 0; i < f.mib; i++) await fh.write(mibOfZeros);
      } else {
        await fh.write(
          zlib.gzipSync(Buffer.concat([ustarHeader(f.name, size), Buffer.alloc(size), pad(size)])),
        );
      }
    }
    await fh.write(zlib.gzipSync(Buffer.alloc(1024)));
  } finally {
    await fh.close();
  }
}

describe('validate as a process: signals, time, a full TMPDIR', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let tmp: string;
  beforeEach(async () => {
    work = await tempDir('validate-proc-');
    tmp = path.join(work.dir, 'tmp');
    await fs.mkdir(tmp);
  });
  afterEach(async () => {
    await work.cleanup();
  });

  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
    ['SIGHUP', 129],
  ] as const)(
    '%s in the middle of unpacking 4 GiB removes the temporary copy and exits %i',
    async (signal, code) => {
      const file = path.join(work.dir, 'big.tar.gz');
      await zerosArchive(file, [{ name: 'resnet/1/model.pt', mib: 4096 }]);
      const run = startValidate(['--max-unpack-bytes', '16GiB', file], tmp);
      // Wait until the unpack has written something real, then interrupt it.
      let seen = 0;
      await waitUntil(
        async () => (seen = await scratchBytes(tmp)) >= 4 * 1024 * 1024 || run.child.exitCode !== null,
        { timeoutMs: 60_000, what: 'the unpack writing 4 MiB', detail: () => `${seen} bytes written` },
      );
      expect(seen).toBeGreaterThanOrEqual(4 * 1024 * 1024);
      run.child.kill(signal);
      const r = await run.done;
      expect(r).toMatchObject({ code, signal: null, out: '' });
      expect(r.err).toBe(`validate: interrupted by ${signal}; temporary files removed`);
      expect(await leftovers(tmp)).toEqual([]);
    },
  );

  test('a FIFO argument is refused at once; a directory with a FIFO model file is invalid, not a hang', async () => {
    const fifo = path.join(work.dir, 'model.tar.gz');
    execFileSync('mkfifo', [fifo]);
    const r = await startValidate([fifo], tmp).done;
    expect(r).toMatchObject({
      code: 2,
      err: `validate: '${fifo}' is a FIFO (named pipe), not an archive file or a model directory`,
    });
    const dir = path.join(work.dir, 'model', 'resnet');
    await fs.mkdir(path.join(dir, '1'), { recursive: true });
    await fs.writeFile(path.join(dir, 'config.pbtxt'), resnetPtConfig());
    await fs.symlink('/dev/zero', path.join(dir, '1', 'model.pt'));
    const invalid = await startValidate(['--json', path.join(work.dir, 'model')], tmp).done;
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.out).findings).toEqual([
      expect.objectContaining({ severity: 'error', where: 'resnet/1/model.pt' }),
    ]);
  });

  test('--timeout-seconds ends a long check with one line, exit 2, nothing left', async () => {
    const file = path.join(work.dir, 'big.tar.gz');
    await zerosArchive(file, [{ name: 'resnet/1/model.pt', mib: 4096 }]);
    const r = await startValidate(['--timeout-seconds', '1', '--max-unpack-bytes', '16GiB', file], tmp).done;
    expect(r).toMatchObject({
      code: 2,
      out: '',
      err: `validate: gave up on '${file}' after 1 s (--timeout-seconds); its temporary files are removed`,
    });
    expect(await leftovers(tmp)).toEqual([]);
  });

  // A real full disk: a 1 MiB tmpfs as TMPDIR (needs the right to mount; skipped elsewhere).
  const canMount =
    process.platform === 'linux' &&
    process.getuid?.() === 0 &&
    spawnSync('sh', [
      '-c',
      'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s',
    ]).status === 0;
  (canMount ? test : test.skip)(
    'ENOSPC on a full TMPDIR is one line without a stack, exit 2, nothing left',
    async () => {
      const small = path.join(work.dir, 'small-tmp');
      await fs.mkdir(small);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
      try {
        // 400 files of 1 byte: 400 bytes by the byte count, but a 4 KiB page each on tmpfs.
        const file = path.join(work.dir, 'many.tar.gz');
        await zerosArchive(file, [
          { name: 'resnet/1/model.pt', bytes: 1 },
          ...Array.from({ length: 400 }, (_, i) => ({ name: `resnet/1/f${i}`, bytes: 1 })),
        ]);
        const r = await startValidate([file], small).done;
        expect(r.code).toBe(2);
        expect(r.out).toBe('');
        expect(r.err).toMatch(
          /^validate: no space left in '.*small-tmp\/mme-validate-\w+' while unpacking '.*many\.tar\.gz' \(ENOSPC\); free some or point TMPDIR at a larger disk$/,
        );
        expect(await leftovers(small)).toEqual([]);
      } finally {
        execFileSync('umount', [small]);
      }
    },
  );
});
