import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TritonClient } from '../../src/triton/client';
import { TritonError } from '../../src/triton/triton-error';
import { parseTritonMetrics } from '../../src/triton/metrics';
import { TritonEmulator, texts } from '../support/triton-emulator';
import { identityConfig, resnetPtConfig, resnetTrtConfig, tempDir, writeModel } from '../support/model-repo';
import { waitUntil } from '../support/wait';

const MiB = 1024 * 1024;
/** Each emulated device: 16 MiB, so a few 4 MiB instances fill one. */
const DEVICE = 16 * MiB;
const INSTANCE = 4 * MiB;
const LAG_MS = 150;

async function rejection(p: Promise<unknown>): Promise<TritonError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof TritonError)) throw new Error(`expected a TritonError, got ${String(e)}`);
  return e;
}

describe('Triton emulator with four GPUs: placement by instance_group', () => {
  let repo: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  let client: TritonClient;

  /** A PyTorch model whose every instance takes `bytes`, with `groups` appended to its config. */
  const model = (name: string, groups = '', bytes = INSTANCE) =>
    writeModel(repo.dir, name, {
      config: resnetPtConfig({ name, gpuBytes: bytes }) + '\n' + groups,
      versions: { '1': { 'model.pt': 10 } },
    });
  const used = () => emulator.gpus.map((g) => g.usedBytes());
  /** Held now, memory in its release lag left out. */
  const held = () => emulator.gpus.map((g) => g.heldBytes());

  beforeEach(async () => {
    repo = await tempDir();
    emulator = await TritonEmulator.start({
      modelRepository: repo.dir,
      gpuCount: 4,
      gpuMemoryBytes: DEVICE,
      memoryReleaseLagMs: LAG_MS,
      gpuBaselineBytes: 0,
      failedReadEvery: 0,
      memoryTracker: ['tensorrt', 'onnxruntime'],
    });
    client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
  });

  afterEach(async () => {
    client.close();
    await emulator.stop();
    await repo.cleanup();
  });

  test('four devices with distinct random UUIDs, in PCI order as nvidia-smi lists them', () => {
    const uuids = emulator.gpus.map((g) => g.uuid);
    expect(new Set(uuids).size).toBe(4);
    for (const u of uuids)
      expect(u).toMatch(/^GPU-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(emulator.nvidiaSmiCsv().trim().split('\n')).toEqual(
      emulator.gpus.map((g, i) => `${i}, ${g.uuid}, ${g.pciBusId}`),
    );
    expect(emulator.gpu).toBe(emulator.gpus[0]);
    expect(emulator.gpus.map((g) => g.totalBytes)).toEqual([DEVICE, DEVICE, DEVICE, DEVICE]);
  });

  test('no instance_group: one instance on every GPU (Triton default)', async () => {
    await model('everywhere');
    await client.load('everywhere');
    expect(emulator.placement('everywhere')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    expect(used()).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    // Reloading changed files replaces the model's memory on each device rather than adding to it (the
    // old allocation still shows as used on each device for the release lag).
    const later = new Date(Date.now() + 5000);
    await fs.utimes(path.join(repo.dir, 'everywhere', '1', 'model.pt'), later, later);
    await client.load('everywhere');
    expect(emulator.placement('everywhere')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    expect(used()).toEqual([8 * MiB, 8 * MiB, 8 * MiB, 8 * MiB]);
  });

  test('KIND_GPU without gpus, and KIND_AUTO, mean every GPU; count multiplies on each', async () => {
    await model('gpu2', 'instance_group { kind: KIND_GPU count: 2 }');
    await model('auto', 'instance_group { kind: KIND_AUTO }');
    await client.load('gpu2');
    await client.load('auto');
    expect(emulator.placement('gpu2')).toEqual([8 * MiB, 8 * MiB, 8 * MiB, 8 * MiB]);
    expect(emulator.placement('auto')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
  });

  test('gpus: [2] puts the instance on device 2 only', async () => {
    await model('two', 'instance_group { kind: KIND_GPU gpus: [2] }');
    await client.load('two');
    expect(emulator.placement('two')).toEqual([0, 0, INSTANCE, 0]);
    expect(used()).toEqual([0, 0, INSTANCE, 0]);
  });

  test('count: 2 on listed GPUs puts two instances on each', async () => {
    await model('pair', 'instance_group { kind: KIND_GPU count: 2 gpus: [1, 3] }');
    await client.load('pair');
    expect(emulator.placement('pair')).toEqual([0, 2 * INSTANCE, 0, 2 * INSTANCE]);
  });

  test('KIND_CPU takes no GPU memory anywhere', async () => {
    await model('cpu', 'instance_group { kind: KIND_CPU count: 4 }');
    await client.load('cpu');
    expect(await client.modelReady('cpu')).toBe(true);
    expect(emulator.placement('cpu')).toEqual([0, 0, 0, 0]);
    expect(used()).toEqual([0, 0, 0, 0]);
    const [stats] = await client.modelStatistics('cpu');
    expect(stats.memory_usage).toEqual([]);
  });

  test('several groups add up per device', async () => {
    await model(
      'mixed',
      [
        'instance_group [',
        '  { kind: KIND_GPU gpus: [0] },',
        '  { kind: KIND_GPU count: 2 gpus: [0, 3] },',
        '  { kind: KIND_CPU count: 8 }',
        ']',
      ].join('\n'),
      MiB,
    );
    await client.load('mixed');
    expect(emulator.placement('mixed')).toEqual([3 * MiB, 0, 0, 2 * MiB]);
  });

  test('a GPU id the server does not have fails the load with Triton’s text; nothing is allocated', async () => {
    await model('bad', 'instance_group { kind: KIND_GPU gpus: [1, 4] }');
    const e = await rejection(client.load('bad'));
    expect(e.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
    // The unnamed group is named `<model>_<index>` by Triton's normalisation.
    expect(e.tritonMessage).toBe(
      "load failed for model 'bad': version 1 is at UNAVAILABLE state: Invalid argument: instance group bad_0 " +
        'of model bad specifies invalid or unsupported gpu id 4. GPUs with at least the minimum required CUDA ' +
        'compute compatibility of 6.000000 are: 0, 1, 2, 3;\n',
    );
    expect(e.kind).toBe('InvalidArgument');
    expect(used()).toEqual([0, 0, 0, 0]);
    expect(await client.repositoryIndex()).toEqual([
      { name: 'bad', version: '1', state: 'UNAVAILABLE', reason: expect.stringContaining('gpu id 4') },
    ]);
    // A named group keeps its name in the message.
    await model('named', 'instance_group { name: "hot" kind: KIND_GPU gpus: [7] }');
    expect((await rejection(client.load('named'))).tritonMessage).toBe(
      texts.loadFailed(
        'named',
        texts.versionUnavailable(1, texts.invalidGpuId('hot', 'named', 7, [0, 1, 2, 3])),
      ),
    );
  });

  test('KIND_CPU that lists GPUs is refused as Triton refuses it', async () => {
    await model('cpugpu', 'instance_group { kind: KIND_CPU gpus: [0] }');
    const e = await rejection(client.load('cpugpu'));
    expect(e.tritonMessage).toBe(
      "load failed for model 'cpugpu': version 1 is at UNAVAILABLE state: Invalid argument: instance group " +
        'cpugpu_0 of model cpugpu has kind KIND_CPU but specifies one or more GPUs;\n',
    );
    expect(used()).toEqual([0, 0, 0, 0]);
  });

  test('out of memory on one device while others have room: the load fails naming that GPU, allocating nothing', async () => {
    await model('filler', 'instance_group { kind: KIND_GPU gpus: [2] }', 14 * MiB);
    await model('everywhere');
    await model('pinned0', 'instance_group { kind: KIND_GPU gpus: [0] }');
    await client.load('filler');
    expect(used()).toEqual([0, 0, 14 * MiB, 0]);

    const e = await rejection(client.load('everywhere'));
    expect(e.kind).toBe('OutOfMemory');
    expect(e.tritonMessage).toBe(
      texts.loadFailed(
        'everywhere',
        texts.versionUnavailable(1, texts.pytorchOutOfMemory('everywhere', 4, DEVICE / 1024 ** 3, 2, 2)),
      ),
    );
    // All or nothing: devices 0 and 1 got their instances (created one after another, in order), which
    // went again when device 2's failed; nothing stayed, PyTorch's cache emptied by their destructors.
    expect(emulator.placement('everywhere')).toEqual([0, 0, 0, 0]);
    expect(held()).toEqual([0, 0, 14 * MiB, 0]);
    expect(emulator.gpus.map((g) => g.peakBytes())).toEqual([INSTANCE, INSTANCE, 14 * MiB, 0]);

    // A model that needs only a device with room loads.
    await client.load('pinned0');
    expect(held()).toEqual([INSTANCE, 0, 14 * MiB, 0]);
  });

  test('TensorRT out of memory on one device keeps TensorRT’s text and allocates nothing', async () => {
    await model('filler', 'instance_group { kind: KIND_GPU gpus: [3] }', 14 * MiB);
    await writeModel(repo.dir, 'trt', {
      config: resnetTrtConfig('trt') + '\ninstance_group { kind: KIND_GPU gpus: [1, 3] }',
      versions: { '1': { 'model.plan': 3 * MiB } },
    });
    await client.load('filler');
    const e = await rejection(client.load('trt'));
    expect(e.tritonMessage).toBe(
      texts.loadFailed('trt', texts.versionUnavailable(1, texts.tensorrtEngineOutOfMemory())),
    );
    expect(held()).toEqual([0, 0, 0, 14 * MiB]);
  });

  test('unload releases each device’s allocation, after each device’s release lag', async () => {
    await model('a', 'instance_group { kind: KIND_GPU gpus: [1, 2] }');
    await model('b');
    await client.load('a');
    await client.load('b');
    expect(used()).toEqual([INSTANCE, 2 * INSTANCE, 2 * INSTANCE, INSTANCE]);

    const unloading = Date.now();
    await client.unload('a');
    await emulator.idle();
    expect(emulator.placement('a')).toEqual([0, 0, 0, 0]);
    expect(emulator.placement('b')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    // Freed memory still shows as used on the devices that held it, until the lag passes (and no longer:
    // the lag ran from the release, which came after `unloading`, and the bound is the lag and 50 ms).
    expect(used()).toEqual([INSTANCE, 2 * INSTANCE, 2 * INSTANCE, INSTANCE]);
    const released = () => used().every((bytes) => bytes === INSTANCE);
    await waitUntil(released, { timeoutMs: LAG_MS + 50, what: "a's memory released after the lag" });
    expect(Date.now() - unloading).toBeGreaterThanOrEqual(LAG_MS);
    expect(used()).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    // Each device remembers its own peak.
    expect(emulator.gpus.map((g) => g.peakBytes())).toEqual([INSTANCE, 2 * INSTANCE, 2 * INSTANCE, INSTANCE]);
  });

  test('a config override moves a model to the GPUs it names (reload on another device)', async () => {
    await model('moved');
    await client.load('moved');
    expect(emulator.placement('moved')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
    // The load's `config` parameter (protobuf JSON) replaces config.pbtxt, instance_group included.
    const config = {
      name: 'moved',
      platform: 'pytorch_libtorch',
      max_batch_size: 128,
      input: [{ name: 'INPUT__0', data_type: 'TYPE_FP32', dims: [3, 224, 224] }],
      output: [{ name: 'OUTPUT__0', data_type: 'TYPE_FP32', dims: [1000] }],
      instance_group: [{ kind: 'KIND_GPU', count: 1, gpus: [3] }],
      parameters: { emulator_gpu_bytes: { string_value: String(INSTANCE) } },
    };
    await client.load('moved', { config });
    expect(emulator.placement('moved')).toEqual([0, 0, 0, INSTANCE]);
  });

  test('an instance_group change alone is an update in place: instances whose group and GPU are unchanged are kept', async () => {
    await model('grow', 'instance_group { kind: KIND_GPU gpus: [0] }', INSTANCE);
    const cfg = path.join(repo.dir, 'grow', 'config.pbtxt');
    const text = await fs.readFile(cfg, 'utf8');
    await fs.writeFile(cfg, text + '\nparameters { key: "emulator_load_ms" value { string_value: "300" } }');
    await client.load('grow');
    expect(emulator.placement('grow')).toEqual([INSTANCE, 0, 0, 0]);
    // One group per GPU: GPU 0's group is unchanged, so its instance is kept; one new instance each on 1
    // and 2, two instances' load time, never a second copy on GPU 0.
    const perGpu = (gpus: number[]) =>
      `instance_group [ ${gpus.map((g) => `{ kind: KIND_GPU gpus: [${g}] }`).join(', ')} ]`;
    await fs.writeFile(
      cfg,
      (await fs.readFile(cfg, 'utf8')).replace(
        'instance_group { kind: KIND_GPU gpus: [0] }',
        perGpu([0, 1, 2]),
      ),
    );
    const t0 = Date.now();
    await client.load('grow');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * 300 - 5);
    expect(emulator.placement('grow')).toEqual([INSTANCE, INSTANCE, INSTANCE, 0]);
    expect(held()).toEqual([INSTANCE, INSTANCE, INSTANCE, 0]);
    expect(emulator.gpus[0].peakBytes()).toBe(INSTANCE);
    // Back to one GPU: the others go; GPU 0 keeps its instance throughout.
    await fs.writeFile(cfg, (await fs.readFile(cfg, 'utf8')).replace(perGpu([0, 1, 2]), perGpu([0])));
    await client.load('grow');
    expect(emulator.placement('grow')).toEqual([INSTANCE, 0, 0, 0]);
    expect(emulator.gpus[0].peakBytes()).toBe(INSTANCE);
    // An update that does not fit fails, and the model stays as it was, still serving, READY.
    await model('hog', 'instance_group { kind: KIND_GPU gpus: [3] }', DEVICE - INSTANCE / 2);
    await client.load('hog');
    await fs.writeFile(cfg, (await fs.readFile(cfg, 'utf8')).replace(perGpu([0]), perGpu([0, 3])));
    const e = await rejection(client.load('grow'));
    expect(e.message).toContain('CUDA out of memory');
    expect(e.tritonMessage).toMatch(/^load failed for model 'grow': version 1 is at READY state: Internal: /);
    expect(emulator.placement('grow')).toEqual([INSTANCE, 0, 0, 0]);
    expect(await client.modelReady('grow')).toBe(true);
  });

  test('a group whose GPU list changes is a new group: every instance is created anew, a second copy on the GPU kept', async () => {
    await model('whole', 'instance_group { kind: KIND_GPU gpus: [0] }', INSTANCE);
    await client.load('whole');
    const cfg = path.join(repo.dir, 'whole', 'config.pbtxt');
    await fs.writeFile(cfg, (await fs.readFile(cfg, 'utf8')).replace('gpus: [0]', 'gpus: [0, 1]'));
    await client.load('whole');
    expect(emulator.placement('whole')).toEqual([INSTANCE, INSTANCE, 0, 0]);
    // The old instance served until the new set was in: GPU 0 held two for a while.
    expect(emulator.gpus[0].peakBytes()).toBe(2 * INSTANCE);
  });

  test('TensorRT keeps no instance in an update, and its engine stays on a GPU it leaves until it unloads', async () => {
    const trt = (gpus: number[]) =>
      resnetTrtConfig('engine') +
      `\nparameters { key: "emulator_gpu_bytes" value { string_value: "${INSTANCE}" } }\n` +
      `instance_group [ ${gpus.map((g) => `{ kind: KIND_GPU gpus: [${g}] }`).join(', ')} ]`;
    await writeModel(repo.dir, 'engine', { config: trt([0, 1]), versions: { '1': { 'model.plan': 10 } } });
    await client.load('engine');
    expect(emulator.placement('engine')).toEqual([INSTANCE, INSTANCE, 0, 0]);
    await fs.writeFile(path.join(repo.dir, 'engine', 'config.pbtxt'), trt([0]));
    await client.load('engine');
    // GPU 1 has no instance but still its engine (four fifths of an instance here); GPU 0's context was
    // built again beside the old one.
    const engine = INSTANCE - Math.ceil(INSTANCE / 5);
    expect(emulator.placement('engine')).toEqual([INSTANCE, engine, 0, 0]);
    expect(emulator.gpus[0].peakBytes()).toBe(INSTANCE + Math.ceil(INSTANCE / 5));
    await client.unload('engine');
    await emulator.idle();
    expect(emulator.placement('engine')).toEqual([0, 0, 0, 0]);
    expect(held()).toEqual([0, 0, 0, 0]);
  });

  test('PyTorch creates instances one after another: on four GPUs a load takes four instances’ time', async () => {
    await model('serial');
    const cfg = path.join(repo.dir, 'serial', 'config.pbtxt');
    await fs.appendFile(cfg, '\nparameters { key: "emulator_load_ms" value { string_value: "150" } }');
    const t0 = Date.now();
    await client.load('serial');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4 * 150 - 5);
    expect(emulator.placement('serial')).toEqual([INSTANCE, INSTANCE, INSTANCE, INSTANCE]);
  });

  test('four loads run at once (Triton’s default model load thread count); the others wait their turn', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `q${i}`);
    for (const n of names)
      await model(
        n,
        'instance_group { kind: KIND_GPU gpus: [0] }\nparameters { key: "emulator_load_ms" value { string_value: "200" } }',
        1024,
      );
    const t0 = Date.now();
    await Promise.all(names.map((n) => client.load(n)));
    // Eight 200 ms loads on four threads: two rounds.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * 200 - 5);
    expect(emulator.loadedModels()).toHaveLength(8);
  });

  test('each instance runs one request at a time: the others queue', async () => {
    const run = async (name: string, groups: string) => {
      await writeModel(repo.dir, name, {
        config:
          identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }], 0, groups) +
          '\nparameters { key: "emulator_infer_ms" value { string_value: "100" } }',
        versions: { '1': { 'model.py': 10 } },
      });
      await client.load(name);
      const t0 = Date.now();
      await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          client.infer({
            model_name: name,
            inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], contents: { int_contents: [i] } }],
          }),
        ),
      );
      return Date.now() - t0;
    };
    // One instance: four requests one after another.
    expect(await run('one', 'instance_group { kind: KIND_GPU gpus: [0] }')).toBeGreaterThanOrEqual(
      4 * 100 - 5,
    );
  });

  test('an UNLOADING version still holds its devices; a crash frees every device at once', async () => {
    emulator.setLatency({ unloadMs: 100 });
    await model('slow', 'instance_group { kind: KIND_GPU gpus: [0, 2] }');
    await model('other', 'instance_group { kind: KIND_GPU gpus: [1] }');
    await client.load('slow');
    await client.load('other');
    await client.unload('slow');
    expect(await client.repositoryIndex()).toContainEqual({
      name: 'slow',
      version: '1',
      state: 'UNLOADING',
      reason: '',
    });
    expect(emulator.placement('slow')).toEqual([INSTANCE, 0, INSTANCE, 0]);
    await emulator.crash();
    expect(used()).toEqual([0, 0, 0, 0]);
    expect(emulator.placement('other')).toEqual([0, 0, 0, 0]);
  });

  test('/metrics: one nv_gpu_* series per device, labelled gpu_uuid', async () => {
    await model('pair', 'instance_group { kind: KIND_GPU count: 2 gpus: [1] }');
    await model('b', 'instance_group { kind: KIND_GPU gpus: [1, 3] }');
    await client.load('pair');
    await client.load('b');
    emulator.refreshMetrics();
    const m = parseTritonMetrics(await (await fetch(emulator.metricsUrl)).text());
    const uuid = (i: number) => emulator.gpus[i].uuid;
    expect(m.gpus).toEqual([
      { uuid: uuid(0), memoryUsedBytes: 0, memoryTotalBytes: DEVICE, utilization: 0 },
      { uuid: uuid(1), memoryUsedBytes: 3 * INSTANCE, memoryTotalBytes: DEVICE, utilization: 0 },
      { uuid: uuid(2), memoryUsedBytes: 0, memoryTotalBytes: DEVICE, utilization: 0 },
      { uuid: uuid(3), memoryUsedBytes: INSTANCE, memoryTotalBytes: DEVICE, utilization: 0 },
    ]);
  });

  test('ModelStatistics.memory_usage: one GPU entry per device, for onnxruntime with the tracker; never PyTorch', async () => {
    const onnx = (name: string, groups = '') =>
      writeModel(repo.dir, name, {
        config: [
          `name: "${name}"`,
          'platform: "onnxruntime_onnx"',
          'max_batch_size: 8',
          'input { name: "x" data_type: TYPE_FP32 dims: [4] }',
          'output { name: "y" data_type: TYPE_FP32 dims: [4] }',
          `parameters { key: "emulator_gpu_bytes" value { string_value: "${INSTANCE}" } }`,
          groups,
        ].join('\n'),
        versions: { '1': { 'model.onnx': 10 } },
      });
    await onnx('pair', 'instance_group { kind: KIND_GPU count: 2 gpus: [3, 1] }');
    await onnx('everywhere');
    await model('torch', 'instance_group { kind: KIND_GPU gpus: [0] }');
    await client.load('pair');
    await client.load('everywhere');
    await client.load('torch');
    const [pair] = await client.modelStatistics('pair');
    expect(pair.memory_usage).toEqual([
      { type: 'GPU', id: 1, byte_size: 2 * INSTANCE },
      { type: 'GPU', id: 3, byte_size: 2 * INSTANCE },
    ]);
    const [all] = await client.modelStatistics('everywhere');
    expect(all.memory_usage).toEqual([0, 1, 2, 3].map((id) => ({ type: 'GPU', id, byte_size: INSTANCE })));
    // pytorch_backend never calls TRITONBACKEND_*ReportMemoryUsage.
    const [torch] = await client.modelStatistics('torch');
    expect(torch.memory_usage).toEqual([]);
  });
});

