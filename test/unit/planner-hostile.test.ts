import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { runCli } from '../../src/cli';
import {
  LineSplitter,
  MAX_LINE_BYTES,
  formatPlan,
  parseByteSize,
  planCapacity,
  plausibleTimeWindow,
  readAccessLogs,
  renderChart,
  type RequestLog,
} from '../../src/planner';

const GiB = 1024 ** 3;
const T0 = Date.UTC(2026, 0, 1);
/** "Now" for the readers below: a day after the logs start, so T0 is neither future nor stale. */
const NOW = T0 + 86_400_000;

interface Line {
  time: number | string;
  type: 'invoke' | 'lifecycle';
  model: string;
  outcome?: 'hit' | 'cold';
  event?: string;
  footprintBytes?: number;
  loadMs?: number;
  downloadMs?: number;
  waitMs?: number;
}

const iso = (t: number) => new Date(t).toISOString();
const line = (l: Line) => JSON.stringify({ ...l, time: typeof l.time === 'number' ? iso(l.time) : l.time });

/** Four 1 GiB models round robin, one request a second, loads of 2 s: the planner test's clean log. */
function roundRobin(cycles: number): string[] {
  const out: string[] = [];
  let t = T0;
  for (let c = 0; c < cycles; c++) {
    for (const model of ['a', 'b', 'c', 'd']) {
      const first = c === 0;
      if (first)
        out.push(
          line({ time: t, type: 'lifecycle', event: 'load', model, footprintBytes: GiB, loadMs: 2000 }),
        );
      out.push(
        line({
          time: t,
          type: 'invoke',
          outcome: first ? 'cold' : 'hit',
          model,
          footprintBytes: GiB,
          waitMs: first ? 2000 : 0,
          ...(first ? { loadMs: 2000 } : {}),
        }),
      );
      t += 1000;
    }
  }
  return out;
}

/** Every number the plan or the log holds, for "all finite" checks. */
function numbersOf(log: RequestLog): number[] {
  return [
    ...log.models.flatMap((m) => [m.sizeBytes, m.loadCostMs, m.downloadMs ?? 0]),
    ...log.times,
    ...log.observedWaitMs,
    log.observedHits,
    log.lines,
    log.usedLines,
    log.skippedLines,
  ];
}

