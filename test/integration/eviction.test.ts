import * as net from 'node:net';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { tritonNameFor } from '../../src/artifacts';
import { identityConfig } from '../support/model-repo';
import { MiB, request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';
import { waitUntil } from '../support/wait';

/** An identity model whose real GPU use (in the emulator) and declared footprint can differ. */
function modelSpec(name: string, opts: { gpuMiB: number; declaredMiB?: number | null; inferMs?: number }) {
  const params = [`parameters { key: "emulator_gpu_bytes" value { string_value: "${opts.gpuMiB * MiB}" } }`];
  const declared = opts.declaredMiB === undefined ? opts.gpuMiB : opts.declaredMiB;
  if (declared !== null)
    params.push(`parameters { key: "gpu_memory_bytes" value { string_value: "${declared * MiB}" } }`);
  if (opts.inferMs)
    params.push(`parameters { key: "emulator_infer_ms" value { string_value: "${opts.inferMs}" } }`);
  return {
    config: identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, params.join('\n')),
    versions: { '1': { 'model.py': 1000 } },
  };
}

/** Waits for a condition on the agent's state: resolves once it holds, fails after 5 s naming `what`. */
const waitFor = (what: string, cond: () => boolean) => waitUntil(cond, { timeoutMs: 5_000, what });

const int32 = (v: number) => ({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [v] }] });
const dataOf = (r: { json: () => Record<string, unknown> }) =>
  (r.json() as { outputs: { data: number[] }[] }).outputs[0].data;

