import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TritonClient, tritonServiceDefinition } from '../../src/triton/client';
import { TritonError } from '../../src/triton/triton-error';
import { parseTritonMetrics } from '../../src/triton/metrics';
import {
  CONTENTS_FIELD,
  valuesToRaw,
  rawToValues,
  serializeBytesElements,
  type Datatype,
} from '../../src/inference/datatypes';
import { TritonEmulator, texts } from '../support/triton-emulator';
import { ALL_DATATYPES } from '../support/datatypes';
import { identityConfig, resnetPtConfig, resnetTrtConfig, tempDir, writeModel } from '../support/model-repo';
import { nextEvent, waitUntil } from '../support/wait';

const MiB = 1024 * 1024;

/** Calls an RPC with a hand-built request, for arguments the typed client never sends. */
function rawCall(
  address: string,
  rpc: string,
  request: object,
): Promise<grpc.ServiceError | Record<string, unknown>> {
  const Ctor = grpc.makeGenericClientConstructor(tritonServiceDefinition(), 'GRPCInferenceService');
  const c = new Ctor(address, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (req: object, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void
  >;
  return new Promise((resolve) =>
    c[rpc].call(c, request, (err, res) => {
      (c as unknown as grpc.Client).close();
      resolve(err ?? res);
    }),
  );
}

async function rejection(p: Promise<unknown>): Promise<TritonError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof TritonError)) throw new Error(`expected a TritonError, got ${String(e)}`);
  return e;
}

