/**
 * Capacity measured, not guessed (regression tests of the capacity issue), against an emulated Triton that
 * reports no memory_usage for PyTorch, grows models at their first inference, has a CUDA context of its
 * own on the GPU and reads in whole MiB: footprints learned under churn in both directions, growth after
 * load handled inside the request, loads that wait for the first sample, failed cold requests logged cold.
 */
import { tritonNameFor } from '../../src/artifacts';
import { identityConfig } from '../support/model-repo';
import { MiB, request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';
import type { TritonEmulatorOptions } from '../support/triton-emulator';
import { waitUntil } from '../support/wait';

/** A PyTorch identity model whose weights file is `fileMiB` (its footprint, at the emulator's factor 1). */
function torchModel(name: string, fileMiB: number, extra = '') {
  return {
    config: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, extra).replace(
      'backend: "python"',
      'backend: "pytorch"',
    ),
    versions: { '1': { 'model.pt': fileMiB * MiB } },
  };
}

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });

describe('capacity measured, not guessed', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  const start = async (env: Record<string, string>, emulator: Partial<TritonEmulatorOptions>) => {
    stack = await startStack({ env: { AGENT_EVICTION_POLICY: 'lru', ...env }, emulator });
    return stack;
  };
  const add = async (s: Stack, name: string, model: ReturnType<typeof torchModel>) => {
    const url = await sagemakerArtifact(s.models, `h-${name}`, name, model);
    return request(s.url, 'POST', '/models', { model_name: name, url });
  };
  const status = async (s: Stack, name: string) =>
    (await request(s.url, 'GET', `/models/${name}/status`)).json();
  const until = (what: string, cond: () => Promise<boolean>) => waitUntil(cond, { timeoutMs: 6_000, what });

  test('over-estimates come down under churn: a GPU that holds three keeps three', async () => {
    // 70 MiB with a 2.1 MiB CUDA context: three 20 MiB models fit; at 1.25 × their file (25 MiB) only two.
    const s = await start({}, { gpuMemoryBytes: 70 * MiB });
    // Two loads at once: no load has the GPU to itself, so nothing is "quiet" to measure across.
    const [a, b] = await Promise.all([add(s, 'a', torchModel('a', 20)), add(s, 'b', torchModel('b', 20))]);
    expect([a.status, b.status]).toEqual([200, 200]);
    // The samples of the settled GPU teach what the two take together; alike as they are, each is charged
    // half of it (what each takes on its own is not yet told apart, so neither counts as measured).
    const near20 = async (m: string) =>
      Math.abs(((await status(s, m)).footprintBytes as number) - 20 * MiB) < MiB;
    await until('a and b charged what they take', async () => (await near20('a')) && (await near20('b')));
    expect((await add(s, 'c', torchModel('c', 20))).status).toBe(200);
    expect(s.emulator.loadedModels()).toHaveLength(3);
  });

  /**
   * Four 10 MiB PyTorch models that each take 6 MiB more once they ran (`extra` adds to their config) on a
   * 50 MiB GPU, then 20 requests across them: their statuses, and how many inferences Triton failed.
   */
  const fourGrowingModels = async (extra = '') => {
    const s = await start({}, { gpuMemoryBytes: 50 * MiB });
    // Declared at their size as loaded (10 MiB): four fit until they grow.
    const grows =
      `parameters { key: "emulator_growth_bytes" value { string_value: "${6 * MiB}" } }\n` +
      `parameters { key: "gpu_memory_bytes" value { string_value: "${10 * MiB}" } }` +
      extra;
    const models = ['m0', 'm1', 'm2', 'm3'];
    for (const m of models) expect((await add(s, m, torchModel(m, 10, grows))).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++)
      statuses.push((await request(s.url, 'POST', `/models/m${i % 4}/invoke`, int32(i))).status);
    const failures = models.reduce((sum, m) => sum + s.emulator.counters(tritonNameFor(m)).inferFailures, 0);
    return { s, statuses, failures };
  };

  test('growth after load: an out-of-memory inside a request evicts an idle model and retries; nothing fails', async () => {
    // Room for four as loaded but three as grown, and they grow at their first inference.
    const { s, statuses, failures } = await fourGrowingModels();
    expect(statuses).toEqual(new Array(20).fill(200));
    expect(s.emulator.gpu.peakBytes()).toBeLessThanOrEqual(50 * MiB);
    // Triton did run out of memory inside requests; the agent made room and retried each.
    expect(failures).toBeGreaterThan(0);
  });

  test('a model_warmup grows the model inside its load: requests never run out of memory, loads that do are retried', async () => {
    // As above, but each config warms up: Triton runs the sample on every instance before the load answers.
    const { s, statuses, failures } = await fourGrowingModels(
      '\nmodel_warmup [{ name: "one" batch_size: 0 inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [1] zero_data: true } } }]',
    );
    expect(statuses).toEqual(new Array(20).fill(200));
    expect(s.emulator.gpu.peakBytes()).toBeLessThanOrEqual(50 * MiB);
    expect(failures).toBe(0);
    // What the agent charges each has grown with it: three fit as grown (with the GPU's own 2.1 MiB).
    expect(s.emulator.loadedModels().length).toBeLessThanOrEqual(3);
  });

  test('loads issued before the first GPU sample wait for it: the GPU’s own memory is known when they are admitted', async () => {
    const s = await start({}, { gpuMemoryBytes: 100 * MiB });
    const release = s.emulator.holdMetrics();
    // Triton has just come up; its metrics page does not answer yet.
    s.agent.registry.expectSamples();
    const declared = `parameters { key: "gpu_memory_bytes" value { string_value: "${98 * MiB}" } }`;
    const asked = s.emulator.metricsRequests;
    const pending = add(s, 'big', torchModel('big', 1, declared));
    // The load asks for a sample and keeps waiting while the page does not answer.
    await until('the load waits for a sample', async () => s.emulator.metricsRequests >= asked + 3);
    expect(s.emulator.counters(tritonNameFor('big')).loads).toBe(0);
    release();
    // With the GPU's own 3 MiB known, 98 MiB cannot fit: refused at once, never sent to Triton.
    const r = await pending;
    expect(r.status).toBe(507);
    expect(r.json().error).toMatch(/needs 98 MiB of GPU memory, more than the 97 MiB a GPU here has/);
    expect(s.emulator.counters(tritonNameFor('big')).loads).toBe(0);
  });

  test('a cold request that fails is logged cold, its wait counted as waiting, not as the agent’s overhead', async () => {
    const s = await start({ AGENT_COLD_LOAD_WAIT_MS: '300' }, {});
    // Its load hangs in Triton past the request's cold-load wait.
    const hold = s.emulator.hangNextLoad(tritonNameFor('slow'));
    const url = await sagemakerArtifact(s.models, 'h-slow', 'slow', torchModel('slow', 1));
    const loading = request(s.url, 'POST', '/models', { model_name: 'slow', url });
    await until('the load has started', async () => (await status(s, 'slow')).state === 'loading');
    const r = await request(s.url, 'POST', '/models/slow/invoke', int32(1));
    hold();
    await loading;
    expect(r.status).toBe(503);
    const page = (await request(s.url, 'GET', '/metrics')).body.toString();
    const value = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(page)?.[1]);
    // Counted as a request that waited for a load (ModelLoadingWaitTime), about the 300 ms it waited ...
    expect(value('sagemaker_model_loading_wait_time_seconds_count')).toBe(1);
    expect(value('sagemaker_model_loading_wait_time_seconds_sum')).toBeGreaterThanOrEqual(0.25);
    // ... and not as the agent's own time (OverheadLatency).
    expect(value('sagemaker_overhead_latency_seconds_sum')).toBeLessThan(0.2);
  });
});
