/**
 * What the agent expects of Triton's control plane, as checks that run against any Triton: the emulator in
 * CI, a real `tritonserver` by hand (`npm run conformance -- --grpc HOST:PORT --metrics URL --repository DIR`).
 * Each check writes its own small models into the repository (a Python-backend identity model that real
 * Triton runs as it is), uses only the agent's own client, cites the Triton source it expects, and removes
 * what it wrote. A check that fails against a real Triton means the agent's picture of Triton is wrong there.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { parseTritonMetrics, TritonClient, TritonError } from '../../src/triton';
import { placeOnGpus, parsePbtxt, writePbtxt } from '../../src/model-config';
import { waitUntil } from '../support/wait';

export interface ConformanceTarget {
  /** Triton's gRPC address, host:port. */
  grpc: string;
  /** Triton's metrics page (optional: the metrics checks are skipped without it). */
  metrics?: string;
  /** The model repository Triton was started with (`--model-repository`), as this process sees it. */
  repository: string;
}

export interface CheckResult {
  name: string;
  outcome: 'passed' | 'failed' | 'skipped';
  detail?: string;
  ms: number;
}

interface Context {
  triton: TritonClient;
  target: ConformanceTarget;
  /** A fresh model name for this check (removed afterwards). */
  name(tag: string): string;
  /** Writes an identity model (INPUT0 → OUTPUT0, INT32 [1]) into the repository. */
  writeModel(name: string, extraConfig?: string, configName?: string): Promise<string>;
  /** GPUs Triton's metrics list (0 without a metrics page or GPU metrics). */
  gpus(): Promise<number>;
  skip(why: string): never;
}

interface Check {
  name: string;
  /** The Triton source (or documentation) whose behaviour it expects. */
  cites: string;
  run(ctx: Context): Promise<void>;
}

class Skip extends Error {}

const MODEL_PY = `import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Identity: OUTPUT0 = INPUT0 (written by the agent's conformance suite)."""

    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data)]))
        return responses
`;

function identityConfig(name: string, extra = ''): string {
  return [
    `name: "${name}"`,
    'backend: "python"',
    'max_batch_size: 0',
    'input { name: "INPUT0" data_type: TYPE_INT32 dims: [1] }',
    'output { name: "OUTPUT0" data_type: TYPE_INT32 dims: [1] }',
    extra,
  ].join('\n');
}

function fail(message: string): never {
  throw new Error(message);
}

