import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { TritonClient } from '../../src/triton';
import { tempDir } from '../support/model-repo';
import { STANDIN_BIN, freePort } from '../support/agent-process';

/** `tritonserver` on PATH in tests: the emulator's CLI, taking and refusing options as tritonserver does. */

const TRITONSERVER = path.join(STANDIN_BIN, 'tritonserver');

interface Run {
  code: Promise<number | null>;
  out: () => string;
  err: () => string;
  /** Resolves once stdout holds a match. */
  waitForOut: (re: RegExp) => Promise<RegExpMatchArray>;
  kill: (sig: NodeJS.Signals) => void;
}

function run(args: string[]): Run {
  const child = spawn(TRITONSERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    out += d;
    for (const w of [...waiters]) {
      const m = out.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (err += d));
  const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return {
    code,
    out: () => out,
    err: () => err,
    waitForOut: (re) => {
      const m = out.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve });
        void code.then(() => reject(new Error(`exited before ${re}: ${out} ${err}`)));
      });
    },
    kill: (sig) => child.kill(sig),
  };
}

test('bad command lines fail as tritonserver fails them: status 1 and its words', async () => {
  const cases: [string[], RegExp][] = [
    [
      ['--model-repository=/m', '--bogus=1'],
      /^tritonserver: unrecognized option '--bogus'\nUsage: tritonserver \[options\]/,
    ],
    [['--model-repository=/m', '--grpc-port'], /^tritonserver: option '--grpc-port' requires an argument\n/],
    [['--model-repository', '/m', '--allow-http', 'maybe'], /^invalid value for bool option: maybe\n/],
    [
      ['--grpc-port=8001'],
      /^error: creating server: Invalid argument - --model-repository must be specified\n/,
    ],
  ];
  const runs = cases.map(([args]) => run(args));
  for (let i = 0; i < cases.length; i++) {
    expect(await runs[i].code).toBe(1);
    expect(runs[i].err()).toMatch(cases[i][1]);
  }
});

test('both option forms start it; it prints tritonserver startup lines, serves gRPC and stops on SIGTERM', async () => {
  const repo = await tempDir('mme-standin-');
  try {
    const [grpcPort, metricsPort] = [await freePort(), await freePort()];
    const server = run([
      `--model-repository=${repo.dir}`,
      '--model-control-mode',
      'explicit',
      '--grpc-port',
      String(grpcPort),
      `--metrics-port=${metricsPort}`,
      '--allow-http=false',
      '--allow-gpu-metrics',
      'true',
      '--log-verbose=1',
    ]);
    await server.waitForOut(
      new RegExp(`grpc_server\\.cc:\\d+\\] Started GRPCInferenceService at 0\\.0\\.0\\.0:${grpcPort}\\n`),
    );
    await server.waitForOut(new RegExp(`\\] Started Metrics Service at 0\\.0\\.0\\.0:${metricsPort}\\n`));
    const client = new TritonClient({ address: `127.0.0.1:${grpcPort}` });
    try {
      expect(await client.serverReady()).toBe(true);
    } finally {
      client.close();
    }
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(await metrics.text()).toContain('nv_gpu_memory_total_bytes');
    server.kill('SIGTERM');
    expect(await server.code).toBe(0);
    expect(server.out()).toMatch(/\] Signal \(15\) received\.\n/);
  } finally {
    await repo.cleanup();
  }
});

test('--help lists what the emulator takes and exits 0', async () => {
  const r = run(['--help']);
  expect(await r.code).toBe(0);
  expect(r.out()).toMatch(/^ {2}--model-repository VALUE +the model repository folder/m);
  expect(r.out()).toMatch(/^ {2}--gpu-memory-bytes VALUE +memory per GPU/m);
  expect(r.out()).toMatch(/--load-model, --repository-poll-secs, which are refused/);
});
