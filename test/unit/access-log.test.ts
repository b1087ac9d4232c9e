import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { loadConfig } from '../../src/config';
import { AccessLog, openAccessLog, type AccessLogLine } from '../../src/observability';
import { ManualClock } from '../support/manual-clock';

async function readLines(file: string): Promise<AccessLogLine[]> {
  const text = await fsp.readFile(file, 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AccessLogLine);
}

describe('AccessLog', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'access-log-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('an open that does not finish within its bound fails naming the file; the late handle is closed', async () => {
    const openFds = () => fs.readdirSync('/proc/self/fd').length;
    const before = openFds();
    const clock = new ManualClock();
    const file = path.join(dir, 'slow', 'access.log');
    const opening = AccessLog.open({ file, maxBytes: 1 << 20, maxFiles: 2, clock }).then(
      () => 'opened',
      (err: Error) => err.message,
    );
    // The bound passes before the filesystem answers (its calls run on libuv's threads, not in this turn).
    await clock.advance(5_000);
    expect(await opening).toBe(`opening the access log '${file}' did not finish within 5000 ms`);
    expect(clock.pendingTimers()).toBe(0);
    // The open itself still finishes: the file appears, and its handle is closed rather than kept.
    for (let i = 0; i < 1000 && !(fs.existsSync(file) && openFds() <= before); i++)
      await new Promise((r) => setImmediate(r)); // an event-loop turn, not a wait on time
    expect(fs.existsSync(file)).toBe(true);
    expect(openFds()).toBeLessThanOrEqual(before);
  });

  test('writes one JSON line per invocation and lifecycle event, read back as written', async () => {
    const file = path.join(dir, 'logs', 'access.log');
    const log = await AccessLog.open({ file, maxBytes: 1 << 20, maxFiles: 2 });
    log.lifecycle({
      event: 'load',
      model: 'resnet',
      footprintBytes: 2e9,
      loadMs: 1500,
      downloadMs: 300,
      evicted: ['old'],
      time: Date.UTC(2026, 0, 1, 0, 0, 0, 5),
    });
    log.invoke({ model: 'resnet', hit: false, footprintBytes: 2e9, loadMs: 1500, waitMs: 1800, time: 1e12 });
    log.invoke({ model: 'resnet', hit: true, time: 1e12 + 10 });
    await log.close();
    const lines = await readLines(file);
    expect(lines).toEqual([
      {
        time: '2026-01-01T00:00:00.005Z',
        type: 'lifecycle',
        event: 'load',
        model: 'resnet',
        footprintBytes: 2e9,
        loadMs: 1500,
        downloadMs: 300,
        evicted: ['old'],
      },
      {
        time: new Date(1e12).toISOString(),
        type: 'invoke',
        outcome: 'cold',
        model: 'resnet',
        footprintBytes: 2e9,
        loadMs: 1500,
        waitMs: 1800,
      },
      { time: new Date(1e12 + 10).toISOString(), type: 'invoke', outcome: 'hit', model: 'resnet' },
    ]);
    expect(log.stats()).toMatchObject({ written: 3, dropped: 0, rotations: 0 });
  });

  test('appends to an existing file', async () => {
    const file = path.join(dir, 'access.log');
    await fsp.writeFile(file, '{"earlier":true}\n');
    const log = await AccessLog.open({ file, maxBytes: 1 << 20, maxFiles: 1 });
    log.invoke({ model: 'a', hit: true, time: 0 });
    await log.close();
    const text = await fsp.readFile(file, 'utf8');
    expect(text.split('\n')[0]).toBe('{"earlier":true}');
    expect(text.split('\n')).toHaveLength(3);
  });

  test('rotates by size: no file exceeds maxBytes, the newest lines are in FILE, older ones in FILE.1, FILE.2; the oldest beyond maxFiles are deleted', async () => {
    const file = path.join(dir, 'access.log');
    const maxBytes = 1000;
    const log = await AccessLog.open({ file, maxBytes, maxFiles: 2 });
    const total = 200;
    for (let i = 0; i < total; i++) {
      log.invoke({ model: `model-${i}`, hit: i % 3 !== 0, time: 1e12 + i });
      // Let the writer run now and then, so batches of different sizes meet the size limit.
      if (i % 17 === 0) await new Promise((r) => setImmediate(r));
    }
    await log.close();
    const names = (await fsp.readdir(dir)).sort();
    expect(names).toEqual(['access.log', 'access.log.1', 'access.log.2']);
    const files = [`${file}.2`, `${file}.1`, file];
    const kept: number[] = [];
    for (const f of files) {
      expect(fs.statSync(f).size).toBeLessThanOrEqual(maxBytes);
      for (const l of await readLines(f)) kept.push(Number((l as { model: string }).model.slice(6)));
    }
    // What is kept is the newest lines, in order, with nothing missing in between.
    expect(kept.length).toBeGreaterThan(0);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, k) => total - kept.length + k));
    const { written, dropped, rotations } = log.stats();
    expect(written).toBe(total);
    expect(dropped).toBe(0);
    // Each rotation starts a new file; files before the kept three were deleted.
    expect(rotations).toBeGreaterThanOrEqual(Math.ceil((total * 60) / maxBytes) - 1);
    expect(kept.length).toBeLessThan(total);
  });

  test('a new file that cannot be created: no rotated file is shifted or deleted, lines go on in FILE', async () => {
    const file = path.join(dir, 'access.log');
    await fsp.writeFile(`${file}.1`, 'older\n');
    await fsp.writeFile(`${file}.2`, 'oldest\n');
    // Something in the way of the new file (a directory where it is made).
    await fsp.mkdir(`${file}.next`);
    await fsp.writeFile(path.join(`${file}.next`, 'x'), '');
    const errors: string[] = [];
    const log = await AccessLog.open({
      file,
      maxBytes: 300,
      maxFiles: 2,
      onError: (e) => errors.push(e.message),
    });
    for (let i = 0; i < 20; i++) {
      log.invoke({ model: `model-${i}`, hit: true, time: 1e12 + i });
      await log.flush();
    }
    await log.close();
    expect(await fsp.readFile(`${file}.1`, 'utf8')).toBe('older\n');
    expect(await fsp.readFile(`${file}.2`, 'utf8')).toBe('oldest\n');
    expect((await readLines(file)).length).toBe(20);
    expect(log.stats().dropped).toBe(0);
    // Every batch tried to rotate and failed; the failure was told once (rate-limited), not twenty times.
    expect(errors).toHaveLength(1);
  });

  test('failures are told at most once per 10 s, with the count of those in between', async () => {
    const file = path.join(dir, 'access.log');
    await fsp.mkdir(`${file}.next`);
    await fsp.writeFile(path.join(`${file}.next`, 'x'), '');
    let now = 0;
    const errors: string[] = [];
    const log = await AccessLog.open({
      file,
      maxBytes: 100,
      maxFiles: 1,
      now: () => now,
      onError: (e) => errors.push(e.message),
    });
    for (let i = 0; i < 30; i++) {
      now += 1_000;
      log.invoke({ model: `model-${i}`, hit: true });
      await log.flush();
    }
    await log.close();
    // 30 failures over 30 s: told at 1 s, 11 s, 21 s; the later reports count what was held back.
    expect(errors).toHaveLength(3);
    expect(errors[1]).toMatch(/and 9 more failures since the last report/);
  });

  test('a path on a pseudo filesystem, a FIFO or a link: refused at once with a clear error', async () => {
    await expect(
      AccessLog.open({ file: '/proc/self/access.log', maxBytes: 1000, maxFiles: 1 }),
    ).rejects.toThrow(/on a pseudo filesystem/);
    await expect(
      AccessLog.open({ file: '/proc/nonexistent/deeper/access.log', maxBytes: 1000, maxFiles: 1 }),
    ).rejects.toThrow(/on a pseudo filesystem/);
    const fifo = path.join(dir, 'fifo.log');
    execFileSync('mkfifo', [fifo]);
    await expect(AccessLog.open({ file: fifo, maxBytes: 1000, maxFiles: 1 })).rejects.toThrow();
    const link = path.join(dir, 'link.log');
    await fsp.symlink('/dev/null', link);
    await expect(AccessLog.open({ file: link, maxBytes: 1000, maxFiles: 1 })).rejects.toThrow();
    // Only its own folder is made, not a chain of them.
    await expect(
      AccessLog.open({ file: path.join(dir, 'a', 'b', 'access.log'), maxBytes: 1000, maxFiles: 1 }),
    ).rejects.toThrow(/ENOENT/);
  });

  test('a full queue drops and counts lines instead of growing', async () => {
    const file = path.join(dir, 'access.log');
    const log = await AccessLog.open({ file, maxBytes: 1 << 20, maxFiles: 1, bufferBytes: 2000 });
    // Synchronously, so the writer cannot drain the queue meanwhile.
    for (let i = 0; i < 500; i++) log.invoke({ model: `m${i}`, hit: true, time: 0 });
    expect(log.stats().queuedBytes).toBeLessThanOrEqual(2000);
    await log.close();
    const { written, dropped } = log.stats();
    expect(written + dropped).toBe(500);
    expect(dropped).toBeGreaterThan(0);
    expect((await readLines(file)).length).toBe(written);
    // After close, lines are dropped too.
    log.invoke({ model: 'late', hit: true });
    expect(log.stats().dropped).toBe(dropped + 1);
  });

  test('invoke returns before anything is written (the write is asynchronous)', async () => {
    const file = path.join(dir, 'access.log');
    const log = await AccessLog.open({ file, maxBytes: 1 << 20, maxFiles: 1 });
    log.invoke({ model: 'a', hit: true, time: 0 });
    expect(log.stats().written).toBe(0);
    await log.flush();
    expect(log.stats().written).toBe(1);
    await log.close();
  });

  test('bad settings are refused before any file is made', async () => {
    await expect(AccessLog.open({ file: 'relative.log', maxBytes: 10, maxFiles: 1 })).rejects.toThrow(
      /absolute path/,
    );
    await expect(AccessLog.open({ file: path.join(dir, 'a.log'), maxBytes: 0, maxFiles: 1 })).rejects.toThrow(
      /maxBytes/,
    );
    await expect(
      AccessLog.open({ file: path.join(dir, 'a.log'), maxBytes: 10, maxFiles: -1 }),
    ).rejects.toThrow(/maxFiles/);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  test('off by default: the default configuration gives a log that writes nothing', async () => {
    const config = loadConfig({ TRITON_MODEL_REPOSITORY: '/models' });
    expect(config.accessLogFile).toBeUndefined();
    const log = await openAccessLog(config);
    expect(log.enabled).toBe(false);
    log.invoke({ model: 'a', hit: true });
    await log.close();
    expect(log.stats().written).toBe(0);
  });

  test('settings turn it on: AGENT_ACCESS_LOG_FILE, _MAX_BYTES, _FILES', async () => {
    const file = path.join(dir, 'agent.log');
    const config = loadConfig({
      TRITON_MODEL_REPOSITORY: '/models',
      AGENT_ACCESS_LOG_FILE: file,
      AGENT_ACCESS_LOG_MAX_BYTES: '8192',
      AGENT_ACCESS_LOG_FILES: '3',
    });
    expect(config).toMatchObject({ accessLogFile: file, accessLogMaxBytes: 8192, accessLogFiles: 3 });
    const log = await openAccessLog(config);
    log.invoke({ model: 'a', hit: false, time: 0 });
    await log.close();
    expect(await readLines(file)).toHaveLength(1);
    expect(() => loadConfig({ TRITON_MODEL_REPOSITORY: '/models', AGENT_ACCESS_LOG_FILE: 'x.log' })).toThrow(
      /AGENT_ACCESS_LOG_FILE must be an absolute path/,
    );
  });
});