describe('planner: hostile access logs', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'planner-hostile-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const write = async (lines: string[], name = 'access.log') => {
    const file = path.join(dir, name);
    await fsp.writeFile(file, `${lines.join('\n')}\n`);
    return file;
  };

  const plan = (log: RequestLog) =>
    planCapacity(log, { gpuBytes: [3 * GiB, 4 * GiB], headroomBytes: 0, policies: ['lru', 'gdsf'] });

  test('a null line (and any JSON that is not an object) is skipped and counted, not fatal', async () => {
    const clean = roundRobin(5);
    const file = await write([...clean.slice(0, 3), 'null', '[]', '42', '"text"', 'true', ...clean.slice(3)]);
    const log = await readAccessLogs([file], { now: NOW });
    expect(log.skipped.notObject).toBe(5);
    expect(log).toMatchObject({ lines: clean.length + 5, usedLines: clean.length, skippedLines: 5 });
    expect(log.requests.length).toBe(20);
  });

  test('requests for models that do not exist (the agent logs every invocation) ask nothing of a GPU', async () => {
    const clean = roundRobin(5);
    const unknown =
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"cold","model":"nobody","waitMs":0,"error":"MODEL_NOT_FOUND"}';
    const failedLoad =
      '{"time":"2026-01-01T00:00:01.500Z","type":"invoke","outcome":"cold","model":"a","waitMs":300,"error":"MODEL_NOT_READY"}';
    const log = await readAccessLogs([await write([unknown, unknown, failedLoad, ...clean])], { now: NOW });
    expect(log.skipped.unknownModel).toBe(2);
    // A request that failed waiting for its model's load was demand all the same.
    expect(log.usedLines).toBe(clean.length + 1);
    expect(log.models.map((m) => m.name)).not.toContain('nobody');
  });

  test('numbers that are not finite, negative, mistyped or absurd skip their line; the rest is used', async () => {
    const clean = roundRobin(5);
    const bad = [
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"hit","model":"a","footprintBytes":1e308}',
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"hit","model":"a","footprintBytes":1e400}',
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"cold","model":"a","loadMs":-5}',
      '{"time":"2026-01-01T00:00:01.000Z","type":"lifecycle","event":"load","model":"a","loadMs":1e20}',
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"hit","model":"a","waitMs":86400001}',
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"hit","model":"a","downloadMs":-1e308}',
    ];
    const mistyped =
      '{"time":"2026-01-01T00:00:01.000Z","type":"invoke","outcome":"hit","model":"a","footprintBytes":"5"}';
    const log = await readAccessLogs([await write([...bad, mistyped, ...clean])], { now: NOW });
    expect(log.skipped).toMatchObject({ outOfRange: bad.length, malformed: 1 });
    expect(log.usedLines).toBe(clean.length);
    // Nothing from the skipped lines leaks into the models: the clean numbers stand.
    expect(log.models.map((m) => [m.name, m.sizeBytes, m.loadCostMs])).toEqual(
      ['a', 'b', 'c', 'd'].map((m) => [m, GiB, 2000]),
    );
    for (const v of numbersOf(log)) expect(Number.isFinite(v)).toBe(true);
  });

  test('one timestamp in year 275760 (or 1970, or 2001 in a 2026 log) does not turn every rate to 0', async () => {
    const clean = roundRobin(25);
    const expected = plan(await readAccessLogs([await write(clean, 'clean.log')], { now: NOW }));
    const stray = (time: string) =>
      `{"time":"${time}","type":"invoke","outcome":"hit","model":"a","footprintBytes":${GiB}}`;
    const file = await write([
      ...clean.slice(0, 50),
      stray('+275760-09-13T00:00:00.000Z'),
      stray('275760-09-13T00:00:00.000Z'),
      stray('1970-01-01T00:00:00.000Z'),
      stray('2999-01-01T00:00:00.000Z'),
      stray('May 5, 2026'),
      stray('1'),
      stray(iso(Date.UTC(2027, 6, 3))),
      stray('2001-06-01T00:00:00.000Z'),
      stray('2027-06-01T00:00:00.000Z'),
      ...clean.slice(50),
    ]);
    const log = await readAccessLogs([file], { now: Date.UTC(2027, 6, 1) });
    expect(log.skipped).toMatchObject({ badTime: 7, outlierTime: 2 });
    expect(log.usedLines).toBe(clean.length);
    const got = plan(log);
    expect(got.hours).toBeCloseTo(expected.hours, 12);
    expect(got.rows).toEqual(expected.rows);
    expect(got.rows.every((r) => r.coldLoadsPerHour > 100)).toBe(true);
  });

  test('plausible time window: quiet nights, weekends and bursts are kept, a stray year is cut', () => {
    const hour = 3_600_000;
    // Office hours over two weeks: 9:00 to 17:00 on weekdays, a request a minute.
    const office: number[] = [];
    for (let day = 0; day < 14; day++)
      if (day % 7 < 5)
        for (let m = 0; m < 8 * 60; m++) office.push(T0 + day * 24 * hour + 9 * hour + m * 60_000);
    expect(plausibleTimeWindow(office)).toEqual({ from: office[0], to: office[office.length - 1] });
    // A burst: 900 requests in ten minutes, 100 more over the rest of the day.
    const burst = [
      ...Array.from({ length: 900 }, (_, i) => T0 + 12 * hour + i * 666),
      ...Array.from({ length: 100 }, (_, i) => T0 + i * 14 * 60_000),
    ];
    expect(plausibleTimeWindow(burst)).toEqual({ from: Math.min(...burst), to: Math.max(...burst) });
    const stray = [...office, Date.UTC(2001, 0, 1), Date.UTC(2030, 0, 1)];
    expect(plausibleTimeWindow(stray)).toEqual({ from: office[0], to: office[office.length - 1] });
  });

  test('a line longer than the limit is skipped and counted, and the lines around it are read', async () => {
    const clean = roundRobin(5);
    const file = path.join(dir, 'long.log');
    const long = `{"time":"${iso(T0)}","type":"invoke","outcome":"hit","model":"${'x'.repeat(3 * MAX_LINE_BYTES)}"}`;
    await fsp.writeFile(file, `${clean.slice(0, 4).join('\n')}\n${long}\n${clean.slice(4).join('\n')}`);
    const log = await readAccessLogs([file], { now: NOW });
    expect(log.skipped.tooLong).toBe(1);
    expect(log).toMatchObject({ lines: clean.length + 1, usedLines: clean.length });
    // A valid record is skipped too when padded past the limit: the limit is on bytes, not content.
    const padded = `${clean[1].slice(0, -1)}${' '.repeat(200)}}`;
    const small = await readAccessLogs([await write([clean[0], padded, clean[1]], 'small.log')], {
      now: NOW,
      maxLineBytes: 200,
    });
    expect(small.skipped.tooLong).toBe(1);
  });

  test('a 600 MiB line through a pipe is streamed past, not buffered (readline threw or held it all)', async () => {
    const fifo = path.join(dir, 'pipe.log');
    execFileSync('mkfifo', [fifo]);
    const clean = roundRobin(2);
    const writing = (async () => {
      const out = createWriteStream(fifo);
      const chunk = Buffer.alloc(1 << 20, 'x');
      const put = async (b: Buffer | string) => {
        if (!out.write(b)) await once(out, 'drain');
      };
      await put(`${clean[0]}\n{"model":"`);
      for (let i = 0; i < 600; i++) await put(chunk);
      await put(`"}\n${clean.slice(1).join('\n')}\n`);
      out.end();
      await once(out, 'close');
    })();
    const before = process.memoryUsage().rss;
    const log = await readAccessLogs([fifo], { now: NOW });
    await writing;
    expect(log.skipped.tooLong).toBe(1);
    expect(log).toMatchObject({ lines: clean.length + 1, usedLines: clean.length });
    // Held whole, the line alone would add 600 MiB; streamed, the reader stays within a few chunks.
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
  }, 60_000);

  test('logs that are devices, directories or missing are one-line errors; nothing is read from /dev/zero', async () => {
    await expect(readAccessLogs(['/dev/zero'])).rejects.toThrow(
      /^access log '\/dev\/zero' is a character device, not a file$/,
    );
    await expect(readAccessLogs([dir])).rejects.toThrow(/is a directory, not a file$/);
    await expect(readAccessLogs([path.join(dir, 'none\nx.log')])).rejects.toThrow(
      /^cannot read access log '.*none\\nx\.log': ENOENT/,
    );
  });
});

