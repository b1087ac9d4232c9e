import * as path from 'node:path';
import { identityConfig } from '../support/model-repo';
import { writeModel } from '../support/model-repo';
import { request, startStack, type Stack } from '../support/agent-harness';
import { waitUntil } from '../support/wait';

/** SAGEMAKER_MULTI_MODEL=false: the model SageMaker extracted is loaded at start; /ping waits for it. */
describe('single-model mode', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.stop();
  });

  /** Every /ping answer until the first 200 (the model is loaded), that one included. */
  async function pingUntil200(url: string): Promise<number[]> {
    const seen: number[] = [];
    await waitUntil(
      async () => {
        const s = (await request(url, 'GET', '/ping')).status;
        seen.push(s);
        return s === 200;
      },
      { timeoutMs: 3_000, what: '/ping answering 200', detail: () => `answers: ${seen.join(', ')}` },
    );
    return seen;
  }

  test('loads the only model folder, answers /ping once it is ready, and serves /invocations', async () => {
    const { tempDir } = await import('../support/model-repo');
    const dir = await tempDir('opt-ml-model-');
    try {
      await writeModel(dir.dir, 'resnet', {
        config: identityConfig(
          'resnet',
          [{ type: 'TYPE_INT32', dims: [1] }],
          0,
          'parameters { key: "emulator_load_ms" value { string_value: "200" } }',
        ),
        versions: { '1': { 'model.py': 10 } },
      });
      stack = await startStack({ env: { SAGEMAKER_MULTI_MODEL: 'false', AGENT_SINGLE_MODEL_DIR: dir.dir } });
      const seen = await pingUntil200(stack.url);
      expect(seen[0]).toBe(503);
      expect(seen[seen.length - 1]).toBe(200);
      const r = await request(stack.url, 'POST', '/invocations', {
        inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [3] }],
      });
      expect(r.status).toBe(200);
      expect((r.json() as { model_name: string; outputs: { data: number[] }[] }).outputs[0].data).toEqual([
        3,
      ]);
      expect((r.json() as { model_name: string }).model_name).toBe('resnet');
    } finally {
      await dir.cleanup();
    }
  });

  test('SAGEMAKER_TRITON_DEFAULT_MODEL_NAME picks the folder when there are several', async () => {
    const { tempDir } = await import('../support/model-repo');
    const dir = await tempDir('opt-ml-model-');
    try {
      for (const n of ['a', 'b']) {
        await writeModel(dir.dir, n, {
          config: identityConfig(n, [{ type: 'TYPE_INT32', dims: [1] }]),
          versions: { '1': { 'model.py': 1 } },
        });
      }
      stack = await startStack({
        env: {
          SAGEMAKER_MULTI_MODEL: 'false',
          AGENT_SINGLE_MODEL_DIR: dir.dir,
          SAGEMAKER_TRITON_DEFAULT_MODEL_NAME: 'b',
        },
      });
      expect((await pingUntil200(stack.url)).pop()).toBe(200);
      expect((await request(stack.url, 'GET', '/models')).json()).toEqual({
        models: [{ modelName: 'b', modelUrl: path.join(dir.dir, 'b') }],
      });
    } finally {
      await dir.cleanup();
    }
  });
});
