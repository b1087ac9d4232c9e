import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { AgentError, ErrorCode } from '../../src/errors';
import {
  ScratchDir,
  runValidateCommand,
  validateArtifact,
  type Finding,
  type ValidationReport,
} from '../../src/validate';
import { buildTar, resnetArtifactEntries, ustarHeader } from '../support/archives';
import { resnetPtConfig, tempDir, writeModel } from '../support/model-repo';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const fsModule = require('node:fs/promises') as typeof fs;

const limits = { maxEntries: 1000, maxBytes: 64 * 1024 ** 3 };
const errors = (r: ValidationReport): Finding[] => r.findings.filter((f) => f.severity === 'error');

/**
 * A gzipped artifact whose model.pt is `mib` MiB of zeros, a few KB on disk: gzip members concatenated
 * (one per MiB of zeros, the same bytes each time), so a large unpack costs nothing to build.
 */
async function zerosArchive(file: string, mib: number): Promise<void> {
  const config = Buffer.from(resnetPtConfig());
  const head = Buffer.concat([
    ustarHeader('resnet/config.pbtxt', config.length),
    config,
    Buffer.alloc((512 - (config.length % 512)) % 512),
    ustarHeader('resnet/1/model.pt', mib * 1024 * 1024),
  ]);
  const zeros = zlib.gzipSync(Buffer.alloc(1024 * 1024));
  const fh = await fs.open(file, 'w');
  try {
    await fh.write(zlib.gzipSync(head));
    for (let i = 0; i < mib; i++) await fh.write(zeros);
    await fh.write(zlib.gzipSync(Buffer.alloc(1024)));
  } finally {
    await fh.close();
  }
}

