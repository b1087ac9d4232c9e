/**
 * bench/overhead: what the agent adds on the invoke hot path, against the two baselines that matter,
 * measured in the same run against the same Triton stand-in process:
 *
 *   direct  gRPC ModelInfer straight to the stand-in (the client Triton would see without any sidecar)
 *   bare    a bare node:http -> grpc-js proxy (bench/overhead/bare-proxy.ts): the floor for a Node agent
 *   agent   the agent itself (src/main.ts, default settings: info request logs, metrics, eviction policy)
 *
 * The agent and the bare proxy both run with the V8 options the image gives the agent (scripts/serve).
 *
 * Payloads: a ResNet-50 image (1x3x224x224 FP32) as binary+json and as JSON, and a batch of 8 images as
 * binary+json; concurrency 1, 16 and 64. Rounds are interleaved (every contender runs each cell back to
 * back, then the next cell), and each cell reports p50, p99 and throughput; the table gives medians over
 * rounds, "added" latency against direct, and throughput as a ratio to direct.
 *
 *   npm run bench:overhead                         3 rounds of 2 s per cell
 *   npm run bench:overhead -- --rounds 1 --seconds 1
 *   npm run bench:overhead -- --profile            CPU profiles of the agent and the bare proxy under binary c16 load
 *                                                  (--keep-profiles DIR keeps the .cpuprofile files)
 *   npm run bench:overhead -- --agent-root DIR     run the agent from another checkout (for before/after)
 *   npm run bench:overhead -- --payloads 0 --concurrency 1,16 --rounds 5 --seconds 3   a subset, longer
 *   npm run bench:overhead -- --micro              JSON decode/encode and the request log line against bare baselines
 *
 * The agent and the bare proxy are compiled first (tsc into .tmp/overhead-build) and run as plain
 * JavaScript, as the image runs the agent. The stand-in is the test emulator as its own process (under
 * tsx); its inference is a cheap documented function, so the numbers are the protocol and process
 * overheads, which is what this bench is about.
 */
import * as grpc from '@grpc/grpc-js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { tritonServiceDefinition } from '../../src/triton/client';
import { runMicro } from './micro';
import { summariseProfile } from './profile-summary';
import { benchFlags, numberFlag, numberListFlag } from '../support/flags';
import { resnetPtConfig, writeModel } from '../../test/support/model-repo';

const CMD = 'bench:overhead';
const flags = benchFlags(CMD, {
  rounds: { type: 'string', default: '3', help: 'interleaved rounds' },
  seconds: { type: 'string', default: '2', help: 'seconds per cell' },
  payloads: {
    type: 'string',
    default: '0,1,2',
    help: 'payloads, comma-separated: 0 image binary+json, 1 image JSON, 2 batch of 8 binary+json',
  },
  concurrency: { type: 'string', default: '1,16,64', help: 'concurrencies, comma-separated' },
  'agent-root': { type: 'string', default: '', help: 'run the agent from this checkout (default: this one)' },
  'agent-node-options': {
    type: 'string',
    default: '',
    help: "node options for the agent's process (V8 flags)",
  },
  'agent-output': {
    type: 'string',
    default: '',
    help: "a file to copy the agent's stdout into (its log lines, and V8's with --trace-gc)",
  },
  'idle-seconds': { type: 'string', default: '5', help: 'how long idle CPU is measured first' },
  micro: { type: 'boolean', help: 'JSON decode/encode and the request log line against bare baselines' },
  profile: { type: 'boolean', help: 'CPU profiles of the agent and the bare proxy under binary c16 load' },
  'profile-seconds': { type: 'string', default: '10', help: 'seconds of load per profile' },
  'keep-profiles': { type: 'string', default: '', help: 'a folder to keep the .cpuprofile files in' },
});
const ROUNDS = numberFlag(CMD, 'rounds', flags.rounds, 1);
const SECONDS = numberFlag(CMD, 'seconds', flags.seconds, 0.1);
const WARMUP_MS = 300;
const AGENT_ROOT = path.resolve(flags['agent-root'] || path.join(__dirname, '..', '..'));
// Every number is checked here, before any process starts.
const PAYLOADS = new Set(numberListFlag(CMD, 'payloads', flags.payloads));
if ([...PAYLOADS].some((i) => ![0, 1, 2].includes(i))) {
  process.stderr.write(`${CMD}: --payloads takes 0, 1 and 2; got '${flags.payloads}'\n`);
  process.exit(2);
}
const CONCURRENCIES = numberListFlag(CMD, 'concurrency', flags.concurrency, 1);
const IDLE_SECONDS = numberFlag(CMD, 'idle-seconds', flags['idle-seconds']);
const PROFILE_SECONDS = numberFlag(CMD, 'profile-seconds', flags['profile-seconds'], 1);
const ROOT = path.join(__dirname, '..', '..');
/**
 * The V8 options the image starts the agent with (scripts/serve's AGENT_NODE_FLAGS). The agent and the bare
 * proxy both run with them: they are a tuning any Node proxy could use, so the floor gets it too.
 */