describe('capacity-based eviction against a small emulated GPU', () => {
  let stack: Stack;

  const start = async (env: Record<string, string> = {}, emulator: Record<string, number> = {}) => {
    stack = await startStack({
      env: { AGENT_EVICTION_POLICY: 'lru', ...env },
      emulator: { gpuMemoryBytes: 100 * MiB, ...emulator },
    });
  };

  afterEach(async () => {
    await stack.stop();
  });

  const add = async (name: string, opts: Parameters<typeof modelSpec>[1]) => {
    const url = await sagemakerArtifact(stack.models, `h-${name}`, name, modelSpec(name, opts));
    return request(stack.url, 'POST', '/models', { model_name: name, url });
  };
  const invoke = (name: string, v = 1) => request(stack.url, 'POST', `/models/${name}/invoke`, int32(v));
  const resident = () => stack.emulator.loadedModels();
  const pinnedCount = () =>
    stack.agent.registry.list().filter((r) => (r as unknown as { pins: number }).pins > 0).length;
  const t = (name: string) => tritonNameFor(name);

  test('a new model evicts the least recently used one; evicted models stay listed and reload on invoke', async () => {
    await start();
    for (const m of ['a', 'b', 'c']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    expect((await invoke('a')).status).toBe(200);
    expect((await invoke('b')).status).toBe(200);
    // c is the least recently used.
    expect((await add('d', { gpuMiB: 30 })).status).toBe(200);
    expect(resident()).toEqual([t('a'), t('b'), t('d')].sort());
    const listed = (await request(stack.url, 'GET', '/models')).json().models as { modelName: string }[];
    expect(listed.map((m) => m.modelName)).toEqual(['a', 'b', 'c', 'd']);
    expect((await request(stack.url, 'GET', '/models/c/status')).json()).toMatchObject({
      state: 'evicted',
      evictions: 1,
    });
    // Invoking c brings it back, evicting the LRU among a, b, d (a).
    const r = await invoke('c', 42);
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([42]);
    expect(resident()).toEqual([t('b'), t('c'), t('d')].sort());
    expect(stack.emulator.counters(t('c')).loads).toBe(2);
    expect(stack.emulator.gpu.peakBytes()).toBeLessThanOrEqual(100 * MiB);
    // Evicted models are still on disk: the staged directory is recreated from them, nothing is fetched.
    expect(stack.emulator.counters(t('a')).loadFailures).toBe(0);
  });

  test('a model with a request in flight is never the victim', async () => {
    await start();
    expect((await add('slow', { gpuMiB: 30, inferMs: 600 })).status).toBe(200);
    for (const m of ['b', 'c']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    // slow is the LRU, but pinned by this request for 600 ms.
    const inflight = invoke('slow', 7);
    await waitFor('slow pinned by its request', () => pinnedCount() === 1);
    expect((await add('d', { gpuMiB: 30 })).status).toBe(200);
    expect(resident()).toEqual([t('c'), t('d'), t('slow')].sort());
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([7]);
  });

  test('two concurrent cold loads that do not both fit never make Triton run out of memory', async () => {
    await start();
    expect((await add('a', { gpuMiB: 30 })).status).toBe(200);
    const [x, y] = await Promise.all([add('x', { gpuMiB: 60 }), add('y', { gpuMiB: 60 })]);
    expect([x.status, y.status]).toContain(200);
    for (const r of [x, y]) expect([200, 507]).toContain(r.status);
    for (const m of ['a', 'x', 'y']) expect(stack.emulator.counters(t(m)).loadFailures).toBe(0);
    expect(stack.emulator.gpu.peakBytes()).toBeLessThanOrEqual(100 * MiB);
  });

  test('Triton out of memory despite the estimate: evict more and retry, then learn the real footprint', async () => {
    await start();
    for (const m of ['a', 'b', 'c']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    // Declares 5 MiB but takes 40 MiB: the first load fails in Triton; each failure teaches that it needs
    // more than it had (its reservation and what was free beside it), and the retry makes that much room.
    // With 3 MiB of the GPU its own, the first eviction frees 37 MiB: one more failure, one more eviction.
    const r = await add('liar', { gpuMiB: 40, declaredMiB: 5 });
    expect(r.status).toBe(200);
    expect(stack.emulator.counters(t('liar')).loadFailures).toBeLessThanOrEqual(2);
    expect(resident()).toContain(t('liar'));
    expect(stack.emulator.gpu.peakBytes()).toBeLessThanOrEqual(100 * MiB);
    // Then the samples teach its real footprint, and the lower bound gives way to it. Beside c, a reading
    // tells only their sum; alone on the GPU, a reading tells it apart.
    expect((await request(stack.url, 'DELETE', '/models/c')).status).toBe(200);
    await waitFor("liar's footprint measured at 40 MiB", () => {
      const s = stack.agent.registry.status('liar');
      return s?.footprintMeasured === true && Math.abs((s.footprintBytes ?? 0) - 40 * MiB) < MiB;
    });
  });

  test('the measured footprint replaces the estimate after one load, and is kept on disk', async () => {
    await start();
    // 1000 bytes of weights and nothing declared: the estimate is tiny; the emulator uses 30 MiB.
    expect((await add('m', { gpuMiB: 30, declaredMiB: null })).status).toBe(200);
    const before = (await request(stack.url, 'GET', '/models/m/status')).json();
    expect(before.footprintBytes).toBeLessThan(MiB);
    let after = before;
    await waitUntil(
      async () => {
        after = (await request(stack.url, 'GET', '/models/m/status')).json();
        return after.footprintMeasured === true;
      },
      { timeoutMs: 2_000, what: "m's footprint measured" },
    );
    // Learned from the GPU's figures, which move in whole MiB.
    expect(after.footprintMeasured).toBe(true);
    expect(Math.abs((after.footprintBytes as number) - 30 * MiB)).toBeLessThan(MiB);
    await stack.agent.registry.footprints?.flushed();
    const file = JSON.parse(
      await fs.readFile(path.join(stack.repository, '.cache', 'footprints.json'), 'utf8'),
    ) as Record<string, number>;
    expect(Object.values(file)).toHaveLength(1);
    expect(Math.abs(Object.values(file)[0] - 30 * MiB)).toBeLessThan(MiB);
  });

  test('nothing evictable until the cold-load wait ends: 507 saying what was needed, what is free and what is pinned', async () => {
    // Waits for pinned models to free up at most 200 ms; these requests hold them for 800 ms.
    await start({ AGENT_COLD_LOAD_WAIT_MS: '200' });
    for (const m of ['p1', 'p2', 'p3']) expect((await add(m, { gpuMiB: 30, inferMs: 800 })).status).toBe(200);
    const inflight = ['p1', 'p2', 'p3'].map((m) => invoke(m));
    await waitFor(
      'p1, p2 and p3 pinned by their requests',
      () => stack.emulator.lifecycle.records.size === 3 && pinnedCount() === 3,
    );
    const r = await add('d', { gpuMiB: 30 });
    expect(r.status).toBe(507);
    // The emulated GPU's CUDA context (its baseline) is what the GPU uses itself.
    const base = Math.round(stack.emulator.gpu.baselineBytes / MiB);
    const text = r.json().error as string;
    expect(text).toContain(
      `not enough GPU memory for model 'd' by the cold-load deadline: it needs 30 MiB and ${10 - base} MiB are free. ` +
        `The ledger: 90 MiB resident, 0 MiB reserved by loads in flight, 0 MiB being unloaded, ${base} MiB the GPU uses itself (CUDA context, memory pool, other processes), 0 MiB used and not yet explained, 0 MiB headroom; the last sample (`,
    );
    expect(text).toMatch(
      / ms old\) said 93 MiB of 100 MiB used; 3 resident model\(s\) holding 90 MiB are pinned by requests in flight$/,
    );
    expect((await Promise.all(inflight)).map((x) => x.status)).toEqual([200, 200, 200]);
    // Nothing changed for the others, and nothing of d was left behind.
    expect(resident()).toEqual([t('p1'), t('p2'), t('p3')].sort());
    expect((await request(stack.url, 'GET', '/models/d')).status).toBe(404);
  });

  test('a model larger than the GPU is a 507 at once, and nobody is evicted for it', async () => {
    await start();
    expect((await add('a', { gpuMiB: 30 })).status).toBe(200);
    const r = await add('huge', { gpuMiB: 150 });
    expect(r.status).toBe(507);
    // 100 MiB less the 3 MiB the GPU uses itself.
    expect(r.json().error).toMatch(
      /needs 150 MiB of GPU memory, more than the 97 MiB a GPU here has for models/,
    );
    expect(resident()).toEqual([t('a')]);
  });

  test('late memory release: waits for the freed memory instead of evicting more', async () => {
    await start({}, { memoryReleaseLagMs: 300 });
    for (const m of ['a', 'b', 'c']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    const r = await add('d', { gpuMiB: 30 });
    expect(r.status).toBe(200);
    // Only one model had to go, although the device showed its memory as used for 300 ms more.
    expect(resident()).toHaveLength(3);
    expect(resident()).toContain(t('d'));
    for (const m of ['a', 'b', 'c']) expect(stack.emulator.counters(t(m)).loadFailures).toBe(0);
    // Accounting first: d is tried as soon as the ledger frees room; while the released memory still
    // shows as used Triton refuses it, and the agent retries with backoff (25, 50, 100, 200 ms) for the
    // release wait instead of evicting more: at most four refusals for a 300 ms lag.
    expect(stack.emulator.counters(t('d')).loadFailures).toBeLessThanOrEqual(4);
  });

  test('the resident-count limit evicts even when memory would fit', async () => {
    await start({ AGENT_MAX_RESIDENT_MODELS: '2' });
    for (const m of ['a', 'b', 'c']) expect((await add(m, { gpuMiB: 10 })).status).toBe(200);
    expect(resident()).toEqual([t('b'), t('c')].sort());
  });

  test('the adaptive policy (the default) also makes room', async () => {
    await start({ AGENT_EVICTION_POLICY: 'adaptive' });
    for (const m of ['a', 'b', 'c', 'd', 'e']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      expect((await invoke(['a', 'b', 'c', 'd', 'e'][i % 5], i)).status).toBe(200);
    }

    expect(resident()).toHaveLength(3);
    expect(stack.emulator.gpu.peakBytes()).toBeLessThanOrEqual(100 * MiB);
  });

  test('a client that goes away cancels its call: the model is not held for it until the invoke deadline', async () => {
    await start();
    expect((await add('slow', { gpuMiB: 10, inferMs: 8_000 })).status).toBe(200);
    const port = Number(new URL(stack.url).port);
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] });
    const socket = net.connect(port, '127.0.0.1', () =>
      socket.write(
        `POST /models/slow/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ),
    );
    socket.on('error', () => undefined);
    await waitFor('slow pinned by the request', () => pinnedCount() === 1);
    socket.destroy();
    // Without cancellation the pin would last the 8 s inference (waitFor gives up after 5 s).
    await waitFor('the pin released when its client went away', () => pinnedCount() === 0);
  });

  test('DELETE of an evicted model forgets it', async () => {
    await start();
    for (const m of ['a', 'b', 'c', 'd']) expect((await add(m, { gpuMiB: 30 })).status).toBe(200);
    expect((await request(stack.url, 'GET', '/models/a/status')).json().state).toBe('evicted');
    expect((await request(stack.url, 'DELETE', '/models/a')).status).toBe(200);
    expect((await request(stack.url, 'GET', '/models/a')).status).toBe(404);
  });
});

test('a load waits for a pinned model to be released rather than answering 507 at once', async () => {
  const stack = await startStack({
    env: { AGENT_EVICTION_POLICY: 'lru' },
    emulator: { gpuMemoryBytes: 100 * MiB },
  });
  try {
    for (const m of ['p1', 'p2', 'p3']) {
      const url = await sagemakerArtifact(
        stack.models,
        `h-${m}`,
        m,
        modelSpec(m, { gpuMiB: 30, inferMs: 300 }),
      );
      expect((await request(stack.url, 'POST', '/models', { model_name: m, url })).status).toBe(200);
    }
    const inflight = ['p1', 'p2', 'p3'].map((m) =>
      request(stack.url, 'POST', `/models/${m}/invoke`, int32(1)),
    );
    const pinned = () =>
      stack.agent.registry.list().filter((r) => (r as unknown as { pins: number }).pins > 0).length;
    await waitFor('p1, p2 and p3 pinned by their requests', () => pinned() === 3);
    const url = await sagemakerArtifact(stack.models, 'h-d', 'd', modelSpec('d', { gpuMiB: 30 }));
    const r = await request(stack.url, 'POST', '/models', { model_name: 'd', url });
    expect(r.status).toBe(200);
    expect((await Promise.all(inflight)).map((x) => x.status)).toEqual([200, 200, 200]);
  } finally {
    await stack.stop();
  }
});

test('with a keep-alive set, an idle model is unloaded ahead of need and reloads on its next invoke', async () => {
  const stack = await startStack({
    env: { AGENT_EVICTION_POLICY: 'lru', AGENT_IDLE_UNLOAD_MS: '300' },
    emulator: { gpuMemoryBytes: 100 * MiB },
  });
  try {
    const url = await sagemakerArtifact(stack.models, 'h-idle', 'idle', modelSpec('idle', { gpuMiB: 10 }));
    expect((await request(stack.url, 'POST', '/models', { model_name: 'idle', url })).status).toBe(200);
    expect(stack.emulator.loadedModels()).toEqual([tritonNameFor('idle')]);
    let state = '';
    await waitUntil(
      async () => {
        state = (await request(stack.url, 'GET', '/models/idle/status')).json().state as string;
        return state === 'evicted';
      },
      { timeoutMs: 3_000, what: 'idle unloaded after its keep-alive (300 ms)' },
    );
    expect(state).toBe('evicted');
    expect(stack.emulator.loadedModels()).toEqual([]);
    const r = await request(stack.url, 'POST', '/models/idle/invoke', int32(5));
    expect(r.status).toBe(200);
    expect(dataOf(r)).toEqual([5]);
  } finally {
    await stack.stop();
  }
});
