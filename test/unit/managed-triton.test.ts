import { EventEmitter } from 'node:events';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import fc from 'fast-check';
import { shellWords } from '../../src/config';
import { LineSplitter, ManagedTriton, tritonServerArgs, type ManagedTritonOptions } from '../../src/triton';
import { tempDir } from '../support/model-repo';
import { untilEvent } from '../support/wait';

describe('LineSplitter', () => {
  /** The oracle: split the whole text at once, drop a CR before each LF and the unterminated rest. */
  const oracle = (text: string) =>
    text
      .split('\n')
      .slice(0, -1)
      .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));

  test('any chunking of any text gives the lines of the whole text (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', 'b', '\n', '\r', 'é', ' '), maxLength: 200 }),
        fc.array(fc.nat(200), { maxLength: 10 }),
        (text, cuts) => {
          const out: string[] = [];
          const s = new LineSplitter(1_000, (l) => out.push(l));
          const points = [...new Set(cuts.map((c) => Math.min(c, text.length)))].sort((a, b) => a - b);
          let at = 0;
          for (const p of [...points, text.length]) {
            s.push(text.slice(at, p));
            at = p;
          }
          expect(out).toEqual(oracle(text));
          s.end();
          const last = text.split('\n').pop() ?? '';
          if (last !== '') expect(out[out.length - 1]).toBe(last.endsWith('\r') ? last.slice(0, -1) : last);
        },
      ),
    );
  });

  test('a line longer than the bound keeps its start and says how much was cut, across chunks', () => {
    const out: string[] = [];
    const s = new LineSplitter(10, (l) => out.push(l));
    s.push('0123456');
    s.push('789abcdef');
    s.push('ghij\nshort\n');
    expect(out).toEqual(['0123456789 …[10 characters cut]', 'short']);
  });
});

describe('tritonServerArgs', () => {
  test("the agent's options, ports taken from the URLs, extra options last", () => {
    expect(
      tritonServerArgs({
        modelRepository: '/models',
        grpcUrl: '127.0.0.1:9001',
        metricsUrl: 'http://127.0.0.1:9002/metrics',
        metricsIntervalMs: 500,
        extra: ['--log-verbose=1', '--grpc-port=7001'],
      }),
    ).toEqual([
      '--model-repository=/models',
      '--model-control-mode=explicit',
      '--allow-http=false',
      '--allow-grpc=true',
      '--grpc-address=127.0.0.1',
      '--grpc-port=9001',
      '--allow-metrics=true',
      '--allow-gpu-metrics=true',
      '--metrics-address=127.0.0.1',
      '--metrics-port=9002',
      '--metrics-interval-ms=500',
      '--model-load-retry-count=0',
      '--log-verbose=1',
      '--grpc-port=7001',
    ]);
  });

  test('loopback only when the agent dials loopback; an exit timeout below the stop grace; the memory tracker', () => {
    const args = tritonServerArgs({
      modelRepository: '/models',
      grpcUrl: 'localhost:8001',
      metricsUrl: 'http://[::1]:8002/metrics',
      metricsIntervalMs: 500,
      stopGraceMs: 5000,
      memoryTracker: true,
    });
    expect(args).toContain('--grpc-address=127.0.0.1');
    expect(args).toContain('--metrics-address=::1');
    expect(args).toContain('--exit-timeout-secs=4');
    expect(args).toContain('--backend-config=tensorrt,triton-backend-memory-tracker=true');
    expect(args).toContain('--backend-config=onnxruntime,triton-backend-memory-tracker=true');
    // Another host (Triton in a sibling container): Triton listens as configured there.
    const remote = tritonServerArgs({
      modelRepository: '/models',
      grpcUrl: 'triton:8001',
      metricsUrl: 'http://triton:8002/metrics',
      metricsIntervalMs: 500,
    });
    expect(remote.some((a) => a.startsWith('--grpc-address') || a.startsWith('--metrics-address'))).toBe(
      false,
    );
  });

  test('a metrics URL without a port is refused with the setting named', () => {
    expect(() =>
      tritonServerArgs({
        modelRepository: '/models',
        grpcUrl: '127.0.0.1:8001',
        metricsUrl: 'http://127.0.0.1/metrics',
        metricsIntervalMs: 500,
      }),
    ).toThrow(/TRITON_METRICS_URL must name its port/);
  });
});

