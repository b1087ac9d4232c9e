/**
 * The lifecycle seen from outside: a scripted scenario of loads, evictions and cold and warm invocations
 * gives exact lifecycle metrics at /metrics and an access log the capacity planner replays.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { tritonNameFor } from '../../src/artifacts';
import { planCapacity, readAccessLogs } from '../../src/planner';
import { identityConfig } from '../support/model-repo';
import { MiB, request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';

interface Family {
  name: string;
  metrics: { value?: string; count?: string; labels?: Record<string, string> }[];
}

async function scrape(stack: Stack): Promise<Map<string, Family>> {
  const res = await request(stack.url, 'GET', '/metrics');
  expect(res.status).toBe(200);
  const families = parsePrometheusTextFormat(res.body.toString()) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

const value = (m: Map<string, Family>, name: string) => Number(m.get(name)?.metrics[0]?.value);
const count = (m: Map<string, Family>, name: string) => Number(m.get(name)?.metrics[0]?.count);

describe('lifecycle metrics and the access log', () => {
  let stack: Stack;
  let logFile: string;

  beforeAll(async () => {
    const dir = await fs.mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'access-log-'));
    logFile = path.join(dir, 'access.log');
    stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', AGENT_ACCESS_LOG_FILE: logFile },
      emulator: { gpuMemoryBytes: 100 * MiB },
    });
  });
  afterAll(async () => {
    await stack.stop();
    await fs.rm(path.dirname(logFile), { recursive: true, force: true });
  });

  const add = async (name: string) => {
    const spec = {
      config: identityConfig(
        name,
        [{ type: 'TYPE_INT32', dims: [1] }],
        0,
        `parameters { key: "emulator_gpu_bytes" value { string_value: "${30 * MiB}" } }\n` +
          `parameters { key: "gpu_memory_bytes" value { string_value: "${30 * MiB}" } }`,
      ),
      versions: { '1': { 'model.py': 100 } },
    };
    const url = await sagemakerArtifact(stack.models, `h-${name}`, name, spec);
    expect((await request(stack.url, 'POST', '/models', { model_name: name, url })).status).toBe(200);
  };
  const invoke = async (name: string) => {
    const r = await request(stack.url, 'POST', `/models/${name}/invoke`, {
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }],
    });
    expect(r.status).toBe(200);
  };

  test('four models on a GPU for three: exact loads, evictions and resident count; the log replays', async () => {
    for (const m of ['a', 'b', 'c', 'd']) await add(m); // d evicts a
    await invoke('b'); // warm
    await invoke('a'); // cold: reloads a, evicts c (least recently used)
    await invoke('a'); // warm
    await invoke('b'); // warm
    const m = await scrape(stack);
    expect(count(m, 'sagemaker_model_loading_time_seconds')).toBe(5);
    expect(value(m, 'sagemaker_model_evictions_total')).toBe(2);
    expect(count(m, 'sagemaker_model_unloading_time_seconds')).toBe(2);
    expect(value(m, 'sagemaker_loaded_model_count')).toBe(3);
    // What models may use: the GPU less what it uses itself (its CUDA context, learned from the samples).
    const base = stack.emulator.gpu.baselineBytes;
    expect(Math.abs(value(m, 'sagemaker_gpu_capacity_total_bytes') - (100 * MiB - base))).toBeLessThan(MiB);
    expect(Math.abs(value(m, 'sagemaker_gpu_capacity_used_bytes') - 90 * MiB)).toBeLessThan(MiB);
    // The same per GPU, labelled with its UUID; and the GPU figures are being read.
    const perGpu = m.get('sagemaker_gpu_device_capacity_total_bytes')?.metrics ?? [];
    expect(perGpu.map((x) => x.labels?.gpu_uuid)).toEqual([stack.emulator.gpuUuid]);
    expect(value(m, 'sagemaker_gpu_metrics_available')).toBe(1);

    await stack.agent.stop(1000); // flushes the access log
    const lines = (await fs.readFile(logFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; event?: string; model: string; outcome?: string });
    expect(lines.filter((l) => l.type === 'lifecycle' && l.event === 'load').map((l) => l.model)).toEqual([
      'a',
      'b',
      'c',
      'd',
      'a',
    ]);
    expect(lines.filter((l) => l.event === 'evict').map((l) => l.model)).toEqual(['a', 'c']);
    expect(lines.filter((l) => l.type === 'invoke').map((l) => `${l.model}:${l.outcome}`)).toEqual([
      'b:hit',
      'a:cold',
      'a:hit',
      'b:hit',
    ]);
    // The planner replays what the agent wrote (b, a, a, b): with room for one 30 MiB model b misses
    // twice; with room for two, each model misses once.
    const log = await readAccessLogs([logFile]);
    expect(log.requests.length).toBe(4);
    expect(log.observedHits).toBe(3);
    const plan = planCapacity(log, { gpuBytes: [30 * MiB, 60 * MiB], headroomBytes: 0, policies: ['lru'] });
    expect(plan.rows.map((r) => [r.gpuBytes, r.coldLoads])).toEqual([
      [30 * MiB, 3],
      [60 * MiB, 2],
    ]);
  });
});

describe('the access log under concurrent cold requests', () => {
  test('one access-log line per invocation whatever its outcome: requests that gave up waiting for a load, unknown models', async () => {
    const dir = await fs.mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'access-log-'));
    const logFile = path.join(dir, 'access.log');
    const stack = await startStack({
      env: {
        AGENT_EVICTION_POLICY: 'lru',
        AGENT_ACCESS_LOG_FILE: logFile,
        AGENT_COLD_LOAD_WAIT_MS: '500',
        AGENT_MAX_BODY_BYTES: '4096',
      },
      emulator: { gpuMemoryBytes: 100 * MiB },
    });
    try {
      const addSized = async (name: string, mib: number) => {
        const bytes = `value { string_value: "${mib * MiB}" }`;
        const spec = {
          config: identityConfig(
            name,
            [{ type: 'TYPE_INT32', dims: [1] }],
            0,
            `parameters { key: "emulator_gpu_bytes" ${bytes} }\n` +
              `parameters { key: "gpu_memory_bytes" ${bytes} }\n` +
              'parameters { key: "emulator_load_ms" value { string_value: "200" } }',
          ),
          versions: { '1': { 'model.py': 100 } },
        };
        const url = await sagemakerArtifact(stack.models, `h-${name}`, name, spec);
        expect((await request(stack.url, 'POST', '/models', { model_name: name, url })).status).toBe(200);
      };
      // f is evicted by g and h (LRU); then three requests wait for its load.
      await addSized('f', 30);
      await addSized('g', 40);
      await addSized('h', 40);
      expect(stack.emulator.loadedModels()).not.toContain(tritonNameFor('f'));
      // Its load hangs: the three give up after the cold-load wait (a retryable 503 each).
      const release = stack.emulator.hangNextLoad(tritonNameFor('f'));
      const body = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] };
      const waited = await Promise.all(
        [1, 2, 3].map(() => request(stack.url, 'POST', '/models/f/invoke', body)),
      );
      expect(waited.map((r) => r.status)).toEqual([503, 503, 503]);
      release();
      const unknown = await Promise.all(
        [1, 2].map(() => request(stack.url, 'POST', '/models/nobody/invoke', body)),
      );
      expect(unknown.map((r) => r.status)).toEqual([404, 404]);
      const ok = await Promise.all([1, 2].map(() => request(stack.url, 'POST', '/models/f/invoke', body)));
      expect(ok.map((r) => r.status)).toEqual([200, 200]);
      // Refused before asking for the model: a content type it does not take, a body over the limit.
      const wrongType = await request(stack.url, 'POST', '/models/f/invoke', 'x', {
        'content-type': 'text/plain',
      });
      expect(wrongType.status).toBe(415);
      const tooLarge = await request(stack.url, 'POST', '/models/f/invoke', 'y'.repeat(5000), {
        'content-type': 'application/json',
      });
      expect(tooLarge.status).toBe(413);
      await stack.agent.stop(1000);
      const invokes = (await fs.readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; model: string; outcome?: string; error?: string })
        .filter((l) => l.type === 'invoke');
      // Nine requests, nine lines: three that gave up waiting, two for an unknown model, two answers, two
      // refused before they asked for their model.
      expect(invokes).toHaveLength(9);
      expect(invokes.filter((l) => l.model === 'f').map((l) => l.error ?? 'ok')).toEqual([
        'MODEL_NOT_READY',
        'MODEL_NOT_READY',
        'MODEL_NOT_READY',
        'ok',
        'ok',
        'UNSUPPORTED_MEDIA_TYPE',
        'PAYLOAD_TOO_LARGE',
      ]);
      expect(
        invokes.filter((l) => l.model === 'f' && l.error === 'MODEL_NOT_READY').map((l) => l.outcome),
      ).toEqual(['cold', 'cold', 'cold']);
      expect(invokes.filter((l) => l.model === 'nobody').map((l) => l.error)).toEqual([
        'MODEL_NOT_FOUND',
        'MODEL_NOT_FOUND',
      ]);
    } finally {
      await stack.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('requests that wait for the same load share its evictions: only the first names them', async () => {
    const dir = await fs.mkdtemp(path.join(process.env.TMPDIR ?? '/tmp', 'access-log-'));
    const logFile = path.join(dir, 'access.log');
    const stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', AGENT_ACCESS_LOG_FILE: logFile },
      emulator: { gpuMemoryBytes: 100 * MiB },
    });
    try {
      for (const name of ['a', 'b', 'c', 'd']) {
        const spec = {
          config: identityConfig(
            name,
            [{ type: 'TYPE_INT32', dims: [1] }],
            0,
            `parameters { key: "emulator_gpu_bytes" value { string_value: "${30 * MiB}" } }\n` +
              `parameters { key: "gpu_memory_bytes" value { string_value: "${30 * MiB}" } }\n` +
              'parameters { key: "emulator_load_ms" value { string_value: "200" } }',
          ),
          versions: { '1': { 'model.py': 100 } },
        };
        const url = await sagemakerArtifact(stack.models, `h-${name}`, name, spec);
        expect((await request(stack.url, 'POST', '/models', { model_name: name, url })).status).toBe(200);
      }
      // 'd' evicted 'a'; three requests for 'a' at once wait for one load, which evicts 'b'.
      const body = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] };
      const answers = await Promise.all(
        [1, 2, 3].map(() => request(stack.url, 'POST', '/models/a/invoke', body)),
      );
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
      await stack.agent.stop(1000);
      const invokes = (await fs.readFile(logFile, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; model: string; outcome?: string; evicted?: string[] })
        .filter((l) => l.type === 'invoke' && l.model === 'a');
      expect(invokes.map((l) => l.outcome)).toEqual(['cold', 'cold', 'cold']);
      expect(invokes.flatMap((l) => l.evicted ?? [])).toEqual(['b']);
    } finally {
      await stack.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
