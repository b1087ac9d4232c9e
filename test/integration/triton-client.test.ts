import * as grpc from '@grpc/grpc-js';
import { TritonClient, toSafeNumber } from '../../src/triton/client';
import { TritonError, isOutOfMemoryText, classifyTritonFailure } from '../../src/triton/triton-error';
import { TritonMetricsReader } from '../../src/triton/metrics';
import { isAgentError, ErrorCode } from '../../src/errors';
import { systemClock, type Clock } from '../../src/time';
import { TritonEmulator, classifierScores } from '../support/triton-emulator';
import { identityConfig, resnetPtConfig, tempDir, writeModel } from '../support/model-repo';
import { signal, within } from '../support/wait';

const MiB = 1024 * 1024;

describe('TritonClient against the emulator over gRPC', () => {
  let repo: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  let client: TritonClient;

  beforeAll(async () => {
    repo = await tempDir();
    await writeModel(repo.dir, 'resnet', {
      config: resnetPtConfig(),
      versions: { '1': { 'model.pt': 4 * MiB } },
    });
    await writeModel(repo.dir, 'ident', {
      config: identityConfig('ident', [{ type: 'TYPE_FP32', dims: [-1] }]),
      versions: { '1': { 'model.py': 10 } },
    });
    emulator = await TritonEmulator.start({ modelRepository: repo.dir, gpuMemoryBytes: 64 * MiB });
    client = new TritonClient({
      address: emulator.grpcAddress,
      retry: { initialDelayMs: 20, maxDelayMs: 100 },
    });
  });

  afterAll(async () => {
    client.close();
    await emulator.stop();
    await repo.cleanup();
  });

  test('health and server metadata', async () => {
    expect(await client.serverLive()).toBe(true);
    expect(await client.serverReady()).toBe(true);
    const md = await client.serverMetadata();
    expect(md.name).toBe('triton');
    expect(md.extensions).toContain('model_repository(unload_dependents)');
  });

  test('load, readiness, metadata, config, index, statistics, unload', async () => {
    expect(await client.modelReady('resnet')).toBe(false);
    await client.load('resnet');
    expect(await client.modelReady('resnet')).toBe(true);
    expect(await client.modelReady('resnet', '1')).toBe(true);
    const md = await client.modelMetadata('resnet');
    expect(md).toEqual({
      name: 'resnet',
      versions: ['1'],
      platform: 'pytorch_libtorch',
      inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
      outputs: [{ name: 'OUTPUT__0', datatype: 'FP32', shape: [-1, 1000] }],
    });
    const cfg = await client.modelConfig('resnet');
    expect(cfg).toMatchObject({ name: 'resnet', platform: 'pytorch_libtorch', max_batch_size: 128 });
    const index = await client.repositoryIndex();
    expect(index).toContainEqual({ name: 'resnet', version: '1', state: 'READY', reason: '' });
    expect(index).toContainEqual({ name: 'ident', version: '', state: '', reason: '' });
    expect(await client.repositoryIndex({ ready: true })).toEqual([
      { name: 'resnet', version: '1', state: 'READY', reason: '' },
    ]);
    const stats = await client.modelStatistics('resnet');
    expect(stats).toHaveLength(1);
    expect(stats[0]).toMatchObject({ name: 'resnet', version: '1', inference_count: 0 });
    await client.unload('resnet', { unloadDependents: true });
    await emulator.idle();
    expect(await client.modelReady('resnet')).toBe(false);
    expect(await client.repositoryIndex()).toContainEqual({
      name: 'resnet',
      version: '1',
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    });
  });

  test('infers a ResNet-shaped batch and gets the documented outputs', async () => {
    await client.load('resnet');
    const n = 3 * 224 * 224;
    const input = new Float32Array(2 * n);
    for (let i = 0; i < input.length; i++) input[i] = Math.fround(Math.sin(i) * 2);
    const res = await client.infer({
      model_name: 'resnet',
      id: 'req-7',
      inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [2, 3, 224, 224] }],
      raw_input_contents: [Buffer.from(input.buffer)],
    });
    expect(res.model_name).toBe('resnet');
    expect(res.model_version).toBe('1');
    expect(res.id).toBe('req-7');
    expect(res.outputs).toEqual([{ name: 'OUTPUT__0', datatype: 'FP32', shape: [2, 1000], parameters: {} }]);
    const raw = res.raw_output_contents[0];
    const out = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
    expect(Array.from(out.subarray(0, 1000))).toEqual(
      Array.from(classifierScores(input.subarray(0, n), 1000)),
    );
    expect(Array.from(out.subarray(1000))).toEqual(Array.from(classifierScores(input.subarray(n), 1000)));
    const stats = await client.modelStatistics('resnet');
    expect(stats[0].inference_count).toBe(2);
    expect(stats[0].execution_count).toBe(1);
  });

  test('an 80 MB request and response round trip', async () => {
    await client.load('ident');
    const bytes = 80 * 1000 * 1000;
    const input = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i += 4096) input.writeUInt32LE(i, i);
    const res = await client.infer({
      model_name: 'ident',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [bytes / 4] }],
      raw_input_contents: [input],
    });
    expect(res.outputs[0].shape).toEqual([bytes / 4]);
    expect(res.raw_output_contents[0].length).toBe(bytes);
    expect(res.raw_output_contents[0].equals(input)).toBe(true);
  });

  test('typed errors keep Triton message and gRPC code', async () => {
    const err = await client.infer({ model_name: 'nope', inputs: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TritonError);
    expect(err).toMatchObject({
      kind: 'NotFound',
      grpcCode: grpc.status.NOT_FOUND,
      code: ErrorCode.ModelNotFound,
      tritonMessage: "Request for unknown model: 'nope' is not found",
      rpc: 'ModelInfer',
    });
    const loadErr = await client.load('missing-model').catch((e: unknown) => e);
    expect(loadErr).toMatchObject({
      kind: 'Internal',
      grpcCode: grpc.status.INTERNAL,
      tritonMessage: "failed to load 'missing-model', failed to poll from model repository",
    });
  });

  test('an out-of-memory load is classified as OutOfMemory', async () => {
    await writeModel(repo.dir, 'huge', {
      config: resnetPtConfig({ name: 'huge', gpuBytes: 128 * MiB }),
      versions: { '1': { 'model.pt': 10 } },
    });
    const err = (await client.load('huge').catch((e: unknown) => e)) as TritonError;
    expect(err.kind).toBe('OutOfMemory');
    expect(err.code).toBe(ErrorCode.InsufficientCapacity);
    expect(err.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.tritonMessage).toMatch(
      /^load failed for model 'huge': version 1 is at UNAVAILABLE state: Internal: failed to load model 'huge': CUDA out of memory\. Tried to allocate 128\.00 MiB/,
    );
    expect(err.tritonMessage.endsWith(';\n')).toBe(true);
  });

  test('per-call deadlines', async () => {
    await client.load('ident');
    emulator.setLatency({ inferMs: 500 });
    try {
      const err = await client
        .infer(
          {
            model_name: 'ident',
            inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1] }],
            raw_input_contents: [Buffer.alloc(4)],
          },
          { deadlineMs: 50 },
        )
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'DeadlineExceeded', code: ErrorCode.DeadlineExceeded });
    } finally {
      emulator.setLatency({ inferMs: 0 });
    }
  });

  test('streaming inference carries per-request errors', async () => {
    await client.load('ident');
    const stream = client.streamInfer();
    stream.write({
      model_name: 'ident',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2] }],
      raw_input_contents: [Buffer.from(new Float32Array([1.5, -2]).buffer)],
    });
    stream.write({
      model_name: 'ident',
      inputs: [{ name: 'BAD', datatype: 'FP32', shape: [1] }],
      raw_input_contents: [Buffer.alloc(4)],
    });
    stream.end();
    const responses = [];
    for await (const r of stream.responses()) responses.push(r);
    expect(responses).toHaveLength(2);
    expect(responses[0].error_message).toBe('');
    expect(responses[0].infer_response?.raw_output_contents[0]).toEqual(
      Buffer.from(new Float32Array([1.5, -2]).buffer),
    );
    expect(responses[1].error_message).toBe("unexpected inference input 'BAD' for model 'ident'");
  });

  test('idempotent calls retry through a Triton restart; loads do not', async () => {
    await emulator.crash();
    const loadErr = await client.load('resnet').catch((e: unknown) => e);
    expect(loadErr).toMatchObject({ kind: 'Unavailable', code: ErrorCode.TritonUnavailable });
    // Callers are told Triton is away, not where it listens; the transport's text stays for logs.
    expect((loadErr as TritonError).message).toBe('Triton is not reachable right now; retry shortly');
    expect((loadErr as TritonError).tritonMessage).not.toBe('');
    // The client's clock tells when it waits to retry: Triton comes back once a call has failed and the
    // client is retrying it, not after a guessed time.
    const retrying = signal();
    const clock: Clock = {
      ...systemClock,
      sleep: (ms, abort) => {
        retrying.fire();
        return systemClock.sleep(ms, abort);
      },
    };
    const live = new TritonClient({
      address: emulator.grpcAddress,
      retry: { attempts: 30, initialDelayMs: 50, maxDelayMs: 100 },
      clock,
    });
    try {
      const answer = live.serverLive();
      await within(retrying.fired, { timeoutMs: 10_000, what: 'the client retrying ServerLive' });
      await emulator.restart();
      expect(await answer).toBe(true);
    } finally {
      live.close();
    }
    // Triton comes back empty.
    expect(await client.modelReady('resnet')).toBe(false);
  });

  test('metrics reader parses the emulator metrics endpoint', async () => {
    await client.load('resnet');
    emulator.refreshMetrics();
    const m = await new TritonMetricsReader(emulator.metricsUrl).read();
    expect(m.gpus).toEqual([
      {
        uuid: emulator.gpuUuid,
        memoryTotalBytes: 64 * MiB,
        // DCGM's figures are whole MiB.
        memoryUsedBytes: Math.floor(emulator.gpu.usedBytes() / MiB) * MiB,
        utilization: 0,
      },
    ]);
    expect(m.gpuSeries).toBe(true);
    expect(m.gpus[0].memoryUsedBytes).toBeGreaterThanOrEqual(4 * MiB);
    const bad = await new TritonMetricsReader('http://127.0.0.1:1/metrics', 500)
      .read()
      .catch((e: unknown) => e);
    expect(isAgentError(bad, ErrorCode.TritonUnavailable)).toBe(true);
  });
});