describe('LineSplitter', () => {
  /** The lines a file holds, by the plain definition, with lines over `max` bytes as undefined. */
  function oracle(text: string, max: number): (string | undefined)[] {
    const parts = text.split('\n');
    if (parts[parts.length - 1] === '') parts.pop();
    return parts.map((p) => (Buffer.byteLength(p) > max ? undefined : p.endsWith('\r') ? p.slice(0, -1) : p));
  }

  test('any chunking gives the same lines: UTF-8 split across chunks, CRLF, overlong lines', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ unit: 'grapheme', maxLength: 30 }),
            fc.string({ unit: 'binary', maxLength: 30 }),
            fc.constantFrom('', '\r', 'é€😀', 'x'.repeat(40)),
          ),
          { maxLength: 20 },
        ),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 32 }),
        (pieces, trailingNewline, cuts, max) => {
          const text = pieces.join('\n') + (trailingNewline ? '\n' : '');
          // Lone surrogates do not survive UTF-8: compare with what the bytes decode to.
          const bytes = Buffer.from(text);
          const decoded = bytes.toString('utf8');
          const got: (string | undefined)[] = [];
          const s = new LineSplitter(max);
          let at = 0;
          for (let i = 0; at < bytes.length; i++) {
            const n = cuts[i % cuts.length];
            s.push(bytes.subarray(at, at + n), (l) => got.push(l));
            at += n;
          }
          s.end((l) => got.push(l));
          expect(got).toEqual(oracle(decoded, max));
        },
      ),
      { numRuns: 500 },
    );
  });

  test('refuses a nonsensical limit', () => {
    expect(() => new LineSplitter(0)).toThrow(RangeError);
    expect(() => new LineSplitter(Infinity)).toThrow(RangeError);
  });
});

