import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { identityConfig, tempDir, writeModel } from '../support/model-repo';
import { freePort, STANDIN_BIN } from '../support/agent-process';
import { TritonEmulator } from '../support/triton-emulator';
import { untilEvent } from '../support/wait';

const ROOT = path.join(__dirname, '..', '..');

// Child processes (tsx compiling the agent, Python, tritonserver's stand-in) are slow on a busy 2-core machine.
jest.setTimeout(90_000);
const SERVE = path.join(ROOT, 'scripts', 'serve');

/** Runs `serve --print-env` with only the given environment (plus PATH) and parses its KEY=value lines. */
function printEnv(env: Record<string, string>): {
  status: number | null;
  vars: Record<string, string>;
  stderr: string;
} {
  const r = spawnSync(SERVE, ['serve', '--print-env'], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
  });
  const vars: Record<string, string> = {};
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const i = line.indexOf('=');
    vars[line.slice(0, i)] = line.slice(i + 1);
  }
  return { status: r.status, vars, stderr: r.stderr };
}

/**
 * Waits for the agent's ready line (`agent ready`: it serves from then on; the process needs a moment to
 * compile and bind), failing if serve exits first, then expects /ping to answer 200 at once.
 */
async function awaitPing(base: string, child: ChildProcess, output: () => string): Promise<void> {
  const ready = () =>
    output()
      .split('\n')
      .some((l) => l.startsWith('{') && l.includes('"message":"agent ready"'));
  const stdout = child.stdout;
  if (!stdout) throw new Error('serve was started without a stdout pipe');
  let onExit: ((code: number | null) => void) | undefined;
  const exited = new Promise<never>((_, reject) => {
    onExit = (code) => reject(new Error(`serve exited ${code} before it was ready: ${output()}`));
    if (child.exitCode !== null) onExit(child.exitCode);
    else child.once('exit', onExit);
  });
  try {
    await Promise.race([
      untilEvent(stdout, 'data', ready, { timeoutMs: 30_000, what: "serve's 'agent ready' line" }),
      exited,
    ]);
  } finally {
    if (onExit) child.off('exit', onExit);
  }
  expect((await fetch(`${base}/ping`)).status).toBe(200);
}