describe('shellWords (TRITON_SERVER_ARGS)', () => {
  test.each([
    ['--a=1  --b 2', ['--a=1', '--b', '2']],
    [
      `--backend-config='python,shm-default-byte-size=1 0'`,
      ['--backend-config=python,shm-default-byte-size=1 0'],
    ],
    ['--x="a \\"b\\" c"', ['--x=a "b" c']],
    ['a\\ b', ['a b']],
    ["''", ['']],
    ['   ', undefined],
  ])('%s', (raw, words) => {
    expect(shellWords(raw, 'TRITON_SERVER_ARGS')).toEqual(words);
  });

  test('an unterminated quote is an error naming the setting', () => {
    expect(() => shellWords(`--a='b`, 'TRITON_SERVER_ARGS')).toThrow(
      /TRITON_SERVER_ARGS has an unterminated ' quote/,
    );
  });
});

/**
 * The supervisor around real child processes (node scripts standing in for tritonserver): every wait
 * bounded, restarts with a doubling backoff, nothing left running.
 */
describe('ManagedTriton', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let supervisor: ManagedTriton | undefined;
  const logs: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  /** Says 'line' after each line logged: what waits for a log line listens to. */
  const logged = new EventEmitter();
  const log = (level: string, message: string, fields?: Record<string, unknown>) => {
    logs.push({ level, message, fields });
    logged.emit('line');
  };
  const logger = {
    error: (message: string, fields?: Record<string, unknown>) => log('error', message, fields),
    warn: (message: string, fields?: Record<string, unknown>) => log('warn', message, fields),
    info: (message: string, fields?: Record<string, unknown>) => log('info', message, fields),
    debug: () => undefined,
    relay: (level: string, message: string, fields?: Record<string, unknown>) => log(level, message, fields),
  };

  beforeEach(async () => {
    root = await tempDir('mme-supervisor-');
    logs.length = 0;
  });

  afterEach(async () => {
    await supervisor?.stop();
    supervisor = undefined;
    await root.cleanup();
  });

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  /** A node script as the server: runs `body`, then prints tritonserver's gRPC line; ready once printed. */
  const server = (body: string, extra: Partial<ManagedTritonOptions> = {}) => {
    const printed = logs.length;
    return new ManagedTriton({
      bin: process.execPath,
      args: ['-e', `${body}; console.log('Started GRPCInferenceService at 0.0.0.0:8001');`],
      probe: async () =>
        logs.slice(printed).some((l) => l.message.startsWith('Started GRPCInferenceService')),
      logger,
      startupTimeoutMs: 5_000,
      stopGraceMs: 2_000,
      restartBackoffMs: 10,
      maxRestartBackoffMs: 40,
      ...extra,
    });
  };

  /** Resolves once `message` has been logged `count` times (checked as each line is logged). */
  const waitForLog = (message: string, count = 1) =>
    untilEvent(logged, 'line', () => logs.filter((l) => l.message === message).length >= count, {
      timeoutMs: 10_000,
      what: `'${message}' logged ${count} time(s)`,
    });

  test('start resolves once ready, forwards output lines, stop ends the process with SIGTERM', async () => {
    supervisor = server(
      `console.error('W1201 00:00:00.000 1 x.cc:1] careful'); setInterval(() => {}, 1000);`,
    );
    expect(supervisor.ready()).toBe(false);
    await supervisor.start();
    expect(supervisor.state).toBe('ready');
    expect(supervisor.ready()).toBe(true);
    const pid = supervisor.pid as number;
    expect(alive(pid)).toBe(true);
    await waitForLog('W1201 00:00:00.000 1 x.cc:1] careful');
    expect(logs.find((l) => l.message.includes('careful'))).toMatchObject({
      level: 'warn',
      fields: { source: 'tritonserver', stream: 'stderr' },
    });
    await supervisor.stop();
    expect(supervisor.state).toBe('stopped');
    expect(alive(pid)).toBe(false);
  });

  test('a server that ignores SIGTERM is killed after the grace', async () => {
    supervisor = server(`process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);`, {
      stopGraceMs: 200,
    });
    await supervisor.start();
    const pid = supervisor.pid as number;
    await supervisor.stop();
    expect(alive(pid)).toBe(false);
    expect(logs.some((l) => l.message === 'tritonserver did not exit after SIGTERM; killing it')).toBe(true);
  });

  test('a first start that exits is an error carrying its last lines; nothing is restarted', async () => {
    supervisor = server(`console.error("tritonserver: unrecognized option '--nope'"); process.exit(1);`, {
      probe: async () => false,
    });
    await expect(supervisor.start()).rejects.toThrow(
      /tritonserver exited with code 1 before it was ready: .*unrecognized option '--nope'/,
    );
    expect(supervisor.state).toBe('stopped');
    expect(logs.some((l) => l.message === 'restarting tritonserver')).toBe(false);
  });

  test('a server that never gets ready is killed at the startup deadline', async () => {
    supervisor = server(`setInterval(() => {}, 1000);`, { probe: async () => false, startupTimeoutMs: 300 });
    await expect(supervisor.start()).rejects.toThrow(/did not answer ServerReady within 300 ms/);
    const started = logs.find((l) => l.message === 'tritonserver started');
    expect(alive(started?.fields?.pid as number)).toBe(false);
  });

  test('stop during the restart backoff returns at once and starts nothing more', async () => {
    supervisor = server(`setInterval(() => {}, 1000);`, {
      restartBackoffMs: 600_000,
      maxRestartBackoffMs: 600_000,
    });
    await supervisor.start();
    process.kill(supervisor.pid as number, 'SIGKILL');
    await waitForLog('restarting tritonserver');
    expect(supervisor.state).toBe('restarting');
    await supervisor.stop();
    expect(supervisor.state).toBe('stopped');
    expect(logs.filter((l) => l.message === 'tritonserver started')).toHaveLength(1);
  });

  test('stop while a restarted server is still starting kills it and reports no failure', async () => {
    let probes = 0;
    supervisor = server(`setInterval(() => {}, 1000);`, {
      // Ready the first time only: the restarted server never answers.
      probe: async () => ++probes === 1,
      restartBackoffMs: 1,
    });
    await supervisor.start();
    const first = supervisor.pid as number;
    process.kill(first, 'SIGKILL');
    await waitForLog('tritonserver started', 2);
    const second = logs.filter((l) => l.message === 'tritonserver started')[1].fields?.pid as number;
    await supervisor.stop();
    expect(alive(second)).toBe(false);
    expect(logs.some((l) => l.message === 'tritonserver restart failed')).toBe(false);
  });

  test('crashes restart with a doubling, capped backoff; a stable run resets it; onRestarted runs each time', async () => {
    // Starts 1 to 5 crash 20 ms after they are ready; later ones keep running.
    const counter = path.join(root.dir, 'starts');
    await fs.writeFile(counter, '0');
    const f = JSON.stringify(counter);
    let now = 0;
    let restored = 0;
    supervisor = server(
      `const fs = require('fs'); const n = Number(fs.readFileSync(${f}, 'utf8')) + 1; fs.writeFileSync(${f}, String(n));` +
        // The server's own behaviour, timed on purpose: it crashes 20 ms after it is ready.
        `if (n <= 5) setTimeout(() => process.exit(3), 20); else setInterval(() => {}, 1000);`,
      { now: () => now, stableAfterMs: 1_000, onRestarted: async () => void restored++ },
    );
    await supervisor.start();
    await waitForLog('tritonserver restarted', 5);
    const delays = logs.filter((l) => l.message === 'restarting tritonserver').map((l) => l.fields?.delayMs);
    expect(delays).toEqual([10, 20, 40, 40, 40]);
    expect(restored).toBe(5);
    expect(supervisor.ready()).toBe(true);

    // It ran "a long time" (the injected clock): the next crash starts over at the first delay.
    now += 1_000;
    const before = logs.filter((l) => l.message === 'restarting tritonserver').length;
    process.kill(supervisor.pid as number, 'SIGKILL');
    await waitForLog('restarting tritonserver', before + 1);
    expect(supervisor.ready()).toBe(false);
    expect(supervisor.state).toBe('restarting');
    expect(logs.filter((l) => l.message === 'restarting tritonserver')[before].fields?.delayMs).toBe(10);
    expect(
      logs.find((l) => l.message === 'tritonserver exited unexpectedly; restarting it')?.fields,
    ).toMatchObject({ code: 3 });
    await waitForLog('tritonserver restarted', 6);
    expect(supervisor.restartCount).toBe(6);
  });
});