describe('planner: property, random and malformed lines', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'planner-prop-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const MAX = 512;
  const model = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const time = fc.integer({ min: 0, max: 3_600_000 }).map((d) => iso(T0 + d));
  const ms = fc.oneof(
    fc.integer({ min: 0, max: 600_000 }),
    fc.double({ min: 0, max: 86_400_000, noNaN: true }),
  );
  const bytes = fc.integer({ min: 1, max: 2 ** 40 });
  const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const invoke = fc.record({
    time,
    type: fc.constant('invoke'),
    outcome: fc.constantFrom('hit', 'cold'),
    model,
    footprintBytes: maybe(bytes),
    loadMs: maybe(ms),
    downloadMs: maybe(ms),
    waitMs: maybe(ms),
  });
  const lifecycle = fc.record({
    time,
    type: fc.constant('lifecycle'),
    event: fc.constantFrom('load', 'evict', 'unload', 'load-failed'),
    model,
    footprintBytes: maybe(bytes),
    loadMs: maybe(ms),
    downloadMs: maybe(ms),
  });
  /** A valid record made invalid in one way the reader must catch. */
  const broken = fc
    .tuple(
      fc.oneof(invoke, lifecycle),
      fc.constantFrom(
        ['footprintBytes', '1e308'],
        ['footprintBytes', '1e400'],
        ['loadMs', '-1'],
        ['waitMs', '1e300'],
        ['downloadMs', '"12"'],
        ['footprintBytes', 'true'],
        ['time', '"+275760-09-13T00:00:00.000Z"'],
        ['time', '"1970-01-01T00:00:00.000Z"'],
        ['time', '"not a time"'],
        ['time', '1767225600000'],
        ['model', '""'],
        ['model', '17'],
        ['model', JSON.stringify('m'.repeat(1100))],
        ['type', '"other"'],
        ['type', 'null'],
      ),
    )
    .map(([rec, [key, raw]]) => {
      const text = JSON.stringify({ ...rec, [key]: '__X__' });
      return text.replace('"__X__"', raw);
    });
  const missing = fc
    .tuple(invoke, fc.constantFrom('time', 'model', 'type', 'outcome'))
    .map(([rec, key]) => JSON.stringify({ ...rec, [key]: undefined }));
  const junk = fc.oneof(
    fc.constantFrom('null', '[]', '[1,2]', '42', '-0', '"s"', 'true', '{}', '{', '{"a":', ''),
    fc.string({ unit: 'grapheme', maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.integer({ min: MAX + 1, max: 4 * MAX }).map((n) => 'z'.repeat(n)),
    fc.oneof(invoke, lifecycle).map((r) => `${JSON.stringify(r).slice(0, -1)}${' '.repeat(MAX)}}`),
  );
  const entry = fc.oneof(
    { weight: 4, arbitrary: invoke.map((r) => ({ text: JSON.stringify(r), valid: true, invoke: true })) },
    { weight: 1, arbitrary: lifecycle.map((r) => ({ text: JSON.stringify(r), valid: true, invoke: false })) },
    { weight: 2, arbitrary: broken.map((text) => ({ text, valid: false, invoke: false })) },
    { weight: 1, arbitrary: missing.map((text) => ({ text, valid: false, invoke: false })) },
    {
      weight: 2,
      arbitrary: junk
        // A random string may contain newlines: it is then several lines, each counted.
        .chain((j) => fc.constant(j.replace(/[\r\n]/g, ' ')))
        .map((text) => ({ text, valid: false, invoke: false })),
    },
  );

  test('never throws but its one documented error, every number is finite, skipped + used = lines', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(entry, { maxLength: 60 }),
        fc.boolean(),
        fc.array(
          fc.integer({ min: 1, max: 64 }).map((g) => g * GiB),
          { minLength: 1, maxLength: 4 },
        ),
        fc.integer({ min: 0, max: 2 }).map((h) => h * GiB),
        async (entries, crlf, gpus, headroom) => {
          const file = path.join(dir, `log-${run++}`);
          const eol = crlf ? '\r\n' : '\n';
          await fsp.writeFile(file, entries.map((e) => `${e.text}${eol}`).join(''));
          const valid = entries.filter((e) => e.valid).length;
          const invokes = entries.filter((e) => e.invoke).length;
          let log: RequestLog;
          try {
            log = await readAccessLogs([file], { now: NOW, maxLineBytes: MAX });
          } catch (err) {
            expect(invokes).toBe(0);
            expect((err as Error).message).toMatch(/^no invocations in /);
            if (entries.length > valid)
              expect((err as Error).message).toContain(
                `skipped ${entries.length - valid} of ${entries.length} lines`,
              );
            return;
          }
          expect(invokes).toBeGreaterThan(0);
          expect(log.lines).toBe(entries.length);
          expect(log.usedLines).toBe(valid);
          expect(log.usedLines + log.skippedLines).toBe(log.lines);
          expect(Object.values(log.skipped).reduce((a, b) => a + b, 0)).toBe(log.skippedLines);
          expect(log.requests.length).toBe(invokes);
          for (const v of numbersOf(log)) expect(Number.isFinite(v)).toBe(true);
          const p = planCapacity(log, { gpuBytes: gpus, headroomBytes: headroom });
          for (const r of p.rows)
            for (const v of [
              r.hitRatio,
              r.coldLoadsPerHour,
              r.coldLoadSecondsPerHour,
              r.p50AddedMs,
              r.p99AddedMs,
            ])
              expect(Number.isFinite(v)).toBe(true);
          for (const v of [p.hours, p.observedHitRatio, p.observedWait?.p50 ?? 0, p.observedWait?.p99 ?? 0])
            expect(Number.isFinite(v)).toBe(true);
          const text = [...formatPlan(p, 'lru'), renderChart(p)].join('\n');
          expect(text).not.toMatch(/NaN|Infinity/);
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);
});

describe('plan: every number on the command line is parsed strictly', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'planner-cli-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const run = async (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const status = await runCli(
      argv,
      (l) => out.push(l),
      (l) => err.push(l),
    );
    return { status, out, err: err.join('\n') };
  };

  test.each([
    [
      '--gpu with 400 digits',
      ['--gpu', '9'.repeat(400)],
      /--gpu: '9{200}… \(400 characters\)' is too large a size/,
    ],
    ['--gpu above 1 PiB', ['--gpu', '2000TiB'], /'2000TiB' is too large a size \(at most 1024TiB\)/],
    ['an exponent', ['--gpu', '1e3GiB'], /'1e3GiB' is not a size/],
    ['hex', ['--gpu', '0x10'], /'0x10' is not a size/],
    ['negative', ['--gpu=-1GiB'], /'-1GiB' is not a size/],
    ['zero', ['--gpu', '0'], /'0' is not a positive size/],
    ['a fraction of a byte', ['--gpu', '0.2'], /'0.2' is not a positive size/],
    ['Infinity', ['--gpu', 'Infinity'], /'Infinity' is not a size/],
    ['a newline', ['--gpu', '1GiB\n2GiB'], /'1GiB\\n2GiB' is not a size/],
    [
      'too many sizes',
      ['--gpu', Array.from({ length: 65 }, (_, i) => `${i + 1}GiB`).join(',')],
      /at most 64/,
    ],
    [
      '--headroom with 400 digits',
      ['--gpu', '1GiB', '--headroom', '9'.repeat(400)],
      /--headroom: .* is too large/,
    ],
    ['an unknown policy', ['--gpu', '1GiB', '--policies', 'fifo'], /unknown eviction policy 'fifo'/],
    ['no policy', ['--gpu', '1GiB', '--policies', ','], /--policies ',' names no policy/],
  ])('%s: exit 2, one line naming it, nothing written', async (_l, args, message) => {
    const chart = path.join(dir, 'c.svg');
    const r = await run(['plan', '--log', path.join(dir, 'x.log'), ...args, '--chart', chart]);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(message);
    expect(r.err).not.toContain('\n');
    expect(r.err).not.toMatch(/InfinityGiB|NaN/);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  test('parseByteSize: random text either parses to a safe whole number within range or is refused', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 30 }),
          fc
            .tuple(
              fc.stringMatching(/^\d{1,30}(\.\d{1,5})?$/),
              fc.constantFrom('', 'B', 'kb', 'MiB', 'GiB', 'TiB', 'x'),
            )
            .map(([n, u]) => `${n}${u}`),
        ),
        (text) => {
          let bytes: number;
          try {
            bytes = parseByteSize(text);
          } catch (err) {
            expect((err as Error).message).toMatch(/is (not a|not a positive|too large a) size/);
            expect((err as Error).message).not.toContain('\n');
            return;
          }
          expect(Number.isSafeInteger(bytes)).toBe(true);
          expect(bytes).toBeGreaterThan(0);
          expect(bytes).toBeLessThanOrEqual(1024 ** 5);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('end to end: a hostile log plans like the clean one and says what it skipped, last', async () => {
    const clean = roundRobin(25);
    const cleanFile = path.join(dir, 'clean.log');
    await fsp.writeFile(cleanFile, `${clean.join('\n')}\n`);
    const hostile = path.join(dir, 'hostile.log');
    await fsp.writeFile(
      hostile,
      [
        ...clean.slice(0, 10),
        'null',
        '{"time":"2026-01-01T00:00:05.000Z","type":"invoke","outcome":"hit","model":"a","footprintBytes":1e308}',
        '{"time":"+275760-09-13T00:00:00.000Z","type":"invoke","outcome":"hit","model":"a"}',
        'y'.repeat(MAX_LINE_BYTES + 1),
        ...clean.slice(10),
      ].join('\n'),
    );
    const table = (lines: string[]) => lines.filter((l) => /^\d+GiB\s/.test(l));
    const a = await run([
      'plan',
      '--log',
      cleanFile,
      '--gpu',
      '3GiB,4GiB',
      '--headroom',
      '0',
      '--chart',
      path.join(dir, 'a.svg'),
    ]);
    const b = await run([
      'plan',
      '--log',
      hostile,
      '--gpu',
      '3GiB,4GiB',
      '--headroom',
      '0',
      '--chart',
      path.join(dir, 'b.svg'),
    ]);
    expect([a.status, b.status, a.err, b.err]).toEqual([0, 0, '', '']);
    expect(table(b.out)).toEqual(table(a.out));
    expect(table(b.out).length).toBeGreaterThan(0);
    expect(b.out[b.out.length - 1]).toBe(
      `skipped 4 of ${clean.length + 4} lines: 1 too long, 1 not a JSON object, 1 a number out of range, 1 an implausible timestamp`,
    );
    expect(a.out.some((l) => l.startsWith('skipped'))).toBe(false);
  });
});