/** Loads a one-input identity model laid out as SageMaker extracts it, and invokes it. */
async function loadAndInvoke(base: string, modelsRoot: string): Promise<void> {
  const model = await writeModel(path.join(modelsRoot, 'abc123', 'model'), 'm', {
    config: identityConfig('m', [{ type: 'TYPE_INT32', dims: [1] }]),
    versions: { '1': { 'model.py': 10 } },
  });
  const load = await fetch(`${base}/models`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model_name: 'abc123', url: path.dirname(model) }),
  });
  expect(load.status).toBe(200);
  const invoke = await fetch(`${base}/models/abc123/invoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [41] }] }),
  });
  expect(invoke.status).toBe(200);
  expect(((await invoke.json()) as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([41]);
}

function spawnServe(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(SERVE, ['serve'], {
    env: {
      HOME: os.tmpdir(),
      NODE_OPTIONS: '--import tsx',
      AGENT_ENTRY: path.join(ROOT, 'src', 'main.ts'),
      ...env,
    },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  return { child, output: () => output };
}

const portsOf = (vars: Record<string, string>) => ({
  agent: Number(vars.SAGEMAKER_BIND_TO_PORT),
  grpc: Number(vars.TRITON_GRPC_URL.split(':').pop()),
  metrics: Number(new URL(vars.TRITON_METRICS_URL).port),
});

describe('scripts/serve (the image entry point)', () => {
  test("SageMaker's defaults: port 8080, managed Triton on 8001/8002, writable repository", () => {
    const r = printEnv({});
    expect(r.status).toBe(0);
    expect(r.vars).toEqual({
      SAGEMAKER_BIND_TO_PORT: '8080',
      TRITON_MANAGED: 'true',
      TRITON_GRPC_URL: '127.0.0.1:8001',
      TRITON_METRICS_URL: 'http://127.0.0.1:8002/metrics',
      AGENT_METRICS_INTERVAL_MS: '750',
      TRITON_MODEL_REPOSITORY: '/tmp/triton-repository',
      AGENT_SINGLE_MODEL_DIR: '/opt/ml/model',
      AGENT_ENTRY: path.join(ROOT, 'dist', 'src', 'main.js'),
      AGENT_NODE_FLAGS: '--no-memory-reducer',
    });
    // Given explicitly (even empty), the V8 options are the caller's.
    expect(printEnv({ AGENT_NODE_FLAGS: '' }).vars.AGENT_NODE_FLAGS).toBe('');
    expect(printEnv({ AGENT_NODE_FLAGS: '--max-old-space-size=512' }).vars.AGENT_NODE_FLAGS).toBe(
      '--max-old-space-size=512',
    );
  });

  test('Triton ports come from SAGEMAKER_SAFE_PORT_RANGE, never on the bound port', () => {
    expect(portsOf(printEnv({ SAGEMAKER_SAFE_PORT_RANGE: '23000-23999' }).vars)).toEqual({
      agent: 8080,
      grpc: 23000,
      metrics: 23001,
    });
    // SageMaker may bind the agent inside the range too.
    const bound = printEnv({ SAGEMAKER_SAFE_PORT_RANGE: '23000-23002', SAGEMAKER_BIND_TO_PORT: '23000' });
    expect(portsOf(bound.vars)).toEqual({ agent: 23000, grpc: 23001, metrics: 23002 });
    const middle = printEnv({ SAGEMAKER_SAFE_PORT_RANGE: '23000-23002', SAGEMAKER_BIND_TO_PORT: '23001' });
    expect(portsOf(middle.vars)).toEqual({ agent: 23001, grpc: 23000, metrics: 23002 });
    // Exhaustive over a small range: every choice lies in the range and no two ports are equal.
    for (let bind = 22998; bind <= 23004; bind++) {
      const r = printEnv({ SAGEMAKER_SAFE_PORT_RANGE: '23000-23003', SAGEMAKER_BIND_TO_PORT: String(bind) });
      expect(r.status).toBe(0);
      const p = portsOf(r.vars);
      expect(new Set([p.agent, p.grpc, p.metrics]).size).toBe(3);
      for (const q of [p.grpc, p.metrics]) expect(q >= 23000 && q <= 23003).toBe(true);
    }
  });

  test.each([
    [
      { SAGEMAKER_SAFE_PORT_RANGE: '23000-23001', SAGEMAKER_BIND_TO_PORT: '23000' },
      /no free port left for Triton/,
    ],
    [{ SAGEMAKER_SAFE_PORT_RANGE: '23000' }, /must be lo-hi/],
    [{ SAGEMAKER_SAFE_PORT_RANGE: '23999-23000' }, /is not a port range/],
    [{ SAGEMAKER_SAFE_PORT_RANGE: '23000-23999', TRITON_GRPC_PORT: '8001' }, /gRPC port 8001 is outside/],
    [{ SAGEMAKER_BIND_TO_PORT: 'http' }, /SAGEMAKER_BIND_TO_PORT must be a port number/],
    [{ TRITON_GRPC_PORT: '8002', TRITON_METRICS_PORT: '8002' }, /ports must differ/],
  ])('refuses %j with a clear message and exit 2', (env, message) => {
    const r = printEnv(env);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.vars).toEqual({});
  });

  test('explicit settings win over the defaults', () => {
    const r = printEnv({
      TRITON_MANAGED: 'false',
      TRITON_GRPC_URL: 'triton:9001',
      TRITON_MODEL_REPOSITORY: '/models',
    });
    expect(r.vars).toMatchObject({
      TRITON_MANAGED: 'false',
      TRITON_GRPC_URL: 'triton:9001',
      TRITON_MODEL_REPOSITORY: '/models',
      // A Triton started elsewhere: the agent's own default for its (unknown) metrics interval.
      AGENT_METRICS_INTERVAL_MS: '',
    });
    expect(printEnv({ TRITON_METRICS_INTERVAL_MS: '1000' }).vars.AGENT_METRICS_INTERVAL_MS).toBe('1500');
    expect(printEnv({ AGENT_METRICS_INTERVAL_MS: '900' }).vars.AGENT_METRICS_INTERVAL_MS).toBe('900');
    expect(printEnv({ TRITON_METRICS_INTERVAL_MS: 'soon' }).status).toBe(2);
  });

  test('an unknown argument is a usage error', () => {
    const r = spawnSync(SERVE, ['train'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument 'train'/);
  });

  describe('started for real against the Triton emulator (TRITON_MANAGED=false)', () => {
    let work: { dir: string; cleanup: () => Promise<void> };
    let emulator: TritonEmulator;
    let child: ChildProcess | undefined;
    beforeEach(async () => {
      work = await tempDir('serve-');
      emulator = await TritonEmulator.start({ modelRepository: path.join(work.dir, 'repository') });
    });
    afterEach(async () => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      await emulator.stop();
      await work.cleanup();
    });

    test('/ping answers, a model loads and answers, SIGTERM stops it cleanly', async () => {
      const agentPort = await freePort();
      const grpc = Number(emulator.grpcAddress.split(':')[1]);
      const metrics = Number(new URL(emulator.metricsUrl).port);
      const started = spawnServe({
        PATH: process.env.PATH ?? '',
        TRITON_MANAGED: 'false',
        SAGEMAKER_BIND_TO_PORT: String(agentPort),
        SAGEMAKER_SAFE_PORT_RANGE: `${Math.min(grpc, metrics)}-${Math.max(grpc, metrics)}`,
        TRITON_GRPC_PORT: String(grpc),
        TRITON_METRICS_PORT: String(metrics),
        TRITON_MODEL_REPOSITORY: path.join(work.dir, 'repository'),
      });
      child = started.child;
      const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
      const base = `http://127.0.0.1:${agentPort}`;
      await awaitPing(base, child, started.output);
      await loadAndInvoke(base, path.join(work.dir, 'opt', 'ml', 'models'));
      // The agent runs with the image's V8 options (the serve script exec'd node with them).
      const argv = (await fs.promises.readFile(`/proc/${child.pid}/cmdline`, 'utf8')).split('\0');
      expect(argv).toContain('--no-memory-reducer');
      // The serve script exec'd node: the signal reaches the agent, which drains and exits 0.
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(started.output()).not.toMatch(/NodeVersionSupportWarning/);
    });
  });
});

