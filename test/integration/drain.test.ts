import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { identityConfig, tempDir } from '../support/model-repo';
import { request, sagemakerArtifact } from '../support/agent-harness';
import { freePort, processAlive, startAgentProcess, type AgentProcess } from '../support/agent-process';

/**
 * SIGTERM drain through a real agent process (managed mode, the tritonserver stand-in on PATH) and real
 * keep-alive sockets: the scenario that used to reset 15 of 20 clients.
 */

const SLOW_MS = 1_500;

function modelSpec(name: string, inferMs: number) {
  return {
    config: identityConfig(
      name,
      [{ type: 'TYPE_INT32', dims: [1] }],
      0,
      // Enough instances that the requests in flight run at once rather than queue.
      `parameters { key: "emulator_infer_ms" value { string_value: "${inferMs}" } }\n` +
        'instance_group { kind: KIND_CPU count: 32 }',
    ),
    versions: { '1': { 'model.py': 1000 } },
  };
}

interface Answer {
  status: number;
  connection: string | undefined;
  body: string;
  socket: net.Socket;
}

/** One request through a keep-alive agent; rejects with the socket error (ECONNRESET …) if there is one. */
function send(
  agent: http.Agent,
  base: string,
  method: string,
  p: string,
  body?: object,
  onSocket?: (s: net.Socket) => void,
): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      base + p,
      {
        method,
        agent,
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            connection: res.headers.connection,
            body: Buffer.concat(chunks).toString('utf8'),
            socket: req.socket as net.Socket,
          }),
        );
      },
    );
    req.on('error', reject);
    if (onSocket) req.once('socket', (s) => onSocket(s as net.Socket));
    req.end(payload);
  });
}

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });

describe('SIGTERM drain with keep-alive clients', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let agent: AgentProcess | undefined;
  let base: string;

  beforeEach(async () => {
    root = await tempDir('mme-drain-');
  });

  /** Keep-alive client agents of the current test, destroyed after it whatever happened. */
  const clients: http.Agent[] = [];
  const keepAliveClient = (options: http.AgentOptions = {}) => {
    const a = new http.Agent({ keepAlive: true, ...options });
    clients.push(a);
    return a;
  };

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await agent?.kill();
    agent = undefined;
    await root.cleanup();
  });

  const startAgent = async (env: Record<string, string> = {}) => {
    const repository = path.join(root.dir, 'repository');
    const models = path.join(root.dir, 'models');
    await fs.mkdir(repository);
    await fs.mkdir(models);
    agent = startAgentProcess({
      TRITON_MANAGED: 'true',
      TRITON_MODEL_REPOSITORY: repository,
      TRITON_GRPC_URL: `127.0.0.1:${await freePort()}`,
      TRITON_METRICS_URL: `http://127.0.0.1:${await freePort()}/metrics`,
      // GPU samples every 50 ms, so a load waits milliseconds for a fresh one, as in the other stacks.
      TRITON_METRICS_INTERVAL_MS: '50',
      AGENT_METRICS_INTERVAL_MS: '150',
      ...env,
    });
    base = await agent.url();
    await agent.waitForLog((e) => e.message === 'agent ready');
    const url = await sagemakerArtifact(models, 'h-slow', 'slow', modelSpec('slow', SLOW_MS));
    expect((await request(base, 'POST', '/models', { model_name: 'slow', url })).status).toBe(200);
    return agent;
  };

  test('in-flight requests all answered with Connection: close, idle sockets closed cleanly, nothing reset, exit 0', async () => {
    const proc = await startAgent();
    const tritonPid = (await proc.waitForLog((e) => e.message === 'tritonserver started')).pid as number;
    const keepAlive = keepAliveClient({ maxSockets: 64 });
    const socketErrors: string[] = [];
    const watch = (s: net.Socket) =>
      s.on('error', (err: NodeJS.ErrnoException) => socketErrors.push(err.code ?? err.message));

    // 30 kept-alive connections: requests sent in one turn each get their own.
    const warm = await Promise.all(Array.from({ length: 30 }, () => send(keepAlive, base, 'GET', '/models')));
    const sockets = new Set(warm.map((a) => a.socket));
    expect(sockets.size).toBe(30);
    sockets.forEach(watch);

    // A raw kept-alive connection: one full request, then the start of a second one.
    const raw = net.connect(Number(new URL(base).port), '127.0.0.1');
    let rawText = '';
    raw.setEncoding('utf8');
    raw.on('data', (d: string) => (rawText += d));
    const rawClosed = new Promise<void>((resolve) => raw.on('close', () => resolve()));
    raw.on('error', (err: NodeJS.ErrnoException) => socketErrors.push(`raw ${err.code}`));
    await new Promise<void>((resolve) => raw.once('connect', () => resolve()));
    raw.write('GET /models HTTP/1.1\r\nHost: agent\r\n\r\n');
    await new Promise<void>((resolve) => {
      const check = () => (rawText.includes('\r\n\r\n{') ? resolve() : raw.once('data', check));
      check();
    });
    expect(rawText).toMatch(/^HTTP\/1\.1 200/);
    rawText = '';
    raw.write('GET /models HTTP/1.1\r\nHost: agent\r\n');

    // 20 slow invocations on 20 of those connections; 10 stay idle.
    const busy = new Set<net.Socket>();
    const slow = Array.from({ length: 20 }, (_, i) =>
      send(keepAlive, base, 'POST', '/models/slow/invoke', int32(i), (s) => busy.add(s)),
    );
    // Answered on a fresh connection after the agent has read the 20 (their bytes arrived first).
    expect((await request(base, 'GET', '/models')).status).toBe(200);
    expect(busy.size).toBe(20);
    const idle = [...sockets].filter((s) => !busy.has(s));
    expect(idle).toHaveLength(10);
    const idleClosed = Promise.all(
      idle.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve()))),
    );

    const termAt = Date.now();
    proc.child.kill('SIGTERM');
    const draining = await proc.waitForLog((e) => e.message === 'draining');
    expect(draining.inFlight).toBe(20);

    // Idle connections are closed by the agent, cleanly.
    await idleClosed;

    // The raw connection's request, finished now, is answered 503 with Connection: close, then closed.
    raw.write('\r\n');
    await rawClosed;
    expect(rawText).toMatch(/^HTTP\/1\.1 503/);
    expect(rawText).toMatch(/\r\nConnection: close\r\n/i);
    expect(rawText).toContain('the agent is shutting down');

    // A new request finds no kept-alive connection and no listener: refused, not reset.
    await expect(send(keepAlive, base, 'GET', '/ping')).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    const answers = await Promise.all(slow);
    answers.forEach((a, i) => {
      expect(a.status).toBe(200);
      expect(a.connection).toBe('close');
      expect((JSON.parse(a.body) as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([i]);
    });

    const exit = await proc.exited;
    const tookMs = Date.now() - termAt;
    expect(exit).toEqual({ code: 0, signal: null });
    // Inside the configured bound (AGENT_DRAIN_TIMEOUT_MS + TRITON_STOP_GRACE_MS), far inside SageMaker's 30 s.
    expect(tookMs).toBeLessThan(25_000);
    expect(processAlive(tritonPid)).toBe(false);
    expect(socketErrors).toEqual([]);
    expect(proc.logs.some((e) => e.message === 'stopped')).toBe(true);
  });

  test('requests still running at the drain deadline are answered 503, not reset, and the agent exits 0', async () => {
    const proc = await startAgent({ AGENT_DRAIN_TIMEOUT_MS: '300' });
    // Slower than the drain allows.
    const models = path.join(root.dir, 'models');
    const url = await sagemakerArtifact(models, 'h-slower', 'slower', modelSpec('slower', 60_000));
    expect((await request(base, 'POST', '/models', { model_name: 'slower', url })).status).toBe(200);
    const keepAlive = keepAliveClient();
    const running = Array.from({ length: 3 }, (_, i) =>
      send(keepAlive, base, 'POST', '/models/slower/invoke', int32(i)),
    );
    expect((await request(base, 'GET', '/models')).status).toBe(200);
    proc.child.kill('SIGTERM');
    const answers = await Promise.all(running);
    for (const a of answers) {
      expect(a.status).toBe(503);
      expect(a.connection).toBe('close');
      expect(JSON.parse(a.body)).toEqual({
        error: 'the agent is shutting down; the request did not finish in time',
      });
    }
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(
      proc.logs.some(
        (e) => e.message === 'drain deadline passed; answered the requests still running with 503',
      ),
    ).toBe(true);
  });
});