describe('Triton emulator: explicit model control', () => {
  let repo: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  let client: TritonClient;

  beforeEach(async () => {
    repo = await tempDir();
    // Exact figures: no CUDA context on the emulated GPU, no failed DCGM reads.
    emulator = await TritonEmulator.start({
      modelRepository: repo.dir,
      gpuMemoryBytes: 100 * MiB,
      gpuBaselineBytes: 0,
      failedReadEvery: 0,
    });
    client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
  });

  afterEach(async () => {
    client.close();
    await emulator.stop();
    await repo.cleanup();
  });

  test('config name must be absent or equal the directory', async () => {
    await writeModel(repo.dir, 'a', {
      config: resnetPtConfig({ name: 'b' }),
      versions: { '1': { 'model.pt': 10 } },
    });
    await writeModel(repo.dir, 'c', {
      config: resnetPtConfig({ name: null }),
      versions: { '1': { 'model.pt': 10 } },
    });
    const e = await rejection(client.load('a'));
    expect([e.grpcCode, e.tritonMessage]).toEqual([grpc.status.INTERNAL, texts.pollFailed('a')]);
    expect(emulator.logLines).toContain(texts.pollNameMismatch('a', 'b'));
    await client.load('c');
    expect((await client.modelConfig('c')).name).toBe('c');
  });

  test('unparsable or missing config.pbtxt fails at the poll stage', async () => {
    await writeModel(repo.dir, 'bad', {
      config: 'name: "bad"\nmax_batch_size: $',
      versions: { '1': { 'model.pt': 1 } },
    });
    await writeModel(repo.dir, 'noconf', { versions: { '1': { 'model.pt': 1 } } });
    expect((await rejection(client.load('bad'))).tritonMessage).toBe(texts.pollFailed('bad'));
    expect(
      emulator.logLines.some((l) =>
        l.includes("Poll failed for model directory 'bad': failed to read text proto"),
      ),
    ).toBe(true);
    expect((await rejection(client.load('noconf'))).tritonMessage).toBe(texts.pollFailed('noconf'));
    // Poll-stage failures do not touch readiness.
    expect(await client.serverReady()).toBe(true);
  });

  test('numeric version directories and the version policy', async () => {
    await writeModel(repo.dir, 'v', {
      config: resnetPtConfig({ name: 'v' }),
      versions: {
        '1': { 'model.pt': 1 },
        '3': { 'model.pt': 1 },
        '007': { 'model.pt': 1 },
        latest: { 'model.pt': 1 },
      },
    });
    await client.load('v');
    expect(await client.repositoryIndex()).toEqual([{ name: 'v', version: '3', state: 'READY', reason: '' }]);
    expect(emulator.logLines).toContain(
      "ignore version directory '007' which contains leading zeros in its directory name",
    );
    expect(emulator.logLines).toContain(
      "ignore version directory 'latest' which fails to convert to integral number",
    );
    await writeModel(repo.dir, 'all', {
      config: resnetPtConfig({ name: 'all' }) + '\nversion_policy { all { } }',
      versions: { '1': { 'model.pt': 1 }, '2': { 'model.pt': 1 } },
    });
    await client.load('all');
    expect((await client.modelMetadata('all')).versions.sort()).toEqual(['1', '2']);
  });

  test('no version directory: Triton text, absent from the index, server not ready', async () => {
    await writeModel(repo.dir, 'empty', { config: resnetPtConfig({ name: 'empty' }), versions: {} });
    const e = await rejection(client.load('empty'));
    expect([e.grpcCode, e.tritonMessage]).toEqual([grpc.status.INVALID_ARGUMENT, texts.noVersions('empty')]);
    expect(await client.repositoryIndex()).toEqual([]);
    expect(await client.serverReady()).toBe(false);
    expect((await rejection(client.infer({ model_name: 'empty', inputs: [] }))).tritonMessage).toBe(
      "Request for unknown model: 'empty' has no available versions",
    );
  });

  test.each([
    ['pytorch_libtorch', 'model.pt'],
    ['tensorrt_plan', 'model.plan'],
    ['onnxruntime_onnx', 'model.onnx'],
    ['python', 'model.py'],
    ['tensorflow_savedmodel', 'model.savedmodel/'],
  ])('%s needs %s', async (platform, file) => {
    const config = `platform: "${platform}"\nmax_batch_size: 0\ninput { name: "I" data_type: TYPE_FP32 dims: 1 }\noutput { name: "O" data_type: TYPE_FP32 dims: 1 }`;
    await writeModel(repo.dir, 'ok', { config, versions: { '1': { [file]: 100 } } });
    await writeModel(repo.dir, 'missing', { config, versions: { '1': { 'other.bin': 100 } } });
    await client.load('ok');
    expect(await client.modelReady('ok')).toBe(true);
    const e = await rejection(client.load('missing'));
    expect(e.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
    const dir = `${repo.dir}/missing`;
    const name = file.replace(/\/$/, '');
    expect(e.tritonMessage).toBe(
      platform === 'tensorrt_plan'
        ? `load failed for model 'missing': version 1 is at UNAVAILABLE state: Internal: unable to load plan file to auto complete config: ${dir}/1/${name};\n`
        : `load failed for model 'missing': version 1 is at UNAVAILABLE state: Unavailable: unable to find '${dir}/1/${name}' for model instance 'missing';\n`,
    );
    expect(await client.repositoryIndex()).toContainEqual({
      name: 'missing',
      version: '1',
      state: 'UNAVAILABLE',
      reason: e.tritonMessage.slice(e.tritonMessage.indexOf('state: ') + 7, -2),
    });
    expect(await client.serverReady()).toBe(false);
  });

  test('default_model_filename replaces the platform default', async () => {
    await writeModel(repo.dir, 'm', {
      config: resnetPtConfig({ name: 'm' }) + '\ndefault_model_filename: "weights.ts"',
      versions: { '1': { 'weights.ts': 10 } },
    });
    await client.load('m');
    expect(await client.modelReady('m')).toBe(true);
  });

  test('loading an unchanged loaded model changes nothing; a newer file reloads it; unloading an unloaded model succeeds', async () => {
    const dir = await writeModel(repo.dir, 'r', {
      config: resnetPtConfig({ name: 'r', loadMs: 200 }),
      versions: { '1': { 'model.pt': MiB } },
    });
    await client.load('r');
    // model_repository_manager.cc: "the (re-)load is not necessary because there is no change".
    let t0 = Date.now();
    await client.load('r');
    expect(Date.now() - t0).toBeLessThan(200);
    expect(emulator.counters('r').loads).toBe(2);
    expect(await client.modelReady('r')).toBe(true);
    expect(emulator.gpu.peakBytes()).toBe(MiB);
    // A file newer than at the last load (stat: max of mtime and ctime) is a change: a full reload, the
    // old version serving until the new one is in.
    const later = new Date(Date.now() + 60_000);
    await fs.utimes(path.join(dir, '1', 'model.pt'), later, later);
    t0 = Date.now();
    await client.load('r');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(195);
    expect(emulator.gpu.peakBytes()).toBe(2 * MiB);
    expect(emulator.gpu.usedBytes()).toBe(MiB);
    await client.unload('never-loaded');
    await client.unload('r');
    await client.unload('r');
    await emulator.idle();
    expect(emulator.counters('r').unloads).toBe(1);
  });

  test('unload completes asynchronously: UNLOADING, then UNAVAILABLE/unloaded', async () => {
    emulator.setLatency({ unloadMs: 100 });
    await writeModel(repo.dir, 'u', {
      config: resnetPtConfig({ name: 'u' }),
      versions: { '1': { 'model.pt': MiB } },
    });
    await client.load('u');
    await client.unload('u');
    expect(await client.repositoryIndex()).toEqual([
      { name: 'u', version: '1', state: 'UNLOADING', reason: '' },
    ]);
    expect(emulator.gpu.usedBytes()).toBe(MiB);
    await emulator.idle();
    expect(await client.repositoryIndex()).toEqual([
      { name: 'u', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' },
    ]);
    expect(emulator.gpu.usedBytes()).toBe(0);
    expect(await client.serverReady()).toBe(true);
  });

  test('an unload waits for in-flight inferences', async () => {
    await writeModel(repo.dir, 'slow', {
      config: identityConfig(
        'slow',
        [{ type: 'TYPE_INT32', dims: [1] }],
        0,
        'parameters { key: "emulator_infer_ms" value { string_value: "200" } }',
      ),
      versions: { '1': { 'model.py': 1 } },
    });
    await client.load('slow');
    const running = nextEvent(emulator.events, 'infer-started', {
      filter: (m) => m === 'slow',
      timeoutMs: 5_000,
      what: 'the inference on slow running',
    });
    const inflight = client.infer({
      model_name: 'slow',
      inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1] }],
      raw_input_contents: [valuesToRaw('INT32', [42])],
    });
    await running;
    await client.unload('slow');
    expect((await client.repositoryIndex())[0].state).toBe('UNLOADING');
    const res = await inflight;
    expect(rawToValues('INT32', res.raw_output_contents[0])).toEqual([42]);
    await emulator.idle();
    expect((await client.repositoryIndex())[0].state).toBe('UNAVAILABLE');
  });

  test('ensembles load their steps, infer through them, and unload_dependents cleans up', async () => {
    await writeModel(repo.dir, 'double', {
      config: identityConfig('double', [{ type: 'TYPE_FP32', dims: [4] }]),
      versions: { '1': { 'model.py': 1 } },
    });
    await writeModel(repo.dir, 'resnet', {
      config: resnetTrtConfig(),
      versions: { '1': { 'model.plan': MiB } },
    });
    await writeModel(repo.dir, 'ens', {
      config: `name: "ens"
platform: "ensemble"
max_batch_size: 0
input { name: "X" data_type: TYPE_FP32 dims: [4] }
output { name: "Y" data_type: TYPE_FP32 dims: [4] }
ensemble_scheduling { step [ { model_name: "double" model_version: -1 input_map { key: "INPUT0" value: "X" } output_map { key: "OUTPUT0" value: "Y" } } ] }`,
      versions: { '1': {} },
    });
    await client.load('resnet');
    await client.load('ens');
    expect(emulator.loadedModels()).toEqual(['double', 'ens', 'resnet']);
    const res = await client.infer({
      model_name: 'ens',
      inputs: [{ name: 'X', datatype: 'FP32', shape: [4] }],
      raw_input_contents: [valuesToRaw('FP32', [1, 2, 3, 4])],
    });
    expect(res.outputs.map((o) => o.name)).toEqual(['Y']);
    expect(rawToValues('FP32', res.raw_output_contents[0])).toEqual([1, 2, 3, 4]);
    expect(emulator.counters('double').infers).toBe(1);
    await client.unload('ens', { unloadDependents: false });
    await emulator.idle();
    expect(emulator.loadedModels()).toEqual(['double', 'resnet']);
    await client.load('ens');
    await client.unload('ens', { unloadDependents: true });
    await emulator.idle();
    // 'double' was already loaded when 'ens' loaded the second time, so only the ensemble goes.
    expect(emulator.loadedModels()).toEqual(['double', 'resnet']);
    await client.unload('double');
    await emulator.idle();
    await client.load('ens');
    await client.unload('ens', { unloadDependents: true });
    await emulator.idle();
    expect(emulator.loadedModels()).toEqual(['resnet']);
  });

  test('an ensemble whose step cannot load fails', async () => {
    await writeModel(repo.dir, 'ens', {
      config: `platform: "ensemble"
input { name: "X" data_type: TYPE_FP32 dims: [4] }
output { name: "Y" data_type: TYPE_FP32 dims: [4] }
ensemble_scheduling { step { model_name: "ghost" model_version: -1 input_map { key: "I" value: "X" } output_map { key: "O" value: "Y" } } }`,
      versions: { '1': {} },
    });
    const e = await rejection(client.load('ens'));
    expect(e.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.tritonMessage).toContain("ensemble 'ens' depends on 'ghost'");
  });

  test('repository_name and load parameters are checked like Triton', async () => {
    const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: texts.repositoryNameUnsupported() };
    for (const rpc of ['RepositoryIndex', 'RepositoryModelLoad', 'RepositoryModelUnload']) {
      expect(
        await rawCall(emulator.grpcAddress, rpc, { repository_name: 'r', model_name: 'm' }),
      ).toMatchObject(unimplemented);
    }
    expect(
      await rawCall(emulator.grpcAddress, 'RepositoryModelLoad', {
        model_name: 'm',
        parameters: { colour: { string_param: 'red' } },
      }),
    ).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "unrecognized load parameter 'colour'." });
    expect(
      await rawCall(emulator.grpcAddress, 'RepositoryModelLoad', {
        model_name: 'm',
        parameters: { config: { bool_param: true } },
      }),
    ).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: texts.configNotString() });
    expect(
      await rawCall(emulator.grpcAddress, 'RepositoryModelUnload', {
        model_name: 'm',
        parameters: { unload_dependents: { string_param: 'yes' } },
      }),
    ).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: texts.unloadDependentsNotBool() });
    expect(await rawCall(emulator.grpcAddress, 'RepositoryModelLoad', { model_name: '../x' })).toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: texts.traversalName('../x'),
    });
  });

  test('config override and file overrides', async () => {
    await writeModel(repo.dir, 'o', {
      config: resnetPtConfig({ name: 'o' }),
      versions: { '1': { 'model.pt': 1 } },
    });
    await client.load('o', {
      config: {
        max_batch_size: 4,
        platform: 'pytorch_libtorch',
        input: [{ name: 'I', data_type: 'TYPE_FP32', dims: ['2'] }],
        output: [{ name: 'O', data_type: 'TYPE_FP32', dims: ['2'] }],
      },
    });
    expect(await client.modelMetadata('o')).toMatchObject({ inputs: [{ name: 'I', shape: [-1, 2] }] });
    await client.load('virtual', {
      config: {
        platform: 'onnxruntime_onnx',
        input: [{ name: 'I', data_type: 'TYPE_INT8', dims: ['1'] }],
        output: [{ name: 'O', data_type: 'TYPE_INT8', dims: ['1'] }],
      },
      files: { '1/model.onnx': Buffer.from('onnx bytes') },
    });
    expect(await client.modelReady('virtual')).toBe(true);
    expect(
      (await rejection(client.load('nocfg', { files: { '1/model.onnx': Buffer.from('x') } }))).tritonMessage,
    ).toBe(texts.pollFailed('nocfg'));
    expect((await rejection(client.load('o', { config: { no_such_field: 1 } }))).tritonMessage).toBe(
      texts.pollFailed('o'),
    );
    expect(emulator.logLines.some((l) => l.includes('Invalid config override'))).toBe(true);
  });

  test('GPU memory: footprints, out-of-memory texts, late release, metrics interval', async () => {
    await emulator.stop();
    emulator = await TritonEmulator.start({
      modelRepository: repo.dir,
      gpuMemoryBytes: 10 * MiB,
      gpuBaselineBytes: MiB,
      memoryReleaseLagMs: 150,
      metricsIntervalMs: 60_000,
      footprintFactor: 2,
    });
    client.close();
    client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
    await writeModel(repo.dir, 'small', {
      config: resnetPtConfig({ name: 'small' }),
      versions: { '1': { 'model.pt': 2 * MiB } },
    });
    await writeModel(repo.dir, 'declared', {
      config: resnetPtConfig({ name: 'declared', gpuBytes: 3 * MiB }),
      versions: { '1': { 'model.pt': 10 } },
    });
    await writeModel(repo.dir, 'trt', {
      config: resnetTrtConfig('trt'),
      versions: { '1': { 'model.plan': 3 * MiB } },
    });
    await client.load('small'); // 2 MiB file × 2
    await client.load('declared'); // declared 3 MiB
    expect(emulator.gpu.usedBytes()).toBe(8 * MiB);
    // Metrics are a snapshot taken on the interval, as Triton's are.
    let m = parseTritonMetrics(await (await fetch(emulator.metricsUrl)).text());
    expect(m.gpus[0].memoryUsedBytes).toBe(MiB);
    emulator.refreshMetrics();
    m = parseTritonMetrics(await (await fetch(emulator.metricsUrl)).text());
    expect(m.gpus[0]).toMatchObject({ memoryUsedBytes: 8 * MiB, memoryTotalBytes: 10 * MiB });
    // tensorrt_backend's auto-complete deserialises the plan first and masks any failure, out of memory
    // included, with a text naming the plan file; the reason is only in the server's log.
    const trt = await rejection(client.load('trt'));
    const masked = texts.loadFailed(
      'trt',
      texts.versionUnavailable(1, texts.tensorrtPlanNotLoaded(path.join(repo.dir, 'trt'), 1, 'model.plan')),
    );
    expect(trt.tritonMessage).toBe(masked);
    expect(trt.kind).toBe('InvalidArgument');
    expect(emulator.logLines.some((l) => l.includes('Cuda Runtime (out of memory)'))).toBe(true);
    const unloading = Date.now();
    await client.unload('small');
    await emulator.idle();
    // Freed memory shows up only after the lag (150 ms from the release, which came after `unloading`).
    expect(emulator.gpu.usedBytes()).toBe(8 * MiB);
    expect((await rejection(client.load('trt'))).tritonMessage).toBe(masked);
    await waitUntil(() => emulator.gpu.usedBytes() === 4 * MiB, {
      timeoutMs: 200,
      what: "small's memory released after the lag",
    });
    expect(Date.now() - unloading).toBeGreaterThanOrEqual(150);
    expect(emulator.gpu.usedBytes()).toBe(4 * MiB);
    await client.load('trt');
    expect(emulator.gpu.usedBytes()).toBe(10 * MiB);
    expect(emulator.gpu.peakBytes()).toBe(10 * MiB);
  });

  test('with auto-complete off, TensorRT says it ran out of memory creating the engine', async () => {
    await emulator.stop();
    emulator = await TritonEmulator.start({
      modelRepository: repo.dir,
      gpuMemoryBytes: 4 * MiB,
      gpuBaselineBytes: 0,
      autoCompleteConfig: false,
    });
    client.close();
    client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
    await writeModel(repo.dir, 'trt', {
      config: resnetTrtConfig('trt'),
      versions: { '1': { 'model.plan': 6 * MiB } },
    });
    const e = await rejection(client.load('trt'));
    expect(e.tritonMessage).toBe(
      texts.loadFailed('trt', texts.versionUnavailable(1, texts.tensorrtEngineOutOfMemory())),
    );
    expect(e.kind).toBe('OutOfMemory');
  });

  test('a PyTorch load that runs out of memory on its first instance leaves its blocks in PyTorch’s cache', async () => {
    await writeModel(repo.dir, 'big', {
      config: resnetPtConfig({ name: 'big', gpuBytes: 120 * MiB }),
      versions: { '1': { 'model.pt': 10 } },
    });
    await writeModel(repo.dir, 'small', {
      config: resnetPtConfig({ name: 'small', gpuBytes: 10 * MiB }),
      versions: { '1': { 'model.pt': 10 } },
    });
    await writeModel(repo.dir, 'onnx', {
      config: [
        'name: "onnx"',
        'platform: "onnxruntime_onnx"',
        'max_batch_size: 0',
        'input { name: "x" data_type: TYPE_FP32 dims: [4] }',
        'output { name: "y" data_type: TYPE_FP32 dims: [4] }',
        `parameters { key: "emulator_gpu_bytes" value { string_value: "${10 * MiB}" } }`,
      ].join('\n'),
      versions: { '1': { 'model.onnx': 10 } },
    });
    expect((await rejection(client.load('big'))).kind).toBe('OutOfMemory');
    // What it allocated before failing stays reserved: no destructor ran, so nothing emptied the cache.
    expect(emulator.gpu.usedBytes()).toBe(100 * MiB);
    expect(emulator.gpu.torchCache).toBe(100 * MiB);
    // Another backend finds the GPU full...
    expect((await rejection(client.load('onnx'))).kind).toBe('OutOfMemory');
    // ... PyTorch reuses its own cache ...
    await client.load('small');
    expect(emulator.gpu.usedBytes()).toBe(100 * MiB);
    // ... and the next PyTorch unload empties it (~ModelInstanceState runs emptyCache, process-wide).
    await client.unload('small');
    await emulator.idle();
    expect(emulator.gpu.usedBytes()).toBe(0);
    await client.load('onnx');
  });

  test('a PyTorch model grows at its first inference of a larger batch; growth that does not fit fails the request', async () => {
    await emulator.stop();
    emulator = await TritonEmulator.start({
      modelRepository: repo.dir,
      gpuMemoryBytes: 10 * MiB,
      gpuBaselineBytes: 0,
    });
    client.close();
    client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
    await writeModel(repo.dir, 'g', {
      config:
        identityConfig('g', [{ type: 'TYPE_FP32', dims: [2] }], 8).replace(
          'backend: "python"',
          'backend: "pytorch"',
        ) +
        `\nparameters { key: "emulator_gpu_bytes" value { string_value: "${4 * MiB}" } }` +
        `\nparameters { key: "emulator_growth_bytes" value { string_value: "${8 * MiB}" } }`,
      versions: { '1': { 'model.pt': 10 } },
    });
    await client.load('g');
    expect(emulator.gpu.usedBytes()).toBe(4 * MiB);
    const infer = (batch: number) =>
      client.infer({
        model_name: 'g',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [batch, 2] }],
        raw_input_contents: [Buffer.alloc(batch * 8)],
      });
    await infer(2); // a quarter of the largest batch: a quarter of the growth
    expect(emulator.gpu.usedBytes()).toBe(6 * MiB);
    await infer(2);
    expect(emulator.gpu.usedBytes()).toBe(6 * MiB);
    const e = await rejection(infer(8));
    expect(e.grpcCode).toBe(grpc.status.INTERNAL);
    expect(e.tritonMessage).toMatch(
      /^PyTorch execute failure: CUDA out of memory\. Tried to allocate 6\.00 MiB/,
    );
    expect(e.kind).toBe('OutOfMemory');
    expect(emulator.gpu.usedBytes()).toBe(6 * MiB);
  });

  test('KIND_CPU instances take no GPU memory; instance count multiplies it', async () => {
    await writeModel(repo.dir, 'cpu', {
      config: resnetPtConfig({ name: 'cpu' }) + '\ninstance_group { kind: KIND_CPU count: 2 }',
      versions: { '1': { 'model.pt': 2 * MiB } },
    });
    await writeModel(repo.dir, 'gpu2', {
      config: resnetPtConfig({ name: 'gpu2' }) + '\ninstance_group { kind: KIND_GPU count: 2 }',
      versions: { '1': { 'model.pt': 2 * MiB } },
    });
    await client.load('cpu');
    expect(emulator.gpu.usedBytes()).toBe(0);
    await client.load('gpu2');
    expect(emulator.gpu.usedBytes()).toBe(4 * MiB);
  });

  test('load latency: LOADING in the index, not ready, strict readiness false meanwhile', async () => {
    await writeModel(repo.dir, 'l', {
      config: resnetPtConfig({ name: 'l', loadMs: 300 }),
      versions: { '1': { 'model.pt': 1 } },
    });
    const started = nextEvent(emulator.events, 'load-started', {
      filter: (m) => m === 'l',
      timeoutMs: 5_000,
      what: 'the load of l started',
    });
    const loading = client.load('l');
    await started;
    expect(await client.repositoryIndex()).toEqual([
      { name: 'l', version: '1', state: 'LOADING', reason: '' },
    ]);
    expect(await client.modelReady('l')).toBe(false);
    expect(await client.serverReady()).toBe(false);
    await loading;
    expect(await client.modelReady('l')).toBe(true);
    expect(await client.serverReady()).toBe(true);
  });

  test('fault injection: failed load, hung load, failed inference', async () => {
    await writeModel(repo.dir, 'f', {
      config: resnetPtConfig({ name: 'f' }),
      versions: { '1': { 'model.pt': 1 } },
    });
    emulator.failNextLoad('f', 'Internal: boom');
    expect((await rejection(client.load('f'))).tritonMessage).toBe(
      "load failed for model 'f': version 1 is at UNAVAILABLE state: Internal: boom;\n",
    );
    const release = emulator.hangNextLoad('f');
    const held = nextEvent(emulator.events, 'load-started', {
      filter: (m) => m === 'f',
      timeoutMs: 5_000,
      what: 'the load of f started',
    });
    let done = false;
    const hung = client.load('f').then(() => (done = true));
    await held;
    // A whole load of another model, from request to answer, goes through meanwhile; f's does not.
    await writeModel(repo.dir, 'g', {
      config: resnetPtConfig({ name: 'g' }),
      versions: { '1': { 'model.pt': 1 } },
    });
    await client.load('g');
    expect(done).toBe(false);
    expect(await client.modelReady('f')).toBe(false);
    release();
    await hung;
    expect(await client.modelReady('f')).toBe(true);
    emulator.failNextInfer('f', grpc.status.INTERNAL, 'CUDA out of memory. Tried to allocate 2.00 GiB');
    const n = 3 * 224 * 224;
    const e = await rejection(
      client.infer({
        model_name: 'f',
        inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, 224, 224] }],
        raw_input_contents: [Buffer.alloc(n * 4)],
      }),
    );
    expect(e.kind).toBe('OutOfMemory');
    expect(emulator.counters('f')).toMatchObject({ loads: 2, loadFailures: 1, inferFailures: 1, infers: 0 });
  });

  test('crash closes the port and loses every model; restart comes back empty', async () => {
    await writeModel(repo.dir, 'c', {
      config: resnetPtConfig({ name: 'c' }),
      versions: { '1': { 'model.pt': MiB } },
    });
    await client.load('c');
    const port = Number(emulator.grpcAddress.split(':')[1]);
    await emulator.crash();
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    expect((await rejection(client.serverLive())).kind).toBe('Unavailable');
    expect(emulator.gpu.usedBytes()).toBe(0);
    await emulator.restart();
    expect(emulator.grpcAddress).toBe(`127.0.0.1:${port}`);
    const fresh = new TritonClient({
      address: emulator.grpcAddress,
      retry: { attempts: 20, maxDelayMs: 200 },
    });
    try {
      expect(await fresh.serverLive()).toBe(true);
      expect(await fresh.modelReady('c')).toBe(false);
      expect(await fresh.repositoryIndex()).toEqual([{ name: 'c', version: '', state: '', reason: '' }]);
    } finally {
      fresh.close();
    }
  });
});