describe('scripts/serve in managed mode (the default), with the tritonserver stand-in on PATH', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let child: ChildProcess | undefined;
  beforeEach(async () => {
    work = await tempDir('serve-managed-');
  });
  afterEach(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await work.cleanup();
  });

  test("the agent starts tritonserver on the ports serve chose, inside SageMaker's safe range", async () => {
    const [agentPort, grpc, metrics] = [await freePort(), await freePort(), await freePort()];
    const lo = Math.min(grpc, metrics);
    const hi = Math.max(grpc, metrics);
    const repository = path.join(work.dir, 'repository');
    const started = spawnServe({
      PATH: `${STANDIN_BIN}${path.delimiter}${process.env.PATH ?? ''}`,
      SAGEMAKER_BIND_TO_PORT: String(agentPort),
      SAGEMAKER_SAFE_PORT_RANGE: `${lo}-${hi}`,
      TRITON_GRPC_PORT: String(grpc),
      TRITON_METRICS_PORT: String(metrics),
      TRITON_MODEL_REPOSITORY: repository,
      LOG_LEVEL: 'info',
    });
    child = started.child;
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    const base = `http://127.0.0.1:${agentPort}`;
    await awaitPing(base, child, started.output);
    await loadAndInvoke(base, path.join(work.dir, 'opt', 'ml', 'models'));

    const logs = started
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { message: string; args?: string[] });
    const args = logs.find((l) => l.message === 'tritonserver started')?.args ?? [];
    expect(args).toEqual(
      expect.arrayContaining([
        `--model-repository=${repository}`,
        '--model-control-mode=explicit',
        '--allow-http=false',
        `--grpc-port=${grpc}`,
        `--metrics-port=${metrics}`,
      ]),
    );
    for (const a of args.filter((x) => /^--(grpc|metrics)-port=/.test(x))) {
      const port = Number(a.split('=')[1]);
      expect(port >= lo && port <= hi && port !== agentPort).toBe(true);
    }
    // SIGTERM drains the agent, which stops its tritonserver; serve exec'd node, so the exit is the agent's.
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const metricsAnswer = await fetch(`http://127.0.0.1:${metrics}/metrics`).then(
      () => 'answered',
      () => 'gone',
    );
    expect(metricsAnswer).toBe('gone');
  });
});