describe('Triton emulator GPU count: the default stays one GPU', () => {
  test('one device by default; gpus: [1] is an invalid id there', async () => {
    const repo = await tempDir();
    const emulator = await TritonEmulator.start({ modelRepository: repo.dir, gpuMemoryBytes: DEVICE });
    const client = new TritonClient({ address: emulator.grpcAddress, retry: { attempts: 1 } });
    try {
      expect(emulator.gpus).toHaveLength(1);
      expect(emulator.gpuUuid).toMatch(/^GPU-[0-9a-f-]{36}$/);
      await writeModel(repo.dir, 'one', {
        config:
          resnetPtConfig({ name: 'one', gpuBytes: INSTANCE }) +
          '\ninstance_group { kind: KIND_GPU gpus: [1] }',
        versions: { '1': { 'model.pt': 10 } },
      });
      const e = await rejection(client.load('one'));
      expect(e.tritonMessage).toContain('specifies invalid or unsupported gpu id 1. ');
      expect(e.tritonMessage).toContain('compatibility of 6.000000 are: 0;\n');
      expect(emulator.placement('one')).toEqual([0]);
    } finally {
      client.close();
      await emulator.stop();
      await repo.cleanup();
    }
  });

  test('gpuUuid names GPU 0 only (gpuUuids names them all); a count below 1 is refused', async () => {
    const repo = await tempDir();
    try {
      const e = await TritonEmulator.start({
        modelRepository: repo.dir,
        gpuCount: 2,
        gpuUuid: 'GPU-7a0c1f5e-0000-0000-0000-000000000000',
        metricsPort: null,
      });
      expect(e.gpus[0].uuid).toBe('GPU-7a0c1f5e-0000-0000-0000-000000000000');
      expect(e.gpus[1].uuid).not.toBe(e.gpus[0].uuid);
      await e.stop();
      const named = await TritonEmulator.start({
        modelRepository: repo.dir,
        gpuCount: 2,
        gpuUuids: ['GPU-ffffffff-0000-4000-8000-000000000000', 'GPU-00000000-0000-4000-8000-000000000000'],
        metricsPort: null,
      });
      expect(named.gpus.map((g) => g.uuid)).toEqual([
        'GPU-ffffffff-0000-4000-8000-000000000000',
        'GPU-00000000-0000-4000-8000-000000000000',
      ]);
      await named.stop();
      await expect(TritonEmulator.start({ modelRepository: repo.dir, gpuCount: 0 })).rejects.toThrow(
        'gpuCount must be a whole number of at least 1',
      );
    } finally {
      await repo.cleanup();
    }
  });
});