describe('Triton error classification and int64 conversion', () => {
  test('OOM texts', () => {
    expect(
      isOutOfMemoryText('Internal: unable to create TensorRT engine: ... Cuda Runtime (out of memory)'),
    ).toBe(true);
    expect(isOutOfMemoryText('can not create model: memory limit set for GPU 0 has exceeded')).toBe(true);
    expect(isOutOfMemoryText("Request for unknown model: 'a' is not found")).toBe(false);
    expect(classifyTritonFailure(grpc.status.INVALID_ARGUMENT, 'CUDA out of memory. Tried')).toBe(
      'OutOfMemory',
    );
    expect(classifyTritonFailure(grpc.status.UNAVAILABLE, 'connect failed')).toBe('Unavailable');
  });

  test("a model named like 'BLOOM-560m' that fails to load is not out of memory", () => {
    const text =
      "failed to load 'BLOOM-560m-0123456789ab' version 1: Invalid argument: unable to find 'model.pt' for BLOOM-560m";
    expect(isOutOfMemoryText(text)).toBe(false);
    expect(classifyTritonFailure(grpc.status.INVALID_ARGUMENT, text, ['BLOOM-560m-0123456789ab'])).toBe(
      'InvalidArgument',
    );
    // A model whose own name is an out-of-memory word is judged by the rest of the text.
    expect(isOutOfMemoryText("failed to load 'OOM': no such file", ['OOM'])).toBe(false);
    expect(isOutOfMemoryText("failed to load 'OOM': CUDA out of memory", ['OOM'])).toBe(true);
  });

  test('one table maps a Triton failure to a code, by kind of call', () => {
    const load = new TritonError('RepositoryModelLoad', grpc.status.INTERNAL, 'failed to load');
    const infer = new TritonError('ModelInfer', grpc.status.INTERNAL, 'backend crashed');
    expect(load.code).toBe(ErrorCode.InvalidModel);
    expect(infer.code).toBe(ErrorCode.TritonInternal);
  });

  test('int64 values past 2^53 fail loudly', () => {
    expect(toSafeNumber('9007199254740991', 'x')).toBe(9007199254740991);
    expect(toSafeNumber('-3', 'x')).toBe(-3);
    expect(() => toSafeNumber('9007199254740993', 'output dimension')).toThrow(
      /output dimension 9007199254740993 is not an integer below 2\^53/,
    );
  });
});