describe('Triton emulator: inference checks', () => {
  let repo: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  let client: TritonClient;
  const ALL = ALL_DATATYPES;

  beforeAll(async () => {
    repo = await tempDir();
    await writeModel(repo.dir, 'all', {
      config: identityConfig(
        'all',
        ALL.map(([, t]) => ({ type: t, dims: [3] })),
        4,
      ),
      versions: { '1': { 'model.py': 1 } },
    });
    await writeModel(repo.dir, 'resnet', { config: resnetPtConfig(), versions: { '1': { 'model.pt': 1 } } });
    emulator = await TritonEmulator.start({ modelRepository: repo.dir });
    client = new TritonClient({ address: emulator.grpcAddress });
    await client.load('all');
    await client.load('resnet');
  });

  afterAll(async () => {
    client.close();
    await emulator.stop();
    await repo.cleanup();
  });

  const sample: Record<Datatype, (number | boolean | bigint | Buffer)[]> = {
    BOOL: [true, false, true, false, false, true],
    UINT8: [0, 255, 7, 1, 2, 3],
    UINT16: [0, 65535, 9, 1, 2, 3],
    UINT32: [0, 4294967295, 11, 1, 2, 3],
    UINT64: [0, 18446744073709551615n, 13, 1, 2, 3],
    INT8: [-128, 127, 0, 1, 2, 3],
    INT16: [-32768, 32767, 0, 1, 2, 3],
    INT32: [-2147483648, 2147483647, 0, 1, 2, 3],
    INT64: [-9223372036854775808n, 9223372036854775807n, 0, 1, 2, 3],
    FP16: [0.5, -2, 65504, 1, 2, 3],
    BF16: [0.5, -2, 3.0e38, 1, 2, 3],
    FP32: [0.1, -1e30, 3.5, 1, 2, 3],
    FP64: [0.1, -1e300, 3.5, 1, 2, 3],
    BYTES: ['a', '', 'héllo', 'x', 'yz', '\u0000'].map((s) => Buffer.from(s)),
  };

  test('identity over every datatype, raw contents, batch of 2', async () => {
    const res = await client.infer({
      model_name: 'all',
      inputs: ALL.map(([d], i) => ({ name: `INPUT${i}`, datatype: d, shape: [2, 3] })),
      raw_input_contents: ALL.map(([d]) => valuesToRaw(d, sample[d])),
    });
    expect(res.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual(
      ALL.map(([d], i) => [`OUTPUT${i}`, d, [2, 3]]),
    );
    ALL.forEach(([d], i) => {
      const back = rawToValues(d, res.raw_output_contents[i]);
      const expected = rawToValues(d, valuesToRaw(d, sample[d]));
      expect(back).toEqual(expected);
    });
  });

  test('typed contents are accepted and returned as raw', async () => {
    const res = await client
      .infer({
        model_name: 'all',
        inputs: ALL.map(([d], i) => {
          const field = CONTENTS_FIELD[d];
          const values =
            d === 'BYTES'
              ? [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]
              : d === 'BOOL'
                ? [true, false, true]
                : [1, 2, 3];
          return {
            name: `INPUT${i}`,
            datatype: d,
            shape: [1, 3],
            contents: field ? { [field]: values } : undefined,
          };
        }).filter((x) => x.contents !== undefined),
        outputs: [{ name: 'OUTPUT11' }, { name: 'OUTPUT13' }],
      })
      .catch((e: unknown) => e);
    // FP16/BF16 can only travel raw, so that request misses two inputs: Triton says which.
    expect((res as TritonError).tritonMessage).toBe(
      "[request id: <id_unknown>] expected 14 inputs but got 12 inputs for model 'all'. Got input(s) ['INPUT0','INPUT1','INPUT2','INPUT3','INPUT4','INPUT5','INPUT6','INPUT7','INPUT8','INPUT10','INPUT11','INPUT12'], but missing required input(s) ['INPUT9','INPUT13']. Please provide all required input(s).",
    );
    const ok = await client.infer({
      model_name: 'resnet',
      inputs: [
        {
          name: 'INPUT__0',
          datatype: 'FP32',
          shape: [1, 3, 224, 224],
          contents: { fp32_contents: new Array(3 * 224 * 224).fill(0.25) },
        },
      ],
    });
    expect(rawToValues('FP32', ok.raw_output_contents[0]).slice(0, 3)).toEqual([0.5, 0.5, 0.5]);
  });

  const one = (over: Record<string, unknown> = {}) => ({
    model_name: 'resnet',
    inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, 224, 224] }],
    raw_input_contents: [Buffer.alloc(3 * 224 * 224 * 4)],
    ...over,
  });

  test.each([
    [
      'unknown input',
      one({ inputs: [{ name: 'X', datatype: 'FP32', shape: [1, 3, 224, 224] }] }),
      "unexpected inference input 'X' for model 'resnet'",
    ],
    [
      'unknown output',
      one({ outputs: [{ name: 'NOPE' }] }),
      "unexpected inference output 'NOPE' for model 'resnet'",
    ],
    [
      'wrong datatype',
      one({ inputs: [{ name: 'INPUT__0', datatype: 'FP16', shape: [1, 3, 224, 224] }] }),
      "[request id: <id_unknown>] inference input 'INPUT__0' data-type is 'FP16', but model 'resnet' expects 'FP32'",
    ],
    [
      'wrong shape',
      one({ id: 'r1', inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, 384, 224] }] }),
      "[request id: r1] unexpected shape for input 'INPUT__0' for model 'resnet'. Expected [-1,3,224,224], got [1,3,384,224]. NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size.",
    ],
    [
      'batch too large',
      one({ inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [129, 3, 224, 224] }] }),
      "[request id: <id_unknown>] inference request batch-size must be <= 128 for 'resnet'",
    ],
    [
      'no batch dimension',
      one({ inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [] }] }),
      "[request id: <id_unknown>] input 'INPUT__0' has no shape but model requires batch dimension for 'resnet'",
    ],
    [
      'byte size',
      one({ raw_input_contents: [Buffer.alloc(12)] }),
      "[request id: <id_unknown>] input byte size mismatch for input 'INPUT__0' for model 'resnet'. Expected 602112, got 12",
    ],
    [
      'no data',
      one({ raw_input_contents: [] }),
      "unable to find data for input tensor 'INPUT__0' for model 'resnet' in request.",
    ],
    [
      'raw and contents together',
      one({
        inputs: [
          { name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, 224, 224], contents: { fp32_contents: [1] } },
        ],
      }),
      "contents field must not be specified when using raw_input_contents for 'INPUT__0' for model 'resnet'",
    ],
    [
      'contents of the wrong type',
      one({
        raw_input_contents: [],
        inputs: [
          { name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, 224, 224], contents: { int_contents: [1] } },
        ],
      }),
      "unexpected explicit tensor data for input tensor 'INPUT__0' for model 'resnet' of type 'INT32', expected datatype 'FP32'",
    ],
    [
      'duplicate input',
      one({
        inputs: [
          { name: 'INPUT__0', datatype: 'FP32', shape: [1] },
          { name: 'INPUT__0', datatype: 'FP32', shape: [1] },
        ],
      }),
      "[request id: <id_unknown>] input 'INPUT__0' already exists in request",
    ],
    [
      'unspecified dimension',
      one({ inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [1, 3, -1, 224] }] }),
      "[request id: <id_unknown>] All input dimensions should be specified for input 'INPUT__0' for model 'resnet', got [1,3,-1,224]",
    ],
    [
      'version not loaded',
      one({ model_version: '2' }),
      "Request for unknown model: 'resnet' version 2 is not found",
    ],
    ['bad version string', one({ model_version: 'x' }), texts.badVersionString('x')],
  ])('%s', async (_label, request, message) => {
    const e = await rejection(client.infer(request as never));
    expect(e.tritonMessage).toBe(message);
  });

  test('malformed BYTES are refused', async () => {
    const bad = Buffer.concat([serializeBytesElements([Buffer.from('ab')]), Buffer.from([9, 0, 0, 0, 1])]);
    const e = await rejection(
      client.infer({
        model_name: 'all',
        inputs: ALL.map(([d], i) => ({ name: `INPUT${i}`, datatype: d, shape: [1, 3] })),
        raw_input_contents: ALL.map(([d]) => (d === 'BYTES' ? bad : valuesToRaw(d, sample[d].slice(0, 3)))),
      }),
    );
    expect(e.tritonMessage).toContain("input byte size mismatch for input 'INPUT12'");
  });
});