const IMAGE_NODE_FLAGS = (() => {
  const printed = spawnSync(path.join(ROOT, 'scripts', 'serve'), ['--print-env'], {
    env: { PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
  });
  const flagsLine = /^AGENT_NODE_FLAGS=(.*)$/m.exec(printed.stdout ?? '');
  if (!flagsLine)
    throw new Error(`scripts/serve --print-env did not print AGENT_NODE_FLAGS: ${printed.stderr}`);
  return flagsLine[1].split(' ').filter(Boolean);
})();
const TSX = require.resolve('tsx/cjs');

/**
 * Compiles a checkout's TypeScript (`project`) into `<root>/.tmp/overhead-build` and returns that folder:
 * the agent and the bare proxy run as plain JavaScript, as the image runs the agent, not under a loader
 * (tsx keeps every transpiled file's source map in the heap, more of them for the agent's hundred files).
 */
function compile(root: string, project: string): string {
  const out = path.join(root, '.tmp', 'overhead-build');
  const tsc = spawnSync(
    process.execPath,
    [require.resolve('typescript/bin/tsc'), '-p', path.join(root, project), '--outDir', out],
    { stdio: 'inherit' },
  );
  if (tsc.status !== 0) throw new Error(`compiling ${root} (${project}) failed`);
  return out;
}

type Raw = Record<string, unknown>;

// --- processes ----------------------------------------------------------------------------------------

interface Proc {
  child: ChildProcess;
  /** Resolves with the first capture of `pattern` in the process's stdout. */
  waitFor(pattern: RegExp): Promise<string>;
  stop(): Promise<void>;
}

function start(
  script: string,
  argv: string[],
  env: Record<string, string> = {},
  node: string[] = [],
  copyTo = '',
): Proc {
  const loader = script.endsWith('.ts') ? ['--require', TSX] : [];
  const child = spawn(process.execPath, [...node, ...loader, script, ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.on('exit', () => child.kill());
  const waiters: { pattern: RegExp; resolve: (s: string) => void }[] = [];
  // Lines seen so far, so a waiter registered after its line arrived still finds it.
  const seen: string[] = [];
  const lines = readline.createInterface({ input: child.stdout! });
  if (copyTo) {
    const copy = createWriteStream(copyTo);
    lines.on('line', (line) => copy.write(`${line}\n`));
    lines.once('close', () => copy.end());
  }
  lines.on('line', (line) => {
    if (seen.length < 100) seen.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const m = waiters[i].pattern.exec(line);
      if (m) {
        waiters[i].resolve(m[1]);
        waiters.splice(i, 1);
      }
    }
  });
  return {
    child,
    waitFor: (pattern) =>
      new Promise((resolve, reject) => {
        for (const line of seen) {
          const m = pattern.exec(line);
          if (m) return resolve(m[1]);
        }
        waiters.push({ pattern, resolve });
        child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before ${pattern}`)));
      }),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

// --- payloads -----------------------------------------------------------------------------------------

interface Payload {
  label: string;
  body: Buffer;
  contentType: string;
  /** The same tensors as a gRPC request (for direct). */
  grpc: (tritonName: string) => Raw;
}

function image(batch: number): Float32Array {
  const a = new Float32Array(batch * 3 * 224 * 224);
  // Normalised pixel values, as a preprocessing step leaves them (float32, full precision).
  for (let i = 0; i < a.length; i++) a[i] = Math.fround((((i * 7919) % 256) / 255 - 0.45) / 0.225);
  return a;
}

function binaryPayload(label: string, batch: number): Payload {
  const pixels = image(batch);
  const raw = Buffer.from(pixels.buffer);
  const shape = [batch, 3, 224, 224];
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'INPUT__0', shape, datatype: 'FP32', parameters: { binary_data_size: raw.length } }],
    }),
  );
  return {
    label,
    body: Buffer.concat([header, raw]),
    contentType: `application/vnd.sagemaker-triton.binary+json;json-header-size=${header.length}`,
    grpc: (model) => ({
      model_name: model,
      inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape }],
      raw_input_contents: [raw],
    }),
  };
}

function jsonPayload(label: string): Payload {
  const pixels = image(1);
  const shape = [1, 3, 224, 224];
  return {
    label,
    body: Buffer.from(
      JSON.stringify({ inputs: [{ name: 'INPUT__0', shape, datatype: 'FP32', data: Array.from(pixels) }] }),
    ),
    contentType: 'application/json',
    grpc: (model) => ({
      model_name: model,
      inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape }],
      raw_input_contents: [Buffer.from(pixels.buffer)],
    }),
  };
}

// --- clients ------------------------------------------------------------------------------------------

type Once = () => Promise<void>;

function httpClient(port: number, p: string, payload: Payload, concurrency: number): Once {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const headers = { 'content-type': payload.contentType, 'content-length': String(payload.body.length) };
  return () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: p, method: 'POST', agent, headers },
        (res) => {
          let n = 0;
          res.on('data', (c: Buffer) => (n += c.length));
          res.on('end', () =>
            res.statusCode === 200 && n > 0 ? resolve() : reject(new Error(`status ${res.statusCode}`)),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload.body);
    });
}

function grpcClient(address: string, request: Raw): { once: Once; close: () => void } {
  const Ctor = grpc.makeGenericClientConstructor(tritonServiceDefinition(), 'GRPCInferenceService');
  const client = new Ctor(address, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 2 ** 31 - 1,
    'grpc.max_receive_message_length': 2 ** 31 - 1,
  });
  const call = (client as unknown as Record<string, (r: Raw, cb: (e: Error | null) => void) => void>)
    .ModelInfer;
  return {
    once: () =>
      new Promise<void>((resolve, reject) => call.call(client, request, (e) => (e ? reject(e) : resolve()))),
    close: () => client.close(),
  };
}

interface CellResult {
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  /** CPU time the contender's own process spent per request completed in the window (ms); NaN for direct. */
  cpuMs: number;
}

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc (Linux). Busy time per request is
 * the overhead itself, and unlike latency it barely moves when the machine is noisy. NaN off Linux.
 */
async function cpuMsOf(pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name (which may hold spaces) start at state; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields.length > 13 ? ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS : NaN;
}
/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Runs `concurrency` closed loops of `once` through a warm-up and then a window of SECONDS. Throughput counts
 * the requests completed inside the window; latency samples are the requests started inside it.
 */
async function cell(once: Once, concurrency: number, pid?: number): Promise<CellResult> {
  const samples: number[] = [];
  let errors = 0;
  let completed = 0;
  const warmEnd = performance.now() + WARMUP_MS;
  const end = warmEnd + SECONDS * 1000;
  let cpuStart = NaN;
  const cpuAtWindow = new Promise<void>((resolve) =>
    setTimeout(() => void cpuMsOf(pid).then((ms) => ((cpuStart = ms), resolve())), WARMUP_MS),
  );
  const loop = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      try {
        await once();
      } catch {
        errors++;
      }
      const t1 = performance.now();
      if (t1 >= warmEnd && t1 < end) completed++;
      if (t0 >= warmEnd) samples.push(t1 - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  await cpuAtWindow;
  // The window's requests are counted by completion, and the last ones end just after it: close enough
  // over thousands of requests, and the same for every contender.
  const cpuMs = ((await cpuMsOf(pid)) - cpuStart) / Math.max(1, completed);
  samples.sort((a, b) => a - b);
  return {
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    rps: completed / SECONDS,
    errors,
    cpuMs,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// --- main ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const keepDir = flags['keep-profiles'];
  if (
    keepDir &&
    !(await fs.stat(keepDir).then(
      (st) => st.isDirectory(),
      () => false,
    ))
  ) {
    process.stderr.write(`${CMD}: --keep-profiles needs an existing folder, got '${keepDir}'\n`);
    process.exit(2);
  }
  if (flags.micro) {
    await runMicro();
    return;
  }
  process.stderr.write('compiling the agent and the bare proxy\n');
  // This checkout's whole project holds the bare proxy (and the agent, unless another checkout is asked for).
  const benchBuild = compile(ROOT, 'tsconfig.json');
  const agentBuild =
    AGENT_ROOT === path.resolve(ROOT) ? benchBuild : compile(AGENT_ROOT, 'tsconfig.build.json');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-overhead-'));
  const repository = path.join(work, 'repository');
  const models = path.join(work, 'models');
  await fs.mkdir(repository);
  await fs.mkdir(models);
  const modelDir = path.join(models, 'resnet');
  await writeModel(modelDir, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 1024 } } });

  const emulator = start(path.join(ROOT, 'test/support/triton-emulator/cli.ts'), [
    '--model-repository',
    repository,
    '--grpc-port',
    '0',
    '--metrics-port',
    '0',
    '--metrics-interval-ms',
    '500',
  ]);
  // tritonserver's own start-up lines, which the emulator's CLI prints too.
  const grpcAddress = `127.0.0.1:${await emulator.waitFor(/Started GRPCInferenceService at \S*:(\d+)/)}`;
  const metricsUrl = `http://127.0.0.1:${await emulator.waitFor(/Started Metrics Service at \S*:(\d+)/)}/metrics`;

  const profileDir = path.join(work, 'profile');
  const agent = start(
    path.join(agentBuild, 'src', 'main.js'),
    [],
    {
      SAGEMAKER_BIND_TO_PORT: '0',
      AGENT_BIND_HOST: '127.0.0.1',
      TRITON_GRPC_URL: grpcAddress,
      TRITON_METRICS_URL: metricsUrl,
      TRITON_MODEL_REPOSITORY: repository,
      AGENT_METRICS_INTERVAL_MS: '750',
    },
    [
      ...IMAGE_NODE_FLAGS,
      ...(flags.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
      ...flags['agent-node-options'].split(' ').filter(Boolean),
    ],
    flags['agent-output'],
  );
  process.stderr.write(
    `node options of the agent and the bare proxy: ${IMAGE_NODE_FLAGS.join(' ') || 'none'}\n`,
  );
  process.stderr.write('waiting for the agent\n');
  const agentPort = Number(await agent.waitFor(/"message":"agent listening".*"port":(\d+)/));
  // Ready when /ping answers 200 (the agent answers 503 while it starts).
  for (let i = 0; ; i++) {
    const ping = await fetch(`http://127.0.0.1:${agentPort}/ping`).catch(() => undefined);
    if (ping?.status === 200) break;
    if (i > 300) throw new Error('the agent did not become ready');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const load = await fetch(`http://127.0.0.1:${agentPort}/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model_name: 'resnet', url: path.join(modelDir, 'resnet') }),
  });
  if (load.status !== 200) throw new Error(`load failed: ${load.status} ${await load.text()}`);
  process.stderr.write('model loaded\n');

  // The Triton name the agent gave the model, for the baselines that talk to the stand-in directly.
  const tritonName = await (async () => {
    const Ctor = grpc.makeGenericClientConstructor(tritonServiceDefinition(), 'GRPCInferenceService');
    const c = new Ctor(grpcAddress, grpc.credentials.createInsecure());
    const r = await new Promise<Raw>((resolve, reject) =>
      (
        c as unknown as Record<string, (q: Raw, cb: (e: Error | null, r?: Raw) => void) => void>
      ).RepositoryIndex.call(c, { ready: true }, (e, res) => (e ? reject(e) : resolve(res ?? {}))),
    );
    c.close();
    return String((r.models as Raw[])[0].name);
  })();

  const bareProfileDir = path.join(work, 'profile-bare');
  const bare = start(
    path.join(benchBuild, 'bench', 'overhead', 'bare-proxy.js'),
    [grpcAddress, tritonName],
    {},
    [...IMAGE_NODE_FLAGS, ...(flags.profile ? ['--cpu-prof', '--cpu-prof-dir', bareProfileDir] : [])],
  );
  const barePort = Number(await bare.waitFor(/listening (\d+)/));

  // What each process spends with no request at all (the agent polls Triton's metrics and keeps its
  // ledger): a fixed cost, shown apart from the per-request figures below, which include it.
  {
    const idleSeconds = IDLE_SECONDS;
    const before = await Promise.all([cpuMsOf(bare.child.pid), cpuMsOf(agent.child.pid)]);
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const after = await Promise.all([cpuMsOf(bare.child.pid), cpuMsOf(agent.child.pid)]);
    process.stderr.write(
      `idle CPU over ${idleSeconds} s: bare ${((after[0] - before[0]) / idleSeconds).toFixed(1)} ms/s, agent ${((after[1] - before[1]) / idleSeconds).toFixed(1)} ms/s\n`,
    );
  }

  const stopAll = async () => {
    await Promise.all([agent.stop(), bare.stop()]);
    await emulator.stop();
  };

  if (flags.profile) {
    // The agent and the bare proxy under the same load, one after the other, each profiled: the areas side
    // by side show where the agent's extra time per request goes.
    const payload = binaryPayload('image, binary+json', 1);
    const seconds = PROFILE_SECONDS;
    const load = async (port: number) => {
      const once = httpClient(port, '/models/resnet/invoke', payload, 16);
      const until = performance.now() + seconds * 1000;
      let n = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (performance.now() < until) {
            await once();
            n++;
          }
        }),
      );
      return n;
    };
    const counts = { agent: await load(agentPort), bare: await load(barePort) };
    process.stderr.write(`profiled ${counts.agent} and ${counts.bare} requests; stopping\n`);
    await stopAll();
    for (const [who, dir] of [
      ['agent', profileDir],
      ['bare', bareProfileDir],
    ] as const) {
      const files = await fs.readdir(dir);
      const profile = JSON.parse(await fs.readFile(path.join(dir, files[0]), 'utf8')) as Parameters<
        typeof summariseProfile
      >[0];
      const keep = flags['keep-profiles'];
      if (keep) await fs.copyFile(path.join(dir, files[0]), path.join(keep, `${who}.cpuprofile`));
      console.log(
        `\n${who} CPU profile: image as binary+json, concurrency 16, ${seconds} s, ${counts[who]} requests\n`,
      );
      console.log(summariseProfile(profile, counts[who]));
    }
    await fs.rm(work, { recursive: true, force: true });
    return;
  }

  const payloads = [
    binaryPayload('image, binary+json', 1),
    jsonPayload('image, JSON'),
    binaryPayload('batch of 8, binary+json', 8),
  ];
  // --payloads 0,2 keeps some payloads (0: image binary+json, 1: image JSON, 2: batch of 8).
  for (let i = payloads.length - 1; i >= 0; i--) if (!PAYLOADS.has(i)) payloads.splice(i, 1);
  const concurrencies = CONCURRENCIES;
  const contenders = ['direct', 'bare', 'agent'] as const;
  type Key = `${string}|${number}|${string}`;
  const results = new Map<Key, CellResult[]>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const payload of payloads) {
      for (const c of concurrencies) {
        for (const who of contenders) {
          let r: CellResult;
          if (who === 'direct') {
            const g = grpcClient(grpcAddress, payload.grpc(tritonName));
            r = await cell(g.once, c);
            g.close();
          } else {
            const port = who === 'bare' ? barePort : agentPort;
            const pid = who === 'bare' ? bare.child.pid : agent.child.pid;
            r = await cell(httpClient(port, '/models/resnet/invoke', payload, c), c, pid);
          }
          const key: Key = `${payload.label}|${c}|${who}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          process.stderr.write(
            `round ${round} ${payload.label} c${c} ${who}: p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms ${r.rps.toFixed(0)}/s${Number.isNaN(r.cpuMs) ? '' : ` cpu ${r.cpuMs.toFixed(2)} ms/req`}${r.errors ? ` ${r.errors} errors` : ''}\n`,
          );
        }
      }
    }
  }
  await stopAll();
  await fs.rm(work, { recursive: true, force: true });

  console.log(
    `\n${ROUNDS} interleaved rounds of ${SECONDS} s per cell; medians over rounds. Added = contender minus direct.\n`,
  );
  console.log(
    '| payload | conc. | contender | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | throughput vs direct |',
  );
  console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const payload of payloads) {
    for (const c of concurrencies) {
      const get = (who: string) => results.get(`${payload.label}|${c}|${who}`) ?? [];
      const d = get('direct');
      for (const who of contenders) {
        const rs = get(who);
        const p50 = median(rs.map((r) => r.p50));
        const p99 = median(rs.map((r) => r.p99));
        const rps = median(rs.map((r) => r.rps));
        // Paired per round: each round's contender against that round's direct.
        const added50 = median(rs.map((r, i) => r.p50 - d[i].p50));
        const added99 = median(rs.map((r, i) => r.p99 - d[i].p99));
        const ratio = median(rs.map((r, i) => r.rps / d[i].rps));
        const errors = rs.reduce((a, r) => a + r.errors, 0);
        console.log(
          `| ${payload.label} | ${c} | ${who} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${who === 'direct' ? '-' : added50.toFixed(2)} | ${who === 'direct' ? '-' : added99.toFixed(2)} | ${rps.toFixed(0)} | ${ratio.toFixed(2)}${errors ? ` (${errors} errors)` : ''} |`,
        );
      }
    }
  }
  // The goals are stated against the bare proxy: each round's agent against that round's bare.
  console.log(
    "\nAgent against the bare proxy, paired per round (median [min, max] over rounds); CPU is each process's own busy time per request.\n",
  );
  console.log(
    '| payload | conc. | added p50 ms (agent − bare) | throughput (agent ÷ bare) | CPU ms/req bare | CPU ms/req agent | CPU (agent ÷ bare) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  const spread = (xs: number[], digits: number) =>
    `${median(xs).toFixed(digits)} [${Math.min(...xs).toFixed(digits)}, ${Math.max(...xs).toFixed(digits)}]`;
  for (const payload of payloads) {
    for (const c of concurrencies) {
      const b = results.get(`${payload.label}|${c}|bare`) ?? [];
      const a = results.get(`${payload.label}|${c}|agent`) ?? [];
      console.log(
        `| ${payload.label} | ${c} | ${spread(
          a.map((r, i) => r.p50 - b[i].p50),
          2,
        )} | ${spread(
          a.map((r, i) => r.rps / b[i].rps),
          2,
        )} | ${median(b.map((r) => r.cpuMs)).toFixed(2)} | ${median(a.map((r) => r.cpuMs)).toFixed(2)} | ${spread(
          a.map((r, i) => r.cpuMs / b[i].cpuMs),
          2,
        )} |`,
      );
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
