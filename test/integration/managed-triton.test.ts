import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { identityConfig, tempDir } from '../support/model-repo';
import { request, sagemakerArtifact } from '../support/agent-harness';
import { freePort, processAlive, startAgentProcess, type AgentProcess } from '../support/agent-process';
import { waitUntil } from '../support/wait';

/**
 * Managed mode through real processes: the agent (`src/main.ts`) starts `tritonserver` — here the stand-in
 * on PATH, the Triton emulator's CLI taking tritonserver's options — and supervises it. A FIFO named by
 * TRITONSERVER_STANDIN_GATE holds each start until the test writes a line into it, so "starting" and
 * "restarting" last exactly as long as the test needs (no sleeps).
 */

function modelSpec(name: string, inferMs = 0) {
  const extra = inferMs ? `parameters { key: "emulator_infer_ms" value { string_value: "${inferMs}" } }` : '';
  return {
    config: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, extra),
    versions: { '1': { 'model.py': 1000 } },
  };
}

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });
const dataOf = (r: { json: () => Record<string, unknown> }) =>
  (r.json() as { outputs: { data: number[] }[] }).outputs[0].data;

describe('managed tritonserver (TRITON_MANAGED=true)', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let repository: string;
  let models: string;
  let gate: string;
  let agent: AgentProcess | undefined;

  beforeEach(async () => {
    root = await tempDir('mme-managed-');
    repository = path.join(root.dir, 'repository');
    models = path.join(root.dir, 'models');
    gate = path.join(root.dir, 'gate');
    await fs.mkdir(repository);
    await fs.mkdir(models);
  });

  afterEach(async () => {
    await agent?.kill();
    agent = undefined;
    await root.cleanup();
  });

  const env = async (extra: Record<string, string> = {}) => ({
    TRITON_MANAGED: 'true',
    TRITON_MODEL_REPOSITORY: repository,
    TRITON_GRPC_URL: `127.0.0.1:${await freePort()}`,
    TRITON_METRICS_URL: `http://127.0.0.1:${await freePort()}/metrics`,
    TRITONSERVER_STANDIN_GATE: gate,
    AGENT_UNLOAD_POLL_MS: '10',
    // GPU samples every 50 ms, so a load waits milliseconds for a fresh one, as in the other stacks.
    TRITON_METRICS_INTERVAL_MS: '50',
    AGENT_METRICS_INTERVAL_MS: '150',
    ...extra,
  });

  /** Closes the gate: the next tritonserver start waits for `openGate`. */
  const closeGate = () => execFileSync('mkfifo', [gate]);
  /** Lets the waiting start go on, and leaves later starts ungated. */
  const openGate = async () => {
    await fs.writeFile(gate, 'go\n');
    await fs.rm(gate);
  };

  const load = async (base: string, name: string, inferMs = 0) => {
    const url = await sagemakerArtifact(models, `h-${name}`, name, modelSpec(name, inferMs));
    const r = await request(base, 'POST', '/models', { model_name: name, url });
    expect(r.status).toBe(200);
  };

  test('/ping is 503 while tritonserver starts and 200 once ready; a model loads; SIGTERM stops both', async () => {
    closeGate();
    const envFile = path.join(root.dir, 'tritonserver.env');
    agent = startAgentProcess(await env({ TRITONSERVER_STANDIN_ENV: envFile }));
    const base = await agent.url();
    const started = await agent.waitForLog((e) => e.message === 'tritonserver started');
    const args = started.args as string[];
    expect(args).toEqual(
      expect.arrayContaining([
        `--model-repository=${repository}`,
        '--model-control-mode=explicit',
        '--allow-http=false',
        '--allow-metrics=true',
        '--allow-gpu-metrics=true',
        '--metrics-interval-ms=50',
        // The agent dials loopback: Triton's unauthenticated control API listens there only.
        '--grpc-address=127.0.0.1',
        '--metrics-address=127.0.0.1',
        // Triton's own exit wait ends before the agent's 5 s stop grace does.
        '--exit-timeout-secs=4',
        '--model-load-retry-count=0',
        '--backend-config=tensorrt,triton-backend-memory-tracker=true',
        '--backend-config=onnxruntime,triton-backend-memory-tracker=true',
      ]),
    );
    // Held at the gate: not ready.
    const starting = await request(base, 'GET', '/ping');
    expect(starting.status).toBe(503);
    expect(starting.headers.get('retry-after')).toBe('1');

    await openGate();
    await agent.waitForLog((e) => e.message === 'agent ready');
    expect((await request(base, 'GET', '/ping')).status).toBe(200);
    // tritonserver's own lines reach the agent's log; it listens on loopback.
    expect(
      agent.logs.some(
        (e) =>
          e.source === 'tritonserver' && /Started GRPCInferenceService at 127\.0\.0\.1:\d+/.test(e.message),
      ),
    ).toBe(true);
    // CUDA counts GPUs in PCI bus order for tritonserver, as nvidia-smi does for the agent.
    expect(await fs.readFile(envFile, 'utf8')).toMatch(/^CUDA_DEVICE_ORDER=PCI_BUS_ID$/m);

    await load(base, 'echo');
    const r = await request(base, 'POST', '/models/echo/invoke', int32(41));
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([41]);

    const pid = started.pid as number;
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    expect(processAlive(pid)).toBe(false);
    expect(
      agent.logs.some((e) => e.source === 'tritonserver' && /Signal \(15\) received/.test(e.message)),
    ).toBe(true);
  });

  test('kill -9 of tritonserver under traffic: in-flight requests end 503 at once, /ping 503 then 200, models come back', async () => {
    agent = startAgentProcess(await env({ TRITON_RESTART_BACKOFF_MS: '50' }));
    const base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready');
    await load(base, 'slow', 60_000);
    await load(base, 'fast');
    expect((await request(base, 'POST', '/models/fast/invoke', int32(1))).status).toBe(200);

    const first = await agent.waitForLog((e) => e.message === 'tritonserver started');
    // Five invocations that would take a minute each are in flight when tritonserver dies.
    const inFlight = Array.from({ length: 5 }, (_, i) =>
      request(base, 'POST', '/models/slow/invoke', int32(i)).then((res) => ({ res, at: Date.now() })),
    );
    // A request sent after them on a fresh connection is answered after the agent has read them.
    expect((await request(base, 'GET', '/models')).status).toBe(200);

    closeGate();
    const killedAt = Date.now();
    process.kill(first.pid as number, 'SIGKILL');
    const ended = await Promise.all(inFlight);
    for (const { res, at } of ended) {
      expect(res.status).toBe(503);
      // Ended by the crash, far inside the minute the inference would have taken.
      expect(at - killedAt).toBeLessThan(10_000);
    }

    // Restarting (held at the gate): not ready.
    await agent.waitForLog((e) => e.message === 'tritonserver exited unexpectedly; restarting it');
    await agent.waitForLog((e) => e.message === 'tritonserver started' && e.pid !== first.pid);
    expect((await request(base, 'GET', '/ping')).status).toBe(503);
    // An invocation meanwhile is answered at once with a retryable 503, not held.
    const meanwhile = await request(base, 'POST', '/models/fast/invoke', int32(3));
    expect(meanwhile.status).toBe(503);
    expect(meanwhile.headers.get('retry-after')).toBe('1');

    await openGate();
    await agent.waitForLog((e) => e.message === 'tritonserver restarted');
    expect((await request(base, 'GET', '/ping')).status).toBe(200);

    // The restarted tritonserver came back empty (the emulator answers NOT_FOUND for a model it has not
    // loaded): an answer computed by it means the model was loaded into it again.
    const again = await request(base, 'POST', '/models/fast/invoke', int32(7));
    expect(again.status).toBe(200);
    expect(dataOf(again)).toEqual([7]);
    expect((await request(base, 'GET', '/models/fast/status')).json().state).toBe('resident');
    // Still listed: SageMaker's view of loaded models did not change.
    const listed = (await request(base, 'GET', '/models')).json() as { models: { modelName: string }[] };
    expect(listed.models.map((m) => m.modelName).sort()).toEqual(['fast', 'slow']);

    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
  });

  test('SIGTERM while tritonserver is still starting: it is stopped and the agent exits 0', async () => {
    closeGate();
    agent = startAgentProcess(await env());
    const base = await agent.url();
    const started = await agent.waitForLog((e) => e.message === 'tritonserver started');
    expect((await request(base, 'GET', '/ping')).status).toBe(503);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    expect(processAlive(started.pid as number)).toBe(false);
  });

  test('an unknown tritonserver option: the stand-in refuses it and the agent exits 1 saying why', async () => {
    agent = startAgentProcess(await env({ TRITON_SERVER_ARGS: '--log-verbose=1 --no-such-flag=1' }));
    const { code } = await agent.exited;
    expect(code).toBe(1);
    const failed = agent.logs.find((e) => e.message === 'agent failed to start');
    expect(failed?.level).toBe('error');
    expect(String(failed?.error)).toContain('tritonserver exited with code 1 before it was ready');
    expect(String(failed?.error)).toContain("unrecognized option '--no-such-flag'");
  });

  /**
   * A wrapper-style TRITON_SERVER_BIN: a shell script that starts tritonserver (the stand-in) as its child
   * and waits, writing the server's pid to `<root>/server.pid`.
   */
  const wrapper = async () => {
    const bin = path.join(root.dir, 'triton-wrapper.sh');
    const pidFile = path.join(root.dir, 'server.pid');
    await fs.writeFile(bin, `#!/bin/sh\ntritonserver "$@" &\necho $! > '${pidFile}'\nwait\n`, {
      mode: 0o755,
    });
    const serverPid = async () => Number((await fs.readFile(pidFile, 'utf8')).trim());
    return { bin, serverPid };
  };
  const until = (what: string, cond: () => boolean | Promise<boolean>, ms = 15_000) =>
    waitUntil(cond, { timeoutMs: ms, what });

  test('a wrapper dies and its tritonserver survives: the survivor is killed before the restart, /ping settles at 200', async () => {
    const w = await wrapper();
    agent = startAgentProcess(await env({ TRITON_SERVER_BIN: w.bin, TRITON_RESTART_BACKOFF_MS: '50' }));
    const base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready');
    const first = (await agent.waitForLog((e) => e.message === 'tritonserver started')).pid as number;
    const survivor = await w.serverPid();
    expect(processAlive(survivor)).toBe(true);
    // The wrapper dies; the server it started keeps Triton's ports and would answer for it.
    process.kill(first, 'SIGKILL');
    await agent.waitForLog((e) => e.message === 'tritonserver restarted', 'the restart');
    expect(processAlive(survivor)).toBe(false);
    const second = await w.serverPid();
    expect(second).not.toBe(survivor);
    // Ready again, and it stays so: no flapping between a survivor's answers and failed restarts.
    const pings: number[] = [];
    for (let i = 0; i < 20; i++) pings.push((await request(base, 'GET', '/ping')).status);
    expect(pings).toEqual(new Array(20).fill(200));
    expect(agent.logs.filter((e) => e.message === 'tritonserver restart failed')).toEqual([]);
  });

  test('kill -9 of the agent: its tritonserver dies with it, and what a wrapper left is reaped by the next agent', async () => {
    // Started directly, tritonserver gets the kernel's parent-death signal: it dies with the agent.
    agent = startAgentProcess(await env());
    await agent.waitForLog((e) => e.message === 'agent ready');
    const direct = (await agent.waitForLog((e) => e.message === 'tritonserver started')).pid as number;
    agent.child.kill('SIGKILL');
    await agent.exited;
    await until('tritonserver gone with its agent', () => !processAlive(direct));

    // Behind a wrapper, the server is a grandchild the signal does not reach: the next agent finds it by
    // the pidfile in the cache directory, checks its token, and kills its group before starting its own.
    const w = await wrapper();
    const shared = await env({ TRITON_SERVER_BIN: w.bin });
    agent = startAgentProcess(shared);
    await agent.waitForLog((e) => e.message === 'agent ready');
    const wrapperPid = (await agent.waitForLog((e) => e.message === 'tritonserver started')).pid as number;
    const orphan = await w.serverPid();
    agent.child.kill('SIGKILL');
    await agent.exited;
    // The agent's death has reached what it started (the wrapper, by the parent-death signal); the server
    // the wrapper started is still there.
    await until('the wrapper gone with its agent', () => !processAlive(wrapperPid));
    expect(processAlive(orphan)).toBe(true);
    agent = startAgentProcess(shared);
    const base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready', 'ready beside the orphan');
    expect(processAlive(orphan)).toBe(false);
    expect(
      agent.logs.some((e) => e.message === 'killing tritonserver processes an earlier agent left running'),
    ).toBe(true);
    expect((await request(base, 'GET', '/ping')).status).toBe(200);
  });

  test('a pidfile that cannot be written: tritonserver runs, the agent warns once, and no temporary file is left', async () => {
    const cache = path.join(root.dir, 'cache');
    // A non-empty folder where the pidfile goes: writing beside it works, renaming onto it cannot.
    await fs.mkdir(path.join(cache, 'tritonserver.pid'), { recursive: true });
    await fs.writeFile(path.join(cache, 'tritonserver.pid', 'keep'), 'x');
    agent = startAgentProcess(await env({ MODEL_CACHE_DIR: cache }));
    const base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready');
    const warned = agent.logs.filter((e) => e.message === 'could not write the tritonserver pidfile');
    expect(warned).toHaveLength(1);
    expect((await request(base, 'GET', '/ping')).status).toBe(200);
    expect((await fs.readdir(cache)).filter((f) => f.startsWith('tritonserver.pid.'))).toEqual([]);
  });

  test('a port tritonserver needs is held at start: the agent exits 1 naming the holder’s pid', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      agent = startAgentProcess(await env({ TRITON_GRPC_URL: `127.0.0.1:${port}` }));
      const { code } = await agent.exited;
      expect(code).toBe(1);
      const failed = agent.logs.find((e) => e.message === 'agent failed to start');
      expect(String(failed?.error)).toContain(
        `port ${port}, where tritonserver must listen, is held by pid ${process.pid}`,
      );
      expect(agent.logs.filter((e) => e.message === 'tritonserver started')).toEqual([]);
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });

  test('the package’s bin starts the server: `triton-sagemaker-mme-agent serve`, and --help lists it', async () => {
    const cli = path.join(__dirname, '..', '..', 'src', 'cli.ts');
    agent = startAgentProcess(await env(), [cli, 'serve']);
    const base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready');
    expect((await request(base, 'GET', '/ping')).status).toBe(200);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    const help = startAgentProcess({}, [cli, '--help']);
    expect((await help.exited).code).toBe(0);
    expect(help.text()).toMatch(/^\s+serve\s+run the agent/m);
    expect(help.text()).toMatch(/^\s+validate\s/m);
    expect(help.text()).toMatch(/^\s+plan\s/m);
    const version = startAgentProcess({}, [cli, '--version']);
    expect((await version.exited).code).toBe(0);
    expect(version.text().trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  test('a tritonserver binary that does not exist: the agent exits 1 naming it', async () => {
    const bin = path.join(root.dir, 'no-such-tritonserver');
    agent = startAgentProcess(await env({ TRITON_SERVER_BIN: bin }));
    const { code } = await agent.exited;
    expect(code).toBe(1);
    const failed = agent.logs.find((e) => e.message === 'agent failed to start');
    expect(String(failed?.error)).toContain(`could not be started: spawn ${bin} ENOENT`);
  });
});