describe('AccessLog rotation (property test against a brute-force oracle)', () => {
  test('whatever the line sizes, limits and write timing, the files hold what greedy line-by-line rotation gives', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 1, maxLength: 80 }),
        fc.integer({ min: 150, max: 900 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.integer({ min: 0, max: 79 }), { maxLength: 5 }),
        async (pads, maxBytes, maxFiles, pauses) => {
          const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'access-log-prop-'));
          try {
            const file = path.join(dir, 'a.log');
            const log = await AccessLog.open({ file, maxBytes, maxFiles });
            const model = (i: number) => `${i}:${'x'.repeat(pads[i])}`;
            for (let i = 0; i < pads.length; i++) {
              log.invoke({ model: model(i), hit: true, time: 0 });
              if (pauses.includes(i)) await log.flush();
            }
            await log.close();
            // Oracle: each line goes into the current file unless that would take a non-empty file past
            // maxBytes, in which case the file is rotated first; the newest maxFiles rotated files are kept.
            const files: string[][] = [[]];
            let size = 0;
            for (let i = 0; i < pads.length; i++) {
              const text = `${JSON.stringify({ time: new Date(0).toISOString(), type: 'invoke', outcome: 'hit', model: model(i) })}\n`;
              const len = Buffer.byteLength(text);
              if (size > 0 && size + len > maxBytes) {
                files.push([]);
                size = 0;
              }
              files[files.length - 1].push(model(i));
              size += len;
            }
            const expected = files.slice(-(maxFiles + 1));
            const names = [...expected.keys()].map((k) =>
              k === expected.length - 1 ? file : `${file}.${expected.length - 1 - k}`,
            );
            expect((await fsp.readdir(dir)).sort()).toEqual(names.map((n) => path.basename(n)).sort());
            for (let k = 0; k < names.length; k++)
              expect((await readLines(names[k])).map((l) => (l as { model: string }).model)).toEqual(
                expected[k],
              );
            expect(log.stats()).toMatchObject({
              written: pads.length,
              dropped: 0,
              rotations: files.length - 1,
            });
          } finally {
            await fsp.rm(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
