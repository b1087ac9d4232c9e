import { createLogger, silentLogger } from '../../src/observability';

function collector() {
  const writes: string[] = [];
  return {
    sink: { write: (s: string) => writes.push(s) },
    writes,
    lines: () =>
      writes
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('createLogger', () => {
  test('JSON lines with level, message, timestamp and the fields; lines below the level are dropped', async () => {
    const c = collector();
    const log = createLogger('info', false, c.sink);
    log.info('model loaded', { model: 'a', ms: 12.5 });
    log.debug('not written', { x: 1 });
    log.warn('careful');
    log.error('failed', { code: 'X' });
    await nextTurn();
    const lines = c.lines();
    expect(lines.map((l) => [l.level, l.message])).toEqual([
      ['info', 'model loaded'],
      ['warn', 'careful'],
      ['error', 'failed'],
    ]);
    expect(lines[0]).toMatchObject({ model: 'a', ms: 12.5 });
    expect(Number.isNaN(Date.parse(String(lines[0].timestamp)))).toBe(false);
    expect(log.enabled('info')).toBe(true);
    expect(log.enabled('debug')).toBe(false);
  });

  test('the lines of one event-loop turn reach the sink in one write', async () => {
    const c = collector();
    const log = createLogger('debug', false, c.sink);
    for (let i = 0; i < 100; i++) log.info('request', { i });
    expect(c.writes).toHaveLength(0);
    await nextTurn();
    expect(c.writes).toHaveLength(1);
    expect(c.lines().map((l) => l.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test('errors keep their message; a field that cannot be serialised does not throw', async () => {
    const c = collector();
    const log = createLogger('info', false, c.sink);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    log.error('boom', { error: new Error('disk full') });
    expect(() => log.info('odd', { circular })).not.toThrow();
    expect(() => log.info('big', { n: 10n })).not.toThrow();
    await nextTurn();
    const [boom, odd, big] = c.lines();
    expect(boom.error).toMatchObject({ name: 'Error', message: 'disk full' });
    expect(odd.message).toBe('odd');
    expect(odd.logFieldsError).toMatch(/circular/i);
    expect(big.logFieldsError).toMatch(/BigInt/);
  });

  test('silent loggers and unknown levels', async () => {
    const c = collector();
    const quiet = createLogger('info', true, c.sink);
    quiet.error('nothing');
    silentLogger().error('nothing either');
    const fallback = createLogger('verbose', false, c.sink);
    fallback.debug('dropped');
    fallback.info('kept');
    await nextTurn();
    expect(c.lines().map((l) => l.message)).toEqual(['kept']);
  });
});

describe('a slow stdout', () => {
  test('relayed lines are dropped and counted past 1 MiB waiting, the agent’s own past 16 MiB; one summary once it drains', async () => {
    const writes: string[] = [];
    const sink = { writableLength: 0, write: (s: string) => writes.push(s) };
    const log = createLogger('info', false, sink);
    // The consumer has 2 MiB it has not taken yet.
    sink.writableLength = 2 * 1024 * 1024;
    for (let i = 0; i < 100; i++) log.relay('info', `triton line ${i}`);
    log.info('the agent’s own line');
    await nextTurn();
    const text = () => writes.join('');
    expect(text()).not.toContain('triton line');
    expect(text()).toContain('the agent’s own line');
    // Far behind: the agent's own lines stop too.
    sink.writableLength = 17 * 1024 * 1024;
    log.error('lost as well');
    await nextTurn();
    expect(text()).not.toContain('lost as well');
    // Caught up: one line says what was lost, then lines flow again.
    sink.writableLength = 0;
    log.relay('warn', 'triton is heard again');
    await nextTurn();
    const lines = text()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.filter((l) => l.message === 'log lines dropped: stdout was not keeping up');
    expect(summary).toEqual([expect.objectContaining({ relayedLines: 100, ownLines: 1 })]);
    expect(lines.at(-1)?.message).toBe('triton is heard again');
  });

  test('through a real process: a tritonserver flooding its output while stdout is not read keeps the agent’s memory bounded', async () => {
    // A child runs the supervisor over a flooding tritonserver stand-in and writes to a pipe nobody reads
    // for three seconds; it reports its stdout backlog and heap on stderr.
    const script = `
      const { ManagedTriton } = require('./src/triton/managed-triton');
      const { createLogger, droppedLogLines } = require('./src/observability');
      const flood = "const l='I1207 10:00:00.000 1 server.cc:1] ' + 'x'.repeat(300) + '\\\\n'; setInterval(() => { for (let i = 0; i < 2000; i++) process.stdout.write(l); }, 1);";
      const t = new ManagedTriton({
        bin: process.execPath, args: ['-e', flood], probe: async () => false,
        logger: createLogger('info'), startupTimeoutMs: 60000, stopGraceMs: 100,
        restartBackoffMs: 10, maxRestartBackoffMs: 10, parentDeathSignal: false,
      });
      t.start().catch(() => undefined);
      // A time wait on purpose: the flood runs for three seconds against the unread pipe.
      setTimeout(async () => {
        const d = droppedLogLines();
        process.stderr.write(JSON.stringify({ backlog: process.stdout.writableLength, heap: process.memoryUsage().heapUsed, dropped: d.relayed }) + '\\n');
        await t.stop();
        process.exit(0);
      }, 3000);
    `;
    const { spawn } = await import('node:child_process');
    const path = await import('node:path');
    const root = path.join(__dirname, '..', '..');
    const child = spawn(
      process.execPath,
      ['--import', path.join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs'), '-e', script],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (err += d));
    // stdout is not read until the child has reported (on stderr).
    const reported = () => {
      if (!err.includes('"backlog"')) return;
      child.stderr.off('data', reported);
      child.stdout.resume();
    };
    child.stderr.on('data', reported);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const report = JSON.parse(err.split('\n').find((l) => l.includes('"backlog"')) ?? '{}') as {
      backlog: number;
      heap: number;
      dropped: number;
    };
    expect(report.dropped).toBeGreaterThan(1000);
    // What waits for stdout stays near the 1 MiB bound for relayed lines (not hundreds of MiB).
    expect(report.backlog).toBeLessThan(2 * 1024 * 1024);
    expect(report.heap).toBeLessThan(200 * 1024 * 1024);
  }, 20_000);
});