describe('Triton emulator CLI: --gpu-count', () => {
  test('the process serves one nv_gpu_* series per emulated GPU', async () => {
    const repo = await tempDir();
    const root = path.resolve(__dirname, '../..');
    const child = spawn(
      process.execPath,
      [
        '--import',
        path.join(root, 'node_modules/tsx/dist/loader.mjs'),
        path.join(root, 'test/support/triton-emulator/cli.ts'),
        `--model-repository=${repo.dir}`,
        '--grpc-address=127.0.0.1',
        '--grpc-port=0',
        '--metrics-port=0',
        '--gpu-count=3',
        '--gpu-memory-bytes=1048576',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      // Await the startup line that names the metrics port.
      const metricsHost = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /Started Metrics Service at (\S+)/.exec(out);
          if (m) resolve(m[1]);
        });
        child.once('exit', (code) => reject(new Error(`emulator exited with ${code}: ${out}`)));
      });
      const m = parseTritonMetrics(await (await fetch(`http://${metricsHost}/metrics`)).text());
      expect(m.gpus).toHaveLength(3);
      expect(new Set(m.gpus.map((g) => g.uuid)).size).toBe(3);
      expect(m.gpus.map((g) => g.memoryTotalBytes)).toEqual([MiB, MiB, MiB]);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await repo.cleanup();
    }
  }, 20_000);
});