function expectEqual<T>(what: string, got: T, want: T): void {
  if (JSON.stringify(got) !== JSON.stringify(want))
    fail(`${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
}

async function rejection(p: Promise<unknown>, what: string): Promise<TritonError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TritonError) return err;
    throw err;
  }
  return fail(`${what}: expected a failure, it succeeded`);
}

const GRPC = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, INTERNAL: 13 };

/** Polls (bounded) until `cond` holds: a real Triton reports no events to wait on. */
const eventually = (what: string, cond: () => Promise<boolean>, ms = 30_000) =>
  waitUntil(cond, { timeoutMs: ms, what, maxPauseMs: 200 });

const infer = (triton: TritonClient, model: string, v: number) =>
  triton.infer({
    model_name: model,
    inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1] }],
    raw_input_contents: [Buffer.from(new Int32Array([v]).buffer)],
  });

export const CHECKS: Check[] = [
  {
    name: 'ServerLive and ServerReady answer true; ServerMetadata lists model_repository(unload_dependents)',
    cites: 'server grpc_server.cc; core server.cc (strict readiness)',
    async run({ triton }) {
      expectEqual('ServerLive', await triton.serverLive(), true);
      expectEqual('ServerReady', await triton.serverReady(), true);
    },
  },
  {
    name: 'a valid model loads: ModelReady true, RepositoryIndex READY version "1", inference answers',
    cites: 'core model_repository_manager.cc LoadUnloadModel, model_lifecycle.cc',
    async run({ triton, name, writeModel }) {
      const m = name('load');
      await writeModel(m);
      await triton.load(m);
      expectEqual('ModelReady', await triton.modelReady(m), true);
      const row = (await triton.repositoryIndex()).find((e) => e.name === m);
      expectEqual('index row', row && { version: row.version, state: row.state }, {
        version: '1',
        state: 'READY',
      });
      const out = await infer(triton, m, 41);
      expectEqual('output', [...new Int32Array(new Uint8Array(out.raw_output_contents[0]).buffer)], [41]);
    },
  },
  {
    name: 'a name with no directory: INTERNAL, "failed to load \'x\', failed to poll from model repository"; nothing registered',
    cites: 'core model_repository_manager.cc LoadUnloadModel (poll stage)',
    async run({ triton, name }) {
      const m = name('absent');
      const e = await rejection(triton.load(m), 'load of a missing model');
      expectEqual('gRPC code', e.grpcCode, GRPC.INTERNAL);
      expectEqual('message', e.tritonMessage, `failed to load '${m}', failed to poll from model repository`);
      expectEqual('ModelReady', await triton.modelReady(m), false);
      const inf = await rejection(infer(triton, m, 1), 'inference on it');
      expectEqual('ModelInfer code', inf.grpcCode, GRPC.NOT_FOUND);
      expectEqual('ModelInfer message', inf.tritonMessage, `Request for unknown model: '${m}' is not found`);
    },
  },
  {
    name: 'a config whose name differs from its directory fails the poll stage (INTERNAL, the same text)',
    cites: 'core model_repository_manager.cc InitializeModelInfo',
    async run({ triton, name, writeModel }) {
      const m = name('misnamed');
      await writeModel(m, '', `${m}_other`);
      const e = await rejection(triton.load(m), 'load of a misnamed model');
      expectEqual('gRPC code', e.grpcCode, GRPC.INTERNAL);
      expectEqual('message', e.tritonMessage, `failed to load '${m}', failed to poll from model repository`);
    },
  },
  {
    name: 'an unload returns before it finishes; the index then says UNAVAILABLE "unloaded" and keeps the directory',
    cites: 'core model_lifecycle.cc AsyncUnload, ModelDeleter; model_repository_manager.cc RepositoryIndex',
    async run({ triton, name, writeModel }) {
      const m = name('unload');
      await writeModel(m);
      await triton.load(m);
      await triton.unload(m);
      await eventually('the unload finishes', async () => {
        const row = (await triton.repositoryIndex()).find((e) => e.name === m);
        return row?.state === 'UNAVAILABLE' && row.reason === 'unloaded';
      });
      expectEqual('ModelReady', await triton.modelReady(m), false);
      const e = await rejection(triton.modelStatistics(m), 'statistics of an unloaded model');
      expectEqual('ModelStatistics code', e.grpcCode, GRPC.INVALID_ARGUMENT);
      expectEqual('ModelStatistics message', e.tritonMessage, `requested model '${m}' is not available`);
      const inf = await rejection(infer(triton, m, 1), 'inference on an unloaded model');
      expectEqual('ModelInfer code', inf.grpcCode, GRPC.NOT_FOUND);
      expectEqual(
        'ModelInfer message',
        inf.tritonMessage,
        `Request for unknown model: '${m}' has no available versions`,
      );
    },
  },
  {
    name: 'a config override (load parameter "config", JSON) replaces the file: ModelConfig shows it',
    cites:
      'server grpc_server.cc RepositoryModelLoad; core model_repository_manager.cc (override stamps the config time)',
    async run({ triton, name, writeModel }) {
      const m = name('override');
      await writeModel(m);
      await triton.load(m);
      const cfg = await triton.modelConfig(m);
      await triton.load(m, { config: { ...cfg, parameters: { conformance: { string_value: 'yes' } } } });
      const after = await triton.modelConfig(m);
      expectEqual(
        'parameter',
        (after.parameters as Record<string, { string_value?: string }>)?.conformance?.string_value,
        'yes',
      );
    },
  },
  {
    name: 'loading an unchanged loaded model changes nothing: statistics carry on',
    cites: 'core model_repository_manager.cc ("the (re-)load is not necessary because there is no change")',
    async run({ triton, name, writeModel }) {
      const m = name('noop');
      await writeModel(m);
      await triton.load(m);
      await infer(triton, m, 1);
      await triton.load(m);
      const [stats] = await triton.modelStatistics(m);
      expectEqual('inference_count after the no-op load', stats?.inference_count, 1);
    },
  },
  {
    name: 'an instance_group change alone is an update in place: the model stays READY, statistics carry on',
    cites:
      'core model_lifecycle.cc 486-508 (ConfigChangeRequiresReload ignores instance_group), backend_model.cc UpdateInstanceGroup',
    async run({ triton, name, writeModel }) {
      const m = name('update');
      const dir = await writeModel(m, 'instance_group [{ kind: KIND_CPU, count: 1 }]');
      await triton.load(m);
      await infer(triton, m, 1);
      const file = path.join(dir, 'config.pbtxt');
      await fs.writeFile(file, identityConfig(m, 'instance_group [{ kind: KIND_CPU, count: 2 }]'));
      await triton.load(m);
      expectEqual('ModelReady', await triton.modelReady(m), true);
      const [stats] = await triton.modelStatistics(m);
      expectEqual('inference_count after the update', stats?.inference_count, 1);
      const groups = (await triton.modelConfig(m)).instance_group as { count?: number }[];
      expectEqual(
        'instance count',
        groups?.map((g) => Number(g.count)),
        [2],
      );
    },
  },
  {
    name: 'a model file newer than at the last load is a full reload: statistics start again',
    cites: 'core model_repository_manager.cc IsModified (stat, max(mtime, ctime), strictly newer)',
    async run({ triton, name, writeModel }) {
      const m = name('reload');
      const dir = await writeModel(m);
      await triton.load(m);
      await infer(triton, m, 1);
      const later = new Date(Date.now() + 60_000);
      await fs.utimes(path.join(dir, '1', 'model.py'), later, later);
      await triton.load(m);
      const [stats] = await triton.modelStatistics(m);
      expectEqual('inference_count after the reload', stats?.inference_count, 0);
    },
  },
  {
    name: 'a directory never loaded is listed by RepositoryIndex with no version and no state',
    cites: 'core model_repository_manager.cc RepositoryIndex (every subdirectory)',
    async run({ triton, name, writeModel }) {
      const m = name('listed');
      await writeModel(m);
      const row = (await triton.repositoryIndex()).find((e) => e.name === m);
      expectEqual('index row', row && { version: row.version, state: row.state }, { version: '', state: '' });
    },
  },
  {
    name: 'one instance_group per GPU, as the agent places models, is accepted and reported back',
    cites: 'core model_config_utils.cc NormalizeInstanceGroup, ValidateInstanceGroup',
    async run({ triton, name, writeModel, gpus, skip }) {
      const n = await gpus();
      if (n === 0) skip('no GPUs in the metrics');
      const m = name('placed');
      const dir = await writeModel(m);
      const placed = placeOnGpus(parsePbtxt(identityConfig(m)), n > 1 ? [0, 1] : [0]);
      await fs.writeFile(path.join(dir, 'config.pbtxt'), writePbtxt(placed));
      await triton.load(m);
      const groups = (await triton.modelConfig(m)).instance_group as { kind?: string; gpus?: number[] }[];
      expectEqual(
        'groups',
        groups.map((g) => [g.kind, (g.gpus ?? []).map(Number)]),
        (n > 1 ? [0, 1] : [0]).map((d) => ['KIND_GPU', [d]]),
      );
    },
  },
  {
    name: 'metrics: one nv_gpu_memory_* series per GPU labelled gpu_uuid (whole MiB), and nv_inference_count per model',
    cites: 'core metrics.cc (DCGM FB_USED/FB_TOTAL in MiB, gpu_uuid label)',
    async run({ triton, name, writeModel, target, skip }) {
      if (!target.metrics) skip('no --metrics');
      const m = name('metrics');
      await writeModel(m);
      await triton.load(m);
      await infer(triton, m, 1);
      await eventually(
        'the inference shows in the metrics',
        async () => {
          const page = parseTritonMetrics(await (await fetch(target.metrics as string)).text());
          return page.models.some((x) => x.model === m && x.inferenceCount === 1);
        },
        10_000,
      );
      const page = parseTritonMetrics(await (await fetch(target.metrics as string)).text());
      for (const g of page.gpus) {
        if (!/^GPU-/.test(g.uuid)) fail(`gpu_uuid '${g.uuid}' is not a GPU UUID`);
        if (g.memoryTotalBytes % (1024 * 1024) !== 0 || g.memoryUsedBytes % (1024 * 1024) !== 0)
          fail(`GPU ${g.uuid}: figures not in whole MiB (${g.memoryUsedBytes} of ${g.memoryTotalBytes})`);
      }
    },
  },
];

/** Runs the checks (all, or those whose name contains `only`) against `target`. */
export async function runConformance(target: ConformanceTarget, only?: string): Promise<CheckResult[]> {
  const triton = new TritonClient({ address: target.grpc, retry: { attempts: 1 } });
  const results: CheckResult[] = [];
  try {
    for (const check of CHECKS) {
      if (only && !check.name.includes(only)) continue;
      const created: string[] = [];
      const ctx: Context = {
        triton,
        target,
        name: (tag) => {
          const n = `conformance_${tag}_${Math.random().toString(36).slice(2, 8)}`;
          created.push(n);
          return n;
        },
        writeModel: async (model, extra = '', configName = model) => {
          const dir = path.join(target.repository, model);
          await fs.mkdir(path.join(dir, '1'), { recursive: true });
          await fs.writeFile(path.join(dir, 'config.pbtxt'), identityConfig(configName, extra));
          await fs.writeFile(path.join(dir, '1', 'model.py'), MODEL_PY);
          return dir;
        },
        gpus: async () => {
          if (!target.metrics) return 0;
          const page = await fetch(target.metrics).then(
            (r) => r.text(),
            () => '',
          );
          return parseTritonMetrics(page).gpus.length;
        },
        skip: (why) => {
          throw new Skip(why);
        },
      };
      const t0 = Date.now();
      try {
        await check.run(ctx);
        results.push({ name: check.name, outcome: 'passed', ms: Date.now() - t0 });
      } catch (err) {
        const skipped = err instanceof Skip;
        results.push({
          name: check.name,
          outcome: skipped ? 'skipped' : 'failed',
          detail: `${(err as Error).message}${skipped ? '' : ` (expected per ${check.cites})`}`,
          ms: Date.now() - t0,
        });
      } finally {
        for (const m of created) {
          await triton.unload(m).catch(() => undefined);
          await fs.rm(path.join(target.repository, m), { recursive: true, force: true });
        }
      }
    }
  } finally {
    triton.close();
  }
  return results;
}