/** Runs the command with `tmp` as its TMPDIR; returns status, output and what it left there. */
async function command(argv: string[], tmp: string, env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const code = await runValidateCommand(
      argv,
      { out: (l) => out.push(l), err: (l) => err.push(l) },
      { tmpDir: tmp },
    );
    const left = await fs.readdir(tmp).catch(() => []);
    return { code, out: out.join('\n'), err: err.join('\n'), left };
  } finally {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/** One line, no stack trace. */
function expectOneLine(text: string): void {
  expect(text).not.toContain('\n');
  expect(text).not.toMatch(/\n\s+at |\bat .*\.ts:\d+/);
}

describe('validate: hostile paths and artifacts', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let tmp: string;
  beforeEach(async () => {
    work = await tempDir('validate-hostile-');
    tmp = path.join(work.dir, 'tmp');
    await fs.mkdir(tmp);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await work.cleanup();
  });

  describe('the artifact path must be a regular file or a directory, checked before it is opened', () => {
    test('a FIFO: a one-line error at once, not a hang', async () => {
      const fifo = path.join(work.dir, 'model.tar.gz');
      execFileSync('mkfifo', [fifo]);
      const r = await command([fifo], tmp);
      expect(r.code).toBe(2);
      expect(r.err).toBe(
        `validate: '${fifo}' is a FIFO (named pipe), not an archive file or a model directory`,
      );
      expect(r.left).toEqual([]);
      await expect(validateArtifact(fifo, { limits, tmpDir: tmp })).rejects.toMatchObject({
        code: ErrorCode.BadRequest,
      });
    });

    test('/dev/zero, and links to it or to a FIFO', async () => {
      const fifo = path.join(work.dir, 'pipe');
      execFileSync('mkfifo', [fifo]);
      await fs.symlink('/dev/zero', path.join(work.dir, 'zero.tar.gz'));
      await fs.symlink(fifo, path.join(work.dir, 'pipe.tar.gz'));
      const zero = await command(['/dev/zero'], tmp);
      expect(zero).toMatchObject({
        code: 2,
        err: "validate: '/dev/zero' is a character device, not an archive file or a model directory",
      });
      const link = await command([path.join(work.dir, 'zero.tar.gz')], tmp);
      expect(link.code).toBe(2);
      expect(link.err).toMatch(/zero\.tar\.gz' links to '\/dev\/zero', a character device, not an archive/);
      const pipe = await command([path.join(work.dir, 'pipe.tar.gz')], tmp);
      expect(pipe.err).toMatch(/pipe\.tar\.gz' links to '.*pipe', a FIFO \(named pipe\), not an archive/);
      for (const r of [zero, link, pipe]) expectOneLine(r.err);
    });

    test('a socket; a dangling link; a FIFO after a good artifact stops the run before anything is unpacked', async () => {
      const sock = path.join(work.dir, 's.sock');
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(sock, resolve));
      try {
        const r = await command([sock], tmp);
        expect(r.err).toMatch(/s\.sock' is a socket, not an archive file/);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
      await fs.symlink(path.join(work.dir, 'gone'), path.join(work.dir, 'dangling'));
      const dangling = await command([path.join(work.dir, 'dangling')], tmp);
      expect(dangling.code).toBe(2);
      expect(dangling.err).toMatch(/^validate: cannot read '.*dangling': ENOENT/);
      const good = path.join(work.dir, 'good.tar.gz');
      await fs.writeFile(good, await buildTar(resnetArtifactEntries(resnetPtConfig(), 'w')));
      const mixed = await command([good, '/dev/zero'], tmp);
      expect(mixed).toMatchObject({ code: 2, out: '', left: [] });
    });

    test('a hostile file name cannot add a line to the output', async () => {
      const name = path.join(work.dir, 'x\nok.tar.gz: valid');
      execFileSync('mkfifo', [name]);
      const r = await command([name], tmp);
      expectOneLine(r.err);
      expect(r.err).toContain("x\\nok.tar.gz: valid' is a FIFO");
      // An entry name with a newline, reported as a finding, stays on its line in the text report too.
      const archive = path.join(work.dir, 'evil.tar.gz');
      await fs.writeFile(archive, await buildTar([{ name: 'm/evil\nX: valid', type: 'fifo' }]));
      const report = await command([archive], tmp);
      expect(report.code).toBe(1);
      expect(report.out.split('\n')).toEqual([
        `${archive}: INVALID`,
        "  error: m/evil\\nX: valid: refused archive entry 'm/evil\\nX: valid': fifo entries are not allowed",
      ]);
    });
  });

  describe('model files and other entries of a directory that are not regular files', () => {
    async function artifact(file: (dir: string) => Promise<void>, platform = resnetPtConfig()) {
      const root = path.join(work.dir, 'model');
      await writeModel(root, 'resnet', { config: platform, versions: { '1': {} } });
      await file(path.join(root, 'resnet', '1'));
      return root;
    }

    test('a FIFO as the model file is an error, reported once, never opened', async () => {
      const root = await artifact(async (v) => {
        execFileSync('mkfifo', [path.join(v, 'model.pt')]);
      });
      const r = await validateArtifact(root, { limits, tmpDir: tmp });
      expect(r.valid).toBe(false);
      expect(errors(r)).toEqual([
        {
          severity: 'error',
          where: 'resnet/1/model.pt',
          message:
            'is a FIFO (named pipe), not a file: Triton cannot load it (and the check does not read it)',
        },
      ]);
    });

    test('a link to /dev/zero as the model file is an error (it used to be "valid")', async () => {
      const root = await artifact((v) => fs.symlink('/dev/zero', path.join(v, 'model.pt')));
      const r = await validateArtifact(root, { limits, tmpDir: tmp });
      expect(r.valid).toBe(false);
      expect(errors(r)).toEqual([
        {
          severity: 'error',
          where: 'resnet/1/model.pt',
          message:
            "links to '/dev/zero', which is a character device, not a file: Triton cannot load it (and the check does not read it)",
        },
      ]);
      const out = await command([root], tmp);
      expect(out.code).toBe(1);
      expect(out.out).toContain(`${root}: INVALID`);
    });

    const byWhere = (a: Finding, b: Finding) => a.where.localeCompare(b.where);

    test('a link to a FIFO, and a FIFO or a link to a device elsewhere in the tree, are errors', async () => {
      const root = await artifact(async (v) => {
        execFileSync('mkfifo', [path.join(v, 'weights.pipe')]);
        await fs.symlink('weights.pipe', path.join(v, 'model.pt'));
        await fs.symlink('/dev/null', path.join(v, 'null'));
      });
      const r = await validateArtifact(root, { limits, tmpDir: tmp });
      expect(r.valid).toBe(false);
      expect(errors(r).sort(byWhere)).toEqual([
        {
          severity: 'error',
          where: 'resnet/1/model.pt',
          message: expect.stringMatching(
            /^links to 'weights\.pipe', which is a FIFO \(named pipe\), not a file/,
          ),
        },
        {
          severity: 'error',
          where: 'resnet/1/null',
          message: expect.stringMatching(
            /^links to '\/dev\/null', a character device; an artifact may hold only/,
          ),
        },
        {
          severity: 'error',
          where: 'resnet/1/weights.pipe',
          message: expect.stringMatching(/^is a FIFO \(named pipe\); an artifact may hold only files/),
        },
      ]);
    });

    test('links out of the artifact or to nothing are errors, as the loader refuses them (and as an archive would be)', async () => {
      const outside = path.join(work.dir, 'outside.pt');
      await fs.writeFile(outside, 'weights');
      const root = await artifact(async (v) => {
        await fs.symlink(outside, path.join(v, 'model.pt'));
        await fs.symlink('nothing-here', path.join(v, 'dangling'));
      });
      const r = await validateArtifact(root, { limits, tmpDir: tmp });
      expect(r.valid).toBe(false);
      expect(r.findings.sort(byWhere)).toEqual([
        {
          severity: 'error',
          where: 'resnet/1/dangling',
          message: "links to 'nothing-here', which does not exist",
        },
        {
          severity: 'error',
          where: 'resnet/1/model.pt',
          message: `links to '${outside}', outside the artifact (links must stay inside it, as in an archive)`,
        },
      ]);
    });

    test('a loop of links as the model file is an error, not a crash', async () => {
      const root = await artifact(async (v) => {
        await fs.symlink('b', path.join(v, 'a'));
        await fs.symlink('a', path.join(v, 'b'));
        await fs.symlink('a', path.join(v, 'model.pt'));
      });
      const r = await validateArtifact(root, { limits, tmpDir: tmp });
      expect(errors(r).sort(byWhere)).toEqual([
        { severity: 'error', where: 'resnet/1/a', message: "links to 'b', which is a loop of links" },
        { severity: 'error', where: 'resnet/1/b', message: "links to 'a', which is a loop of links" },
        { severity: 'error', where: 'resnet/1/model.pt', message: "links to 'a', which is a loop of links" },
      ]);
    });

    test('a directory where one file belongs is an error; SavedModel and ONNX may be directories', async () => {
      const pt = await artifact((v) => fs.mkdir(path.join(v, 'model.pt')));
      expect(errors(await validateArtifact(pt, { limits, tmpDir: tmp }))).toEqual([
        {
          severity: 'error',
          where: 'resnet/1/model.pt',
          message: 'is a directory; a pytorch_libtorch model is one file',
        },
      ]);
      await fs.rm(path.join(work.dir, 'model'), { recursive: true });
      const tf = resnetPtConfig().replace('pytorch_libtorch', 'tensorflow_savedmodel');
      const saved = await artifact((v) => fs.mkdir(path.join(v, 'model.savedmodel')), tf);
      expect((await validateArtifact(saved, { limits, tmpDir: tmp })).valid).toBe(true);
      await fs.rm(path.join(work.dir, 'model'), { recursive: true });
      const asFile = await artifact((v) => fs.writeFile(path.join(v, 'model.savedmodel'), 'x'), tf);
      expect(errors(await validateArtifact(asFile, { limits, tmpDir: tmp }))[0].message).toBe(
        'is a file; a tensorflow_savedmodel model is a directory',
      );
    });

    test('a directory with more entries than the loader allows is scanned only that far, with a warning', async () => {
      const root = await artifact(async (v) => {
        await fs.writeFile(path.join(v, 'model.pt'), 'w');
        for (let i = 0; i < 30; i++) await fs.writeFile(path.join(v, `f${i}`), 'x');
      });
      const r = await validateArtifact(root, { limits: { maxEntries: 10, maxBytes: 1 << 20 }, tmpDir: tmp });
      expect(r.valid).toBe(true);
      expect(r.findings[0]).toMatchObject({
        severity: 'warning',
        message: expect.stringMatching(/more than 10 entries/),
      });
    });
  });

  describe('temporary space: a budget, the free space, a full disk', () => {
    test('over --max-unpack-bytes: one line, exit 2, the temporary copy removed', async () => {
      const file = path.join(work.dir, 'big.tar.gz');
      await zerosArchive(file, 4);
      const r = await command(['--max-unpack-bytes', '1MiB', file], tmp);
      expect(r.code).toBe(2);
      expect(r.err).toBe(
        `validate: '${file}' unpacks to more than 1MiB (--max-unpack-bytes 1048576); raise --max-unpack-bytes to check it`,
      );
      expect(r.left).toEqual([]);
      // Within the budget it is checked as usual.
      const ok = await command(['--max-unpack-bytes', '8MiB', file], tmp);
      expect(ok).toMatchObject({ code: 0, left: [] });
      await expect(
        validateArtifact(file, { limits, tmpDir: tmp, maxUnpackBytes: 1000 }),
      ).rejects.toMatchObject({
        code: ErrorCode.InsufficientCapacity,
      });
      expect(await fs.readdir(tmp)).toEqual([]);
    });

    test("the loader's own limit, when it is the lower, is still a finding (the artifact is invalid)", async () => {
      const file = path.join(work.dir, 'big.tar.gz');
      await zerosArchive(file, 2);
      const r = await command(['--json', '--max-unpack-bytes', '64MiB', file], tmp, {
        AGENT_MAX_ARTIFACT_BYTES: String(1024 * 1024),
      });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.out).findings[0].message).toMatch(/unpacks to more than 1048576 bytes/);
    });

    test('less free space than the archive needs (statfs): one line naming TMPDIR, nothing left', async () => {
      const file = path.join(work.dir, 'big.tar.gz');
      await zerosArchive(file, 4);
      const realStatfs = fsModule.statfs;
      jest.spyOn(fsModule, 'statfs').mockImplementation(async (p, o) => {
        const s = await realStatfs(p, o as { bigint?: false });
        return { ...s, bavail: 2, bsize: 1024 * 1024 } as unknown as Awaited<ReturnType<typeof realStatfs>>;
      });
      const r = await command([file], tmp);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(
        /^validate: '.*big\.tar\.gz' needs more temporary space than is free in '.*tmp\/mme-validate-\w+' \(2MiB free when the check began\); free some or point TMPDIR at a larger disk$/,
      );
      expect(r.left).toEqual([]);
    });

    test('ENOSPC while unpacking (a full TMPDIR) is one line, no stack, exit 2, nothing left', async () => {
      const file = path.join(work.dir, 'a.tar.gz');
      await fs.writeFile(
        file,
        await buildTar(resnetArtifactEntries(resnetPtConfig(), Buffer.alloc(5000, 1))),
      );
      const realOpen = fsModule.open;
      jest.spyOn(fsModule, 'open').mockImplementation(async (p, flags, mode) => {
        const fh = await realOpen(p, flags, mode);
        if (typeof flags === 'number' && flags & fs.constants.O_EXCL) {
          const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          Object.assign(fh, { write: () => Promise.reject(full) });
        }
        return fh;
      });
      const r = await command([file], tmp);
      expect(r.code).toBe(2);
      expectOneLine(r.err);
      expect(r.err).toMatch(
        /^validate: no space left in '.*tmp\/mme-validate-\w+' while unpacking '.*a\.tar\.gz' \(ENOSPC\); free some or point TMPDIR at a larger disk$/,
      );
      expect(r.left).toEqual([]);
    });

    test('no room for the temporary directory itself: one line, exit 2', async () => {
      const file = path.join(work.dir, 'a.tar.gz');
      await fs.writeFile(file, await buildTar(resnetArtifactEntries(resnetPtConfig(), 'w')));
      const full = Object.assign(new Error(`ENOSPC: no space left on device, mkdtemp '${tmp}/x'`), {
        code: 'ENOSPC',
      });
      jest.spyOn(fsModule, 'mkdtemp').mockRejectedValue(full);
      const r = await command([file], tmp);
      expect(r.code).toBe(2);
      expectOneLine(r.err);
      expect(r.err).toMatch(/^validate: cannot create a temporary directory in '.*tmp' \(TMPDIR\): ENOSPC/);
      await expect(validateArtifact(file, { limits, tmpDir: tmp })).rejects.toThrow(
        /^no space left in '.*tmp' for a temporary directory; free some or point TMPDIR at a larger disk$/,
      );
      // A TMPDIR that does not exist.
      jest.restoreAllMocks();
      const missing = await command([file], path.join(work.dir, 'no-such-dir'));
      expect(missing.code).toBe(2);
      expect(missing.err).toMatch(
        /^validate: cannot create a temporary directory in '.*no-such-dir' \(TMPDIR\): ENOENT/,
      );
    });
  });

  describe('time', () => {
    test('over --timeout-seconds: one line, exit 2, the temporary copy removed', async () => {
      const file = path.join(work.dir, 'slow.tar.gz');
      await zerosArchive(file, 2048);
      const started = Date.now();
      const r = await command(['--timeout-seconds', '0.2', '--max-unpack-bytes', '4GiB', file], tmp);
      expect(r.code).toBe(2);
      expect(r.err).toBe(
        `validate: gave up on '${file}' after 0.2 s (--timeout-seconds); its temporary files are removed`,
      );
      expect(r.left).toEqual([]);
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    test('an aborted check rejects with the reason and leaves nothing', async () => {
      const file = path.join(work.dir, 'a.tar.gz');
      await fs.writeFile(file, await buildTar(resnetArtifactEntries(resnetPtConfig(), 'w')));
      const reason = new AgentError(ErrorCode.DeadlineExceeded, 'late');
      await expect(
        validateArtifact(file, { limits, tmpDir: tmp, signal: AbortSignal.abort(reason) }),
      ).rejects.toBe(reason);
      expect(await fs.readdir(tmp)).toEqual([]);
    });
  });

  describe('options are parsed strictly', () => {
    test.each([
      [
        ['--timeout-seconds', '0', 'x.tar.gz'],
        /--timeout-seconds must be a number of seconds above 0 and at most 604800, got '0'/,
      ],
      [['--timeout-seconds=-1', 'x.tar.gz'], /--timeout-seconds .* got '-1'/],
      [['--timeout-seconds', '1e400', 'x.tar.gz'], /got '1e400'/],
      [['--timeout-seconds', 'soon', 'x.tar.gz'], /got 'soon'/],
      [['--timeout-seconds', '99999999', 'x.tar.gz'], /got '99999999'/],
      [
        ['--max-unpack-bytes', '9'.repeat(400), 'x.tar.gz'],
        /--max-unpack-bytes: '9+… \(400 characters\)' is too large a size/,
      ],
      [['--max-unpack-bytes', '0', 'x.tar.gz'], /--max-unpack-bytes: '0' is not a positive size/],
      [['--max-unpack-bytes', 'lots', 'x.tar.gz'], /'lots' is not a size/],
      [['x.tar.gz', '--max-unpack-bytes'], /argument missing/],
      [['--frobnicate', 'x.tar.gz'], /unknown option '--frobnicate'/],
      [[], /name at least one artifact/],
    ])('%j: exit 2, one line', async (args, message) => {
      const r = await command(args, tmp);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(message);
      expectOneLine(r.err);
      expect(r.left).toEqual([]);
    });
  });

  describe('ScratchDir', () => {
    test.each([
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ] as const)('%s removes the directory, exits with %i, and unhooks', async (signal, code) => {
      const before = process.listenerCount(signal);
      const exits: number[] = [];
      const told: string[] = [];
      const scratch = await ScratchDir.create(tmp, 'mme-validate-', {
        exit: (c) => exits.push(c),
        onSignal: (s, removed) => told.push(`${s} ${removed}`),
      });
      await fs.mkdir(path.join(scratch.path, 'artifact', 'resnet'), { recursive: true });
      await fs.writeFile(path.join(scratch.path, 'artifact', 'resnet', 'model.pt'), Buffer.alloc(1 << 20));
      expect(process.listenerCount(signal)).toBe(before + 1);
      process.emit(signal, signal);
      expect(exits).toEqual([code]);
      expect(told).toEqual([`${signal} true`]);
      expect(await fs.readdir(tmp)).toEqual([]);
      expect(process.listenerCount(signal)).toBe(before);
      await scratch.dispose();
    });

    test('dispose removes the directory and every handler', async () => {
      const counts = () => ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit'].map((s) => process.listenerCount(s));
      const before = counts();
      const scratch = await ScratchDir.create(tmp, 'mme-validate-');
      expect(counts()).toEqual(before.map((n) => n + 1));
      await scratch.dispose();
      await scratch.dispose();
      expect(counts()).toEqual(before);
      expect(await fs.readdir(tmp)).toEqual([]);
    });
  });

  test('a directory-only run creates nothing in TMPDIR', async () => {
    const root = path.join(work.dir, 'model');
    await writeModel(root, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 10 } } });
    const r = await command([root], tmp);
    expect(r).toMatchObject({ code: 0, left: [] });
  });
});
