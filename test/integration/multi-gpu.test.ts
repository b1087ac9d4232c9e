/**
 * Placement and per-device accounting on an emulated 4-GPU instance: each model on one GPU by default,
 * an artifact's own instance_group respected, per-device out of memory, eviction on the right device.
 */
import { tritonNameFor } from '../../src/artifacts';
import type { ModelRecord } from '../../src/models';
import { identityConfig } from '../support/model-repo';
import { MiB, request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';
import { nextEvent, waitUntil, within } from '../support/wait';

const GPUS = 4;

function spec(name: string, opts: { gpuMiB: number; declaredMiB?: number; groups?: string }) {
  const params = [
    `parameters { key: "emulator_gpu_bytes" value { string_value: "${opts.gpuMiB * MiB}" } }`,
    `parameters { key: "gpu_memory_bytes" value { string_value: "${(opts.declaredMiB ?? opts.gpuMiB) * MiB}" } }`,
    opts.groups ?? '',
  ];
  return {
    config: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, params.join('\n')),
    versions: { '1': { 'model.py': 100 } },
  };
}

describe('several GPUs', () => {
  let stack: Stack;
  const start = async (
    env: Record<string, string> = {},
    emulator: { modelLoadThreadCount?: number } = {},
  ) => {
    stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', ...env },
      emulator: { gpuCount: GPUS, gpuMemoryBytes: 100 * MiB, ...emulator },
    });
  };
  afterEach(async () => {
    await stack.stop();
  });

  const add = async (name: string, opts: Parameters<typeof spec>[1]) => {
    const url = await sagemakerArtifact(stack.models, `h-${name}`, name, spec(name, opts));
    return request(stack.url, 'POST', '/models', { model_name: name, url });
  };
  const invoke = (name: string) =>
    request(stack.url, 'POST', `/models/${name}/invoke`, {
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }],
    });
  /** The devices a model holds memory on, in the emulator. */
  const on = (name: string) =>
    stack.emulator.placement(tritonNameFor(name)).flatMap((bytes, d) => (bytes > 0 ? [d] : []));
  const peaks = () => stack.emulator.gpus.map((g) => g.peakBytes() / MiB);
  /** Waits until `name` holds memory on `cond`'s number of GPUs. */
  const placed = (name: string, what: string, cond: (gpus: number) => boolean, timeoutMs = 10_000) =>
    waitUntil(() => cond(on(name).length), {
      timeoutMs,
      what: `${name} ${what}`,
      detail: () => `on GPUs [${on(name).join(', ')}]`,
    });

  test('by default each model goes on one GPU: four GPUs hold four times the models', async () => {
    await start();
    for (let i = 0; i < 12; i++) expect((await add(`m${i}`, { gpuMiB: 30 })).status).toBe(200);
    expect(stack.emulator.loadedModels()).toHaveLength(12);
    for (let i = 0; i < 12; i++) expect(on(`m${i}`)).toHaveLength(1);
    expect(peaks().every((p) => p <= 100)).toBe(true);
    for (let i = 0; i < 12; i++) expect((await invoke(`m${i}`)).status).toBe(200);
  });

  test('adaptive: a model its one instance cannot keep up with gets more GPUs, and gives them back when it cools', async () => {
    await start({ AGENT_SCALE_PERIOD_MS: '200' });
    const hot = await add('hot', {
      gpuMiB: 30,
      groups: 'parameters { key: "emulator_infer_ms" value { string_value: "40" } }',
    });
    expect(hot.status).toBe(200);
    expect(on('hot')).toHaveLength(1);
    // Four clients keep four requests in Triton at all times: four instances' worth of work.
    let busy = true;
    let answered = 0;
    const client = async () => {
      while (busy) {
        const r = await invoke('hot');
        expect(r.status).toBe(200);
        answered++;
      }
    };
    const clients = Array.from({ length: 4 }, client);
    await placed('hot', 'on three GPUs or more', (n) => n >= 3);
    expect(on('hot').length).toBeGreaterThanOrEqual(3);
    busy = false;
    await Promise.all(clients);
    expect(answered).toBeGreaterThan(0);
    // No traffic: after two quiet periods per step it gives the GPUs back, one at a time.
    await placed('hot', 'back on one GPU', (n) => n <= 1);
    expect(on('hot')).toHaveLength(1);
    expect(peaks().every((p) => p <= 100)).toBe(true);
    expect((await invoke('hot')).status).toBe(200);
  });

  /** Keeps `n` requests in flight for `name` until the returned function is called; counts failures. */
  const load = (name: string, n: number) => {
    let busy = true;
    let failed = 0;
    const client = async () => {
      while (busy) if ((await invoke(name)).status !== 200) failed++;
    };
    const clients = Array.from({ length: n }, client);
    return async () => {
      busy = false;
      await Promise.all(clients);
      return failed;
    };
  };

  test('adaptive on full GPUs: a busy model gets a second GPU by evicting a model nobody uses', async () => {
    await start({ AGENT_SCALE_PERIOD_MS: '200' });
    const infer40 = 'parameters { key: "emulator_infer_ms" value { string_value: "40" } }';
    expect((await add('hot', { gpuMiB: 30, groups: infer40 })).status).toBe(200);
    for (let i = 0; i < 11; i++) expect((await add(`idle${i}`, { gpuMiB: 30 })).status).toBe(200);
    // Three 30 MiB models on each 100 MiB GPU: no device has room for another instance.
    expect(stack.emulator.loadedModels()).toHaveLength(12);
    const stop = load('hot', 4);
    await placed('hot', 'on a second GPU', (n) => n >= 2);
    expect(on('hot').length).toBeGreaterThanOrEqual(2);
    expect(await stop()).toBe(0);
    // Room was made by sending idle models away, never by overfilling a device.
    expect(stack.emulator.loadedModels().length).toBeLessThan(12);
    expect(peaks().every((p) => p <= 100)).toBe(true);
  });

  test('adaptive on full GPUs: no model in use is sent away for a busy one when its reload would cost more', async () => {
    await start({ AGENT_SCALE_PERIOD_MS: '200' });
    const infer40 = 'parameters { key: "emulator_infer_ms" value { string_value: "40" } }';
    const slowLoad = 'parameters { key: "emulator_load_ms" value { string_value: "1000" } }';
    expect((await add('hot', { gpuMiB: 30, groups: infer40 })).status).toBe(200);
    const others = Array.from({ length: 11 }, (_, i) => `warm${i}`);
    const added = await Promise.all(others.map((m) => add(m, { gpuMiB: 30, groups: slowLoad })));
    expect(added.map((r) => r.status)).toEqual(others.map(() => 200));
    // The others are used all the time (one client cycling through them), and each takes a second to load:
    // sending one away costs more cold-load time than a second instance of 'hot' saves.
    let cycling = true;
    let warmFailed = 0;
    const cycle = (async () => {
      for (let i = 0; cycling; i++)
        if ((await invoke(others[i % others.length])).status !== 200) warmFailed++;
    })();
    const stop = load('hot', 2);
    // Ten scaler periods (2 s at 200 ms) of demand: counted as the scaler decides them, not guessed from time.
    await within(stack.agent.registry.scalerPeriods(10), { timeoutMs: 20_000, what: 'ten scaler periods' });
    expect(on('hot')).toHaveLength(1);
    expect(stack.emulator.loadedModels()).toHaveLength(12);
    expect(await stop()).toBe(0);
    cycling = false;
    await cycle;
    expect(warmFailed).toBe(0);
  });

  test('a move Triton does not answer in time is counted on both sets of GPUs, never on too few', async () => {
    // One load thread, busy with a slow load: the busy model's update waits behind it past the deadline.
    // A 1 s scaler period: the failed move is not retried (backoff: two periods) before Triton finishes it.
    await start(
      { AGENT_SCALE_PERIOD_MS: '1000', AGENT_LOAD_TIMEOUT_MS: '1500' },
      { modelLoadThreadCount: 1 },
    );
    const infer40 = 'parameters { key: "emulator_infer_ms" value { string_value: "40" } }';
    expect((await add('hot', { gpuMiB: 30, groups: infer40 })).status).toBe(200);
    const slowLoad = 'parameters { key: "emulator_load_ms" value { string_value: "3000" } }';
    const slow = add('slow', { gpuMiB: 30, groups: slowLoad });
    const stop = load('hot', 4);
    const hotName = tritonNameFor('hot');
    const ledger = stack.agent.registry.ledger;
    // The update times out in the agent (1.5 s) but Triton carries it out once the slow load is done.
    await placed('hot', 'on a second GPU', (n) => n >= 2, 15_000);
    expect(on('hot').length).toBeGreaterThanOrEqual(2);
    const charged = ledger?.devicesOf('hot');
    expect(charged).not.toBe('all');
    for (const d of on('hot')) expect(charged).toContain(d);
    expect(await stop()).toBe(0);
    // The slow load itself passes the agent's deadline too (a 504); only the move matters here.
    expect([200, 504]).toContain((await slow).status);
    expect(stack.emulator.loadedModels()).toContain(hotName);
    expect(peaks().every((p) => p <= 100)).toBe(true);
  });

  test('Triton restarting during a move: the model is reloaded, not left counted as resident', async () => {
    await start({ AGENT_SCALE_PERIOD_MS: '60000' });
    const slowUpdate = 'parameters { key: "emulator_load_ms" value { string_value: "800" } }';
    expect((await add('a', { gpuMiB: 30, groups: slowUpdate })).status).toBe(200);
    const registry = stack.agent.registry as unknown as {
      catalogue: { get(n: string): ModelRecord | undefined };
      lifecycle: { rescale(r: ModelRecord, d: number[]): Promise<boolean> };
    };
    const record = registry.catalogue.get('a') as ModelRecord;
    const from = on('a');
    const updating = nextEvent(stack.emulator.events, 'load-started', {
      filter: (m) => m === tritonNameFor('a'),
      timeoutMs: 10_000,
      what: "Triton starting a's move",
    });
    const moving = registry.lifecycle.rescale(record, [from[0], (from[0] + 1) % GPUS]);
    // Triton has begun the update (its new instance takes 800 ms to load): it restarts in the middle.
    await updating;
    await stack.emulator.restart();
    const restored = stack.agent.registry.restoreAfterTritonRestart();
    await moving;
    await restored;
    // Either way the agent's view and Triton's agree: the model is loaded again and answers.
    expect(stack.emulator.loadedModels()).toContain(tritonNameFor('a'));
    expect((await invoke('a')).status).toBe(200);
    expect(peaks().every((p) => p <= 100)).toBe(true);
  });

  test('triton-default puts every model on every GPU, so the fourth model evicts', async () => {
    await start({ AGENT_GPU_PLACEMENT: 'triton-default' });
    for (let i = 0; i < 4; i++) expect((await add(`m${i}`, { gpuMiB: 30 })).status).toBe(200);
    expect(stack.emulator.loadedModels()).toHaveLength(3);
    expect(on('m3')).toEqual([0, 1, 2, 3]);
  });

  test("an artifact's own instance_group is respected: its GPUs, and no GPU for a CPU model", async () => {
    await start();
    expect(
      (await add('pinned', { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_GPU, gpus: [2] }]' })).status,
    ).toBe(200);
    expect(on('pinned')).toEqual([2]);
    expect((await add('cpu', { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_CPU }]' })).status).toBe(
      200,
    );
    expect(on('cpu')).toEqual([]);
    expect((await invoke('cpu')).status).toBe(200);
  });

  test('AGENT_ARTIFACT_GPUS=ignore: configs all pinned to GPU 0 are spread by the placement instead', async () => {
    await start({ AGENT_ARTIFACT_GPUS: 'ignore' });
    const pinned = 'instance_group [{ kind: KIND_GPU, gpus: [0] }]';
    for (let i = 0; i < 6; i++) expect((await add(`p${i}`, { gpuMiB: 30, groups: pinned })).status).toBe(200);
    // Respected, three would fit on GPU 0 and the others would evict them; here all six stay.
    expect(stack.emulator.loadedModels()).toHaveLength(6);
    const used = new Set([...Array(6).keys()].flatMap((i) => on(`p${i}`)));
    expect(used.size).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < 6; i++) expect(on(`p${i}`)).toHaveLength(1);
    // A CPU model stays on the CPU whatever the setting.
    expect((await add('cpu', { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_CPU }]' })).status).toBe(
      200,
    );
    expect(on('cpu')).toEqual([]);
  });

  test('AGENT_ARTIFACT_GPUS=ignore on a one-GPU instance: a config naming GPU 1 loads on GPU 0', async () => {
    stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', AGENT_ARTIFACT_GPUS: 'ignore' },
      emulator: { gpuCount: 1, gpuMemoryBytes: 100 * MiB },
    });
    const pinned = 'instance_group [{ kind: KIND_GPU, gpus: [1] }]';
    expect((await add('p', { gpuMiB: 30, groups: pinned })).status).toBe(200);
    expect(on('p')).toEqual([0]);
    expect((await invoke('p')).status).toBe(200);
  });

  test('an agent restarted with AGENT_ARTIFACT_GPUS changed charges a model where Triton has it', async () => {
    await start({ AGENT_ARTIFACT_GPUS: 'ignore' });
    const pinned = 'instance_group [{ kind: KIND_GPU, gpus: [3] }]';
    expect((await add('p', { gpuMiB: 30, groups: pinned })).status).toBe(200);
    const placed = on('p');
    expect(placed).toHaveLength(1);
    expect(placed).not.toEqual([3]);
    await stack.agent.stop(100);
    const { Agent } = await import('../../src/agent');
    const agent = new Agent({ ...stack.agent.config, artifactGpus: 'respect' }, stack.agent.logger);
    await agent.start();
    try {
      // Adopted from the staged config (what Triton was given), not from the artifact's own GPU list.
      expect(agent.registry.ledger?.devicesOf('p')).toEqual(placed);
      expect(
        (
          await request(agent.url, 'POST', '/models/p/invoke', {
            inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }],
          })
        ).status,
      ).toBe(200);
    } finally {
      await agent.stop(100);
    }
  });

  test('AGENT_ARTIFACT_GPUS=ignore with triton-default: a pinned model goes on every GPU', async () => {
    await start({ AGENT_ARTIFACT_GPUS: 'ignore', AGENT_GPU_PLACEMENT: 'triton-default' });
    const pinned = 'instance_group [{ kind: KIND_GPU, gpus: [2] }]';
    expect((await add('p', { gpuMiB: 30, groups: pinned })).status).toBe(200);
    expect(on('p')).toEqual([0, 1, 2, 3]);
    expect((await invoke('p')).status).toBe(200);
  });

  test('eviction frees room on the device that needs it', async () => {
    await start();
    for (let i = 0; i < 12; i++) expect((await add(`m${i}`, { gpuMiB: 30 })).status).toBe(200);
    const onThree = [...Array(12).keys()].map((i) => `m${i}`).filter((m) => on(m)[0] === 3);
    // Pinned to GPU 3 by its artifact: only a model on GPU 3 may go, the least recently used there.
    expect(
      (await add('late', { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_GPU, gpus: [3] }]' })).status,
    ).toBe(200);
    expect(on('late')).toEqual([3]);
    const gone = onThree.filter((m) => !stack.emulator.loadedModels().includes(tritonNameFor(m)));
    expect(gone).toEqual([onThree[0]]);
    expect(stack.emulator.loadedModels()).toHaveLength(12);
    expect(peaks().every((p) => p <= 100)).toBe(true);
  });

  test('out of memory on one device: evict there and retry, the other devices untouched', async () => {
    await start();
    for (let i = 0; i < 3; i++)
      expect(
        (await add(`g${i}`, { gpuMiB: 30, groups: 'instance_group [{ kind: KIND_GPU, gpus: [1] }]' })).status,
      ).toBe(200);
    expect((await add('other', { gpuMiB: 30 })).status).toBe(200);
    const otherOn = on('other');
    // Declares 5 MiB but takes 40 on GPU 1, which holds 90 (and its own 3): Triton refuses it there, once
    // or twice, each refusal teaching that it needs more than it had.
    const r = await add('liar', {
      gpuMiB: 40,
      declaredMiB: 5,
      groups: 'instance_group [{ kind: KIND_GPU, gpus: [1] }]',
    });
    expect(r.status).toBe(200);
    expect(on('liar')).toEqual([1]);
    expect(stack.emulator.counters(tritonNameFor('liar')).loadFailures).toBeLessThanOrEqual(2);
    expect(on('other')).toEqual(otherOn);
    expect(peaks()[1]).toBeLessThanOrEqual(100);
  });
});
