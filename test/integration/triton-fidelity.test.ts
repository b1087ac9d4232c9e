/**
 * The agent against Triton as Triton behaves where our earlier picture was wrong (each a regression test of
 * the fidelity issue): GPUs told apart by identity, TensorRT's masked out-of-memory, a dead Python stub,
 * moves that rebuild instances, memory held after a failed load, DCGM's edge cases and the memory tracker.
 */
import * as grpc from '@grpc/grpc-js';
import { tritonNameFor } from '../../src/artifacts';
import { identityConfig, resnetTrtConfig } from '../support/model-repo';
import { MiB, request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';
import type { TritonEmulatorOptions } from '../support/triton-emulator';
import { waitUntil, within } from '../support/wait';

/** An identity model (python backend by default) taking `gpuMiB` per instance, declared or not. */
function spec(
  name: string,
  opts: { gpuMiB: number; declaredMiB?: number | null; groups?: string; backend?: string; inferMs?: number },
) {
  const params = [
    `parameters { key: "emulator_gpu_bytes" value { string_value: "${opts.gpuMiB * MiB}" } }`,
    opts.declaredMiB === null
      ? ''
      : `parameters { key: "gpu_memory_bytes" value { string_value: "${(opts.declaredMiB ?? opts.gpuMiB) * MiB}" } }`,
    opts.inferMs ? `parameters { key: "emulator_infer_ms" value { string_value: "${opts.inferMs}" } }` : '',
    opts.groups ?? '',
  ];
  let config = identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, params.join('\n'));
  let file = 'model.py';
  if (opts.backend === 'onnxruntime') {
    config = config.replace('backend: "python"', 'backend: "onnxruntime"');
    file = 'model.onnx';
  } else if (opts.backend === 'pytorch') {
    config = config.replace('backend: "python"', 'backend: "pytorch"');
    file = 'model.pt';
  }
  return { config, versions: { '1': { [file]: 100 } } };
}

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });

describe('the agent against Triton as it really behaves', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  const start = async (env: Record<string, string>, emulator: Partial<TritonEmulatorOptions>) => {
    stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', ...env },
      emulator: { gpuMemoryBytes: 100 * MiB, ...emulator },
    });
    return stack;
  };
  const add = async (s: Stack, name: string, model: ReturnType<typeof spec>) => {
    const url = await sagemakerArtifact(s.models, `h-${name}`, name, model);
    return request(s.url, 'POST', '/models', { model_name: name, url });
  };
  const on = (s: Stack, name: string) =>
    s.emulator.placement(tritonNameFor(name)).flatMap((bytes, d) => (bytes > 0 ? [d] : []));

  test('1. GPUs are matched to CUDA devices by identity (nvidia-smi), not by sorting their UUIDs', async () => {
    // GPU 0's UUID sorts after GPU 1's, as random UUIDs often do.
    const s = await start(
      {},
      {
        gpuCount: 2,
        gpuUuids: ['GPU-ffffffff-1111-4111-8111-111111111111', 'GPU-00000000-2222-4222-8222-222222222222'],
      },
    );
    for (const m of ['p1', 'p2', 'p3'])
      expect(
        (await add(s, m, spec(m, { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_GPU, gpus: [0] }]' })))
          .status,
      ).toBe(200);
    for (const m of ['u1', 'u2', 'u3']) expect((await add(s, m, spec(m, { gpuMiB: 30 }))).status).toBe(200);
    // GPU 1 was empty: nothing was evicted, the unpinned models went there.
    expect(s.emulator.loadedModels()).toHaveLength(6);
    for (const m of ['u1', 'u2', 'u3']) expect(on(s, m)).toEqual([1]);
    expect(s.emulator.gpus.map((g) => g.peakBytes() <= g.totalBytes)).toEqual([true, true]);
  });

  test('1b. without nvidia-smi, several GPUs are one pool: every model on every GPU, said once', async () => {
    const s = await start({ AGENT_NVIDIA_SMI: '/nonexistent/nvidia-smi' }, { gpuCount: 2 });
    expect((await add(s, 'a', spec('a', { gpuMiB: 10 }))).status).toBe(200);
    expect(on(s, 'a')).toEqual([0, 1]);
    // Even one whose config pins GPU 0 is charged on both (which GPU is 0 is unknown).
    expect(
      (
        await add(
          s,
          'pinned',
          spec('pinned', { gpuMiB: 10, groups: 'instance_group [{ kind: KIND_GPU, gpus: [0] }]' }),
        )
      ).status,
    ).toBe(200);
    expect(s.agent.registry.ledger?.identified).toBe(false);
    expect(s.agent.registry.ledger?.devicesOf('pinned')).toBe('all');
  });

  test('2. TensorRT out of memory masked as "unable to load plan file": unmasked by a sample, evicted for, retried', async () => {
    const s = await start({}, {});
    for (const m of ['a', 'b', 'c']) expect((await add(s, m, spec(m, { gpuMiB: 30 }))).status).toBe(200);
    // A 30 MiB plan declared as 5 MiB: Triton's auto-complete cannot deserialise it in the 7 MiB left.
    const url = await sagemakerArtifact(s.models, 'h-trt', 'trt', {
      config:
        resnetTrtConfig('trt') + '\nparameters { key: "gpu_memory_bytes" value { string_value: "5242880" } }',
      versions: { '1': { 'model.plan': 30 * MiB } },
    });
    const r = await request(s.url, 'POST', '/models', { model_name: 'trt', url });
    expect(r.status).toBe(200);
    expect(s.emulator.counters(tritonNameFor('trt')).loadFailures).toBeGreaterThanOrEqual(1);
    expect(s.emulator.loadedModels()).toContain(tritonNameFor('trt'));
    expect(s.emulator.gpu.peakBytes()).toBeLessThanOrEqual(100 * MiB);
  });

  test('2b. the same text with room on the GPU is a bad plan: 400, the others untouched', async () => {
    const s = await start({}, {});
    expect((await add(s, 'a', spec('a', { gpuMiB: 10 }))).status).toBe(200);
    const url = await sagemakerArtifact(s.models, 'h-bad', 'bad', {
      config: resnetTrtConfig('bad'),
      versions: { '1': { 'model.plan': MiB } },
    });
    s.emulator.failNextLoad(
      tritonNameFor('bad'),
      `Internal: unable to load plan file to auto complete config: ${s.repository}/${tritonNameFor('bad')}/1/model.plan`,
    );
    const r = await request(s.url, 'POST', '/models', { model_name: 'bad', url });
    expect(r.status).toBe(400);
    expect(r.json().error).toMatch(/unable to load plan file to auto complete config/);
    expect(s.emulator.loadedModels()).toEqual([tritonNameFor('a')]);
  });

  test('3. a Python stub that died is tried once more; twice is a 503, never remembered as a bad model', async () => {
    const s = await start({ MODEL_DATA_URL: 'file:///unused/' }, {});
    const stub = (n: string) => `Internal: Stub process '${tritonNameFor(n)}_0_0' is not healthy.`;
    s.emulator.failNextLoad(tritonNameFor('once'), stub('once'));
    expect((await add(s, 'once', spec('once', { gpuMiB: 10 }))).status).toBe(200);
    s.emulator.failNextLoad(tritonNameFor('twice'), stub('twice'));
    s.emulator.failNextLoad(tritonNameFor('twice'), stub('twice'));
    const r = await add(s, 'twice', spec('twice', { gpuMiB: 10 }));
    expect(r.status).toBe(503);
    expect(r.json().error).toMatch(/stub process died twice/);
    // Not remembered: the next try loads it.
    expect((await add(s, 'twice', spec('twice', { gpuMiB: 10 }))).status).toBe(200);
  });

  test('4. a move to one more GPU keeps the instance on the GPU that stays: no second copy on a full GPU', async () => {
    const s = await start({ AGENT_SCALE_PERIOD_MS: '200' }, { gpuCount: 2 });
    // GPU 0 holds the busy model and a filler: no room for a second copy of it there.
    expect(
      (
        await add(
          s,
          'hot',
          spec('hot', { gpuMiB: 40, inferMs: 40, groups: 'instance_group [{ kind: KIND_GPU, count: 1 }]' }),
        )
      ).status,
    ).toBe(200);
    const home = on(s, 'hot')[0];
    const filler = spec('filler', {
      gpuMiB: 45,
      groups: `instance_group [{ kind: KIND_GPU, gpus: [${home}] }]`,
    });
    expect((await add(s, 'filler', filler)).status).toBe(200);
    let busy = true;
    const client = async () => {
      while (busy) expect((await request(s.url, 'POST', '/models/hot/invoke', int32(1))).status).toBe(200);
    };
    const clients = Array.from({ length: 3 }, client);
    try {
      await waitUntil(() => on(s, 'hot').length >= 2, { timeoutMs: 10_000, what: 'hot on both GPUs' });
    } finally {
      busy = false;
      await Promise.all(clients);
    }
    expect(on(s, 'hot')).toEqual([0, 1]);
    // The update created an instance on the new GPU only: GPU 0 never held two copies of it.
    expect(s.emulator.gpus[home].peakBytes()).toBeLessThanOrEqual(100 * MiB);
    expect(s.emulator.counters(tritonNameFor('hot')).loadFailures).toBe(0);
  });

  test('4b. TensorRT is rebuilt by a move: without room for a second copy on the GPU it keeps, it is not moved', async () => {
    const s = await start({ AGENT_SCALE_PERIOD_MS: '200' }, { gpuCount: 2 });
    const url = await sagemakerArtifact(s.models, 'h-hot', 'hot', {
      config:
        resnetTrtConfig('hot') +
        `\nparameters { key: "emulator_gpu_bytes" value { string_value: "${40 * MiB}" } }` +
        '\nparameters { key: "emulator_infer_ms" value { string_value: "40" } }',
      versions: { '1': { 'model.plan': 100 } },
    });
    expect((await request(s.url, 'POST', '/models', { model_name: 'hot', url })).status).toBe(200);
    const home = on(s, 'hot')[0];
    // The rest of its GPU is taken by a model in steady use (never worth sending away for a move).
    const filler = spec('filler', {
      gpuMiB: 52,
      groups: `instance_group [{ kind: KIND_GPU, gpus: [${home}] }]`,
    });
    expect((await add(s, 'filler', filler)).status).toBe(200);
    const body = {
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], data: new Array(3 * 224 * 224).fill(0) },
      ],
    };
    let busy = true;
    const client = async (model: string, payload: object) => {
      while (busy)
        expect((await request(s.url, 'POST', `/models/${model}/invoke`, payload)).status).toBe(200);
    };
    const clients = [...Array.from({ length: 3 }, () => client('hot', body)), client('filler', int32(1))];
    // Several scaler periods of demand for the busy model: eight (1.6 s at 200 ms), as the scaler decides them.
    await within(s.agent.registry.scalerPeriods(8), { timeoutMs: 20_000, what: 'eight scaler periods' });
    busy = false;
    await Promise.all(clients);
    // Every instance would be built anew beside the old ones, and its GPU has no room for that: no move
    // was tried, so Triton never ran out of memory on one.
    expect(on(s, 'hot')).toEqual([home]);
    expect(s.emulator.counters(tritonNameFor('hot')).loadFailures).toBe(0);
    expect(s.emulator.gpus[home].peakBytes()).toBeLessThanOrEqual(100 * MiB);
  });

  test('5. memory a failed load leaves behind is held until a sample shows it: the next load does not overflow', async () => {
    const s = await start({}, {});
    // A PyTorch model that takes more than the GPU has: it fails on its first instance and leaves what it
    // allocated in PyTorch's cache (no destructor runs to empty it).
    expect(
      (await add(s, 'huge', spec('huge', { gpuMiB: 200, declaredMiB: 50, backend: 'pytorch' }))).status,
    ).toBe(507);
    expect(s.emulator.gpu.torchCache).toBeGreaterThan(0);
    // An ONNX Runtime model, which cannot use PyTorch's cache: with nothing to evict, 507 from the agent's
    // own ledger and sample, never a load Triton runs out of memory on.
    const r = await add(s, 'onnx', spec('onnx', { gpuMiB: 30, backend: 'onnxruntime' }));
    expect(r.status).toBe(507);
    expect(s.emulator.counters(tritonNameFor('onnx')).loads).toBe(0);
    expect(r.json().error).toMatch(/used and not yet explained/);
  });

  test('6. DCGM: figures in whole MiB and failed reads (0 of 0) are no reason to think a GPU full', async () => {
    // Every refresh one of the two GPUs reads 0 of 0.
    const s = await start({}, { gpuCount: 2, failedReadEvery: 1 });
    for (let i = 0; i < 4; i++)
      expect((await add(s, `m${i}`, spec(`m${i}`, { gpuMiB: 40 }))).status).toBe(200);
    // (On failure, which models went, and where the ledger had them.)
    const where = [0, 1, 2, 3].map((i) => [
      `m${i}`,
      s.agent.registry.status(`m${i}`)?.state,
      s.agent.registry.ledger?.devicesOf(`m${i}`),
      s.agent.registry.status(`m${i}`)?.footprintBytes,
    ]);
    expect(where.filter((w) => w[1] !== 'resident')).toEqual([]);
    expect(s.emulator.loadedModels()).toHaveLength(4);
    const ledger = s.agent.registry.ledger;
    expect(ledger?.devices.map((d) => d.totalBytes)).toEqual([100 * MiB, 100 * MiB]);
  });

  test('6b. a metrics page with no nv_gpu series is "metrics unavailable", not "no GPUs": gauge and log say so', async () => {
    const s = await start({ AGENT_FIRST_SAMPLE_WAIT_MS: '300' }, { gpuMetrics: false });
    expect((await add(s, 'a', spec('a', { gpuMiB: 10 }))).status).toBe(200);
    expect(s.agent.registry.gpuMetrics).toBe('unavailable');
    const page = (await request(s.url, 'GET', '/metrics')).body.toString();
    expect(page).toMatch(/^sagemaker_gpu_metrics_available 0$/m);
  });

  test('7. ModelStatistics.memory_usage comes only from ONNX Runtime (and TensorRT) with the memory tracker', async () => {
    // Samples far apart: what the agent knows at once comes from memory_usage alone.
    const s = await start({ AGENT_METRICS_INTERVAL_MS: '60000' }, { memoryTracker: ['onnxruntime'] });
    expect(
      (await add(s, 'onnx', spec('onnx', { gpuMiB: 30, declaredMiB: null, backend: 'onnxruntime' }))).status,
    ).toBe(200);
    expect(
      (await add(s, 'torch', spec('torch', { gpuMiB: 30, declaredMiB: null, backend: 'pytorch' }))).status,
    ).toBe(200);
    const status = async (n: string) => (await request(s.url, 'GET', `/models/${n}/status`)).json();
    await waitUntil(async () => (await status('onnx')).footprintMeasured === true, {
      timeoutMs: 2_000,
      what: "onnx's footprint measured",
    });
    expect(await status('onnx')).toMatchObject({ footprintMeasured: true, footprintBytes: 30 * MiB });
    expect((await status('torch')).footprintMeasured).toBe(false);
  });

  test('a request that runs out of memory with no idle model beside it is a 507 that says so', async () => {
    const s = await start({}, {});
    expect((await add(s, 'only', spec('only', { gpuMiB: 10 }))).status).toBe(200);
    s.emulator.failNextInfer(
      tritonNameFor('only'),
      grpc.status.INTERNAL,
      'PyTorch execute failure: CUDA out of memory. Tried to allocate 2.00 GiB',
    );
    const r = await request(s.url, 'POST', '/models/only/invoke', int32(1));
    expect(r.status).toBe(507);
    expect(r.json().error).toMatch(/CUDA out of memory/);
  });
});
