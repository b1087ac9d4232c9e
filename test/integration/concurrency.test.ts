import { identityConfig } from '../support/model-repo';
import { request, sagemakerArtifact, startStack, type Stack } from '../support/agent-harness';

/**
 * 200 invocations in parallel over several models while one model is being unloaded and another loaded:
 * every answer is either the right one or a clean 404 for the model being removed; nothing hangs.
 */
describe('concurrent invokes, unload and load', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ emulator: { inferLatencyMs: 5, unloadLatencyMs: 50, loadLatencyMs: 30 } });
  });

  afterAll(async () => {
    await stack.stop();
  });

  test('200 parallel invokes with an unload and a load in the middle', async () => {
    const names = ['m0', 'm1', 'm2', 'm3', 'gone'];
    for (const n of names) {
      const url = await sagemakerArtifact(stack.models, `h-${n}`, n, {
        config: identityConfig(n, [{ type: 'TYPE_INT32', dims: [1] }]),
        versions: { '1': { 'model.py': 1 } },
      });
      expect((await request(stack.url, 'POST', '/models', { model_name: n, url })).status).toBe(200);
    }
    const lateUrl = await sagemakerArtifact(stack.models, 'h-late', 'late', {
      config: identityConfig('late', [{ type: 'TYPE_INT32', dims: [1] }]),
      versions: { '1': { 'model.py': 1 } },
    });

    let deleteStarted = Infinity;
    const results: { model: string; value: number; status: number; data?: number[]; sentAt: number }[] = [];
    const invokes = Array.from({ length: 200 }, async (_, i) => {
      // A time wait on purpose: the load generator staggers its requests over 40 ms, around the delete.
      await new Promise((r) => setTimeout(r, i % 40));
      const model = names[i % names.length];
      const sentAt = Date.now();
      const r = await request(stack.url, 'POST', `/models/${model}/invoke`, {
        inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [i] }],
      });
      results.push({
        model,
        value: i,
        status: r.status,
        sentAt,
        data: r.status === 200 ? (r.json() as { outputs: { data: number[] }[] }).outputs[0].data : undefined,
      });
    });
    const control = (async () => {
      // A time wait on purpose: the delete and the load land in the middle of the staggered requests.
      await new Promise((r) => setTimeout(r, 15));
      deleteStarted = Date.now();
      const del = request(stack.url, 'DELETE', '/models/gone');
      const load = request(stack.url, 'POST', '/models', { model_name: 'late', url: lateUrl });
      return Promise.all([del, load]);
    })();
    const [[del, load]] = await Promise.all([control, Promise.all(invokes)]);
    expect(del.status).toBe(200);
    expect(load.status).toBe(200);
    expect(results).toHaveLength(200);
    for (const r of results) {
      if (r.model === 'gone' && r.status === 404) {
        // Only requests that arrived after the delete began may miss the model.
        expect(r.sentAt).toBeGreaterThanOrEqual(deleteStarted - 5);
        continue;
      }
      expect(r.status).toBe(200);
      expect(r.data).toEqual([r.value]);
    }
    const late = await request(stack.url, 'POST', '/models/late/invoke', {
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [7] }],
    });
    expect((late.json() as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([7]);
    const listed = (await request(stack.url, 'GET', '/models')).json().models as { modelName: string }[];
    expect(listed.map((m) => m.modelName)).toEqual(['late', 'm0', 'm1', 'm2', 'm3']);
  });
});
