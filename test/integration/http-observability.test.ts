import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Agent } from '../../src/agent';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/observability';
import { buildTar } from '../support/archives';
import { identityConfig, tempDir } from '../support/model-repo';
import { request } from '../support/agent-harness';
import { TritonEmulator } from '../support/triton-emulator';

/**
 * Issue 10, items 4 and 5, through a real agent and sockets: a scripted scenario (a cold invoke, a warm
 * one, a bad one) gives exact metric values at GET /metrics and one JSON log line per request with the
 * request id and the latency split, and never the payload.
 */
describe('request logs and metrics', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  let agent: Agent;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    root = await tempDir('mme-observability-');
    const repository = path.join(root.dir, 'repository');
    const artifacts = path.join(root.dir, 'artifacts');
    await fs.mkdir(repository);
    await fs.mkdir(artifacts);
    await fs.writeFile(
      path.join(artifacts, 'm1.tar.gz'),
      await buildTar([
        { name: 'm1/config.pbtxt', content: identityConfig('m1', [{ type: 'TYPE_INT32', dims: [1] }]) },
        { name: 'm1/1/model.py', content: 'x' },
      ]),
    );
    emulator = await TritonEmulator.start({
      modelRepository: repository,
      metricsIntervalMs: 20,
      loadLatencyMs: 50,
    });
    const config = loadConfig({
      SAGEMAKER_BIND_TO_PORT: '0',
      AGENT_BIND_HOST: '127.0.0.1',
      TRITON_GRPC_URL: emulator.grpcAddress,
      TRITON_METRICS_URL: emulator.metricsUrl,
      TRITON_MODEL_REPOSITORY: repository,
      MODEL_DATA_URL: `file://${artifacts}/`,
      AGENT_METRICS_INTERVAL_MS: '60',
      AGENT_GPU_HEADROOM_BYTES: '0',
    });
    const sink = {
      write: (s: string) => {
        for (const l of s.split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    };
    agent = new Agent(config, createLogger('info', false, sink));
    await agent.start();
  });

  afterAll(async () => {
    await agent.stop(1000);
    await emulator.stop();
    await root.cleanup();
  });

  const invoke = (body: object, requestId: string) =>
    request(agent.url, 'POST', '/models/m1.tar.gz/invoke', body, { 'X-Amzn-RequestId': requestId });
  const flushed = () => new Promise<void>((resolve) => setImmediate(resolve));

  test('cold, warm and bad invocations: exact metrics, one log line each with the latency split', async () => {
    const secret = 'SECRET-PAYLOAD-4242';
    const body = { id: secret, inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [424242] }] };
    const cold = await invoke(body, 'cold-1');
    expect(cold.status).toBe(200);
    expect(cold.headers.get('x-amzn-requestid')).toBe('cold-1');
    const warm = await invoke(body, 'warm-1');
    expect(warm.status).toBe(200);
    const badRequest = await invoke(
      { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: ['x'] }] },
      'bad-1',
    );
    expect(badRequest.status).toBe(400);

    const metrics = await request(agent.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = metrics.body.toString();
    const sample = (line: string) => {
      const found = text.split('\n').find((l) => l.startsWith(`${line} `));
      return found === undefined ? undefined : Number(found.slice(line.length + 1));
    };
    expect(sample('sagemaker_invocations_total{model="m1.tar.gz"}')).toBe(3);
    expect(sample('sagemaker_model_cache_hit_total{model="m1.tar.gz"}')).toBe(1);
    expect(sample('sagemaker_invocation_4xx_errors_total{model="m1.tar.gz"}')).toBe(1);
    expect(sample('sagemaker_invocation_5xx_errors_total{model="m1.tar.gz"}')).toBeUndefined();
    expect(sample('sagemaker_model_loading_wait_time_seconds_count')).toBe(1);
    // The cold request waited at least the emulated 50 ms load.
    expect(sample('sagemaker_model_loading_wait_time_seconds_sum')).toBeGreaterThanOrEqual(0.05);
    expect(sample('sagemaker_model_latency_seconds_count{model="m1.tar.gz"}')).toBe(2);
    expect(sample('sagemaker_overhead_latency_seconds_count')).toBe(3);

    await flushed();
    const byId = (id: string) => lines.filter((l) => l.message === 'request' && l.requestId === id);
    for (const id of ['cold-1', 'warm-1', 'bad-1']) expect(byId(id)).toHaveLength(1);
    const [c] = byId('cold-1');
    const [w] = byId('warm-1');
    const [b] = byId('bad-1');
    expect(c).toMatchObject({
      level: 'info',
      method: 'POST',
      path: '/models/m1.tar.gz/invoke',
      model: 'm1.tar.gz',
      status: 200,
      cold: true,
    });
    expect(c.waitMs as number).toBeGreaterThanOrEqual(50);
    expect(w).toMatchObject({ status: 200, cold: false, waitMs: 0 });
    for (const l of [c, w]) {
      expect(typeof l.tritonMs).toBe('number');
      expect(typeof l.overheadMs).toBe('number');
      // The split adds up to the total (each part rounded to a microsecond).
      expect(
        Math.abs((l.waitMs as number) + (l.tritonMs as number) + (l.overheadMs as number) - (l.ms as number)),
      ).toBeLessThan(0.01);
    }
    expect(b).toMatchObject({ status: 400, model: 'm1.tar.gz' });
    expect(b.tritonMs).toBeUndefined();
    // Never the payload, in any line.
    expect(JSON.stringify(lines)).not.toContain(secret);
    expect(JSON.stringify(lines)).not.toContain('424242');
  });
});
