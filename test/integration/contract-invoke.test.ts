import * as grpc from '@grpc/grpc-js';
import { rawToValues, valuesToRaw, serializeBytesElements, type Datatype } from '../../src/inference';
import { tritonNameFor } from '../../src/artifacts';
import { classifierScores } from '../support/triton-emulator';
import { ALL_DATATYPES } from '../support/datatypes';
import { identityConfig } from '../support/model-repo';
import {
  MiB,
  binaryRequest,
  launchPostArtifacts,
  request,
  sagemakerArtifact,
  startStack,
  type Stack,
} from '../support/agent-harness';

const BINARY = 'application/vnd.sagemaker-triton.binary+json';

const ALL = ALL_DATATYPES;

const SAMPLE: Record<Datatype, unknown[]> = {
  BOOL: [true, false],
  UINT8: [0, 255],
  UINT16: [1, 65535],
  UINT32: [2, 4294967295],
  UINT64: [3, 9007199254740991],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  INT64: [-9007199254740991, 42],
  FP16: [0.5, -2],
  BF16: [1.5, -256],
  FP32: [0.25, -1e10],
  FP64: [0.1, -1e300],
  BYTES: ['héllo', ''],
};

/** Splits a binary+json response into its JSON header and binary tail. */
function splitBinary(res: { headers: Headers; body: Buffer }): {
  header: Record<string, unknown>;
  tail: Buffer;
} {
  const ct = res.headers.get('content-type') ?? '';
  const m = /json-header-size=(\d+)/.exec(ct);
  if (!m) throw new Error(`not a binary response: ${ct}`);
  const n = Number(m[1]);
  return {
    header: JSON.parse(res.body.subarray(0, n).toString('utf8')) as Record<string, unknown>,
    tail: res.body.subarray(n),
  };
}

describe('SageMaker MME invoke', () => {
  let stack: Stack;
  const resnetItem = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < resnetItem.length; i++) resnetItem[i] = Math.fround(((i * 7919) % 1000) / 1000 - 0.5);
  const expectedScores = classifierScores(resnetItem, 1000);

  beforeAll(async () => {
    stack = await startStack({ emulator: { gpuMemoryBytes: 64 * MiB } });
    const { pt, trt } = await launchPostArtifacts(stack.models);
    const all = await sagemakerArtifact(stack.models, 'allh', 'all', {
      config: identityConfig(
        'all',
        ALL.map(([, t]) => ({ type: t, dims: [2] })),
      ),
      versions: { '1': { 'model.py': 1 } },
    });
    const single = await sagemakerArtifact(stack.models, 'oneh', 'one', {
      config: identityConfig('one', [{ type: 'TYPE_FP32', dims: [-1] }]),
      versions: { '1': { 'model.py': 1 } },
    });
    for (const [name, url] of [
      ['resnet_pt_v0.tar.gz', pt],
      ['resnet_trt_v0.tar.gz', trt],
      ['all', all],
      ['one', single],
    ]) {
      const r = await request(stack.url, 'POST', '/models', { model_name: name, url });
      expect(r.status).toBe(200);
    }
  });

  afterAll(async () => {
    await stack.stop();
  });

  const invoke = (name: string, body: string | Buffer | object, headers: Record<string, string> = {}) =>
    request(stack.url, 'POST', `/models/${encodeURIComponent(name)}/invoke`, body, headers);

  const ptPayload = {
    inputs: [{ name: 'INPUT__0', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(resnetItem) }],
  };

  test("the launch post's client: JSON sent as application/octet-stream", async () => {
    const r = await invoke('resnet_pt_v0.tar.gz', JSON.stringify(ptPayload), {
      'content-type': 'application/octet-stream',
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    const body = r.json() as {
      model_name: string;
      model_version: string;
      outputs: { name: string; shape: number[]; data: number[] }[];
    };
    expect(body.model_name).toBe('resnet_pt_v0.tar.gz');
    expect(body.model_version).toBe('1');
    expect(body.outputs[0].name).toBe('OUTPUT__0');
    expect(body.outputs[0].shape).toEqual([1, 1000]);
    expect(body.outputs[0].data).toEqual(Array.from(expectedScores));
  });

  test('the two resnet artifacts answer with their own outputs', async () => {
    const trt = await invoke('resnet_trt_v0.tar.gz', {
      inputs: [{ name: 'input', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(resnetItem) }],
    });
    expect(trt.status).toBe(200);
    const out = (trt.json() as { outputs: { name: string; data: number[] }[] }).outputs[0];
    expect(out.name).toBe('output');
    expect(out.data).toEqual(Array.from(expectedScores));
    // The PyTorch artifact does not know the TensorRT input name.
    const wrong = await invoke('resnet_pt_v0.tar.gz', {
      inputs: [{ name: 'input', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(resnetItem) }],
    });
    expect(wrong.status).toBe(400);
    expect(wrong.json().error).toMatch(
      /model 'resnet_pt_v0.tar.gz' has no input 'input'; its inputs are 'INPUT__0'/,
    );
  });

  test('regression: a 100 KB tensor name is a 400 and never reaches Triton (it would break the shared connection)', async () => {
    const long = 'x'.repeat(100_000);
    for (const body of [
      { inputs: [{ name: long, datatype: 'FP32', shape: [1], data: [1] }] },
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }], outputs: [{ name: long }] },
    ]) {
      const r = await invoke('one', body);
      expect(r.status).toBe(400);
      expect(String(r.json().error).length).toBeLessThan(300);
    }
    expect((await request(stack.url, 'GET', '/ping')).status).toBe(200);
    const ok = await invoke('one', {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [7] }],
    });
    expect(ok.status).toBe(200);
  });

  test('every datatype through JSON, nested data, and back', async () => {
    const r = await invoke('all', {
      inputs: ALL.map(([d], i) => ({ name: `INPUT${i}`, datatype: d, shape: [2], data: [SAMPLE[d]] })),
    });
    expect(r.status).toBe(200);
    const outputs = (
      r.json() as { outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[] }
    ).outputs;
    expect(outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual(
      ALL.map(([d], i) => [`OUTPUT${i}`, d, [2]]),
    );
    ALL.forEach(([d], i) => expect(outputs[i].data).toEqual(SAMPLE[d]));
  });

  test('int64 beyond 2^53 comes back exact in JSON', async () => {
    const raw = ALL.map(([d]) =>
      d === 'INT64'
        ? valuesToRaw('INT64', [-(2n ** 63n), 2n ** 63n - 1n])
        : d === 'UINT64'
          ? valuesToRaw('UINT64', [2n ** 64n - 1n, 0])
          : d === 'BYTES'
            ? serializeBytesElements([Buffer.from('a'), Buffer.from('b')])
            : valuesToRaw(
                d,
                (SAMPLE[d] as number[]).map((v) => v),
              ),
    );
    const header = Buffer.from(
      JSON.stringify({
        inputs: ALL.map(([d], i) => ({
          name: `INPUT${i}`,
          datatype: d,
          shape: [2],
          parameters: { binary_data_size: raw[i].length },
        })),
      }),
    );
    const r = await invoke('all', Buffer.concat([header, ...raw]), {
      'content-type': `${BINARY};json-header-size=${header.length}`,
    });
    expect(r.status).toBe(200);
    const text = r.body.toString('utf8');
    expect(text).toContain('"data":[-9223372036854775808,9223372036854775807]');
    expect(text).toContain('"data":[18446744073709551615,0]');
  });

  test('binary+json in, binary outputs out, with the right json-header-size', async () => {
    const req = binaryRequest(
      [{ name: 'INPUT__0', shape: [1, 3, 224, 224], datatype: 'FP32', raw: Buffer.from(resnetItem.buffer) }],
      ['OUTPUT__0'],
    );
    const r = await invoke('resnet_pt_v0.tar.gz', req.body, { 'content-type': req.contentType });
    expect(r.status).toBe(200);
    const { header: h, tail } = splitBinary(r);
    expect(h.outputs).toEqual([
      { name: 'OUTPUT__0', datatype: 'FP32', shape: [1, 1000], parameters: { binary_data_size: 4000 } },
    ]);
    expect(rawToValues('FP32', tail)).toEqual(Array.from(expectedScores));
  });

  test('binary_data_output and Accept ask for binary outputs', async () => {
    const a = await invoke('one', {
      parameters: { binary_data_output: true },
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [1, 2] }],
    });
    expect(rawToValues('FP32', splitBinary(a).tail)).toEqual([1, 2]);
    const b = await invoke(
      'one',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [3, 4] }] },
      { accept: BINARY },
    );
    expect(rawToValues('FP32', splitBinary(b).tail)).toEqual([3, 4]);
  });

  test('json-header-size=0: the whole body is the single input, shaped from the config', async () => {
    const r = await invoke('resnet_pt_v0.tar.gz', Buffer.from(resnetItem.buffer), {
      'content-type': `${BINARY};json-header-size=0`,
    });
    expect(r.status).toBe(200);
    expect((r.json() as { outputs: { shape: number[]; data: number[] }[] }).outputs[0].data).toEqual(
      Array.from(expectedScores),
    );
    const variable = await invoke('one', Buffer.from(new Float32Array([5, 6, 7]).buffer), {
      'content-type': `${BINARY};json-header-size=0`,
    });
    expect((variable.json() as { outputs: { shape: number[]; data: number[] }[] }).outputs[0]).toMatchObject({
      shape: [3],
      data: [5, 6, 7],
    });
    const multi = await invoke('all', Buffer.alloc(4), { 'content-type': `${BINARY};json-header-size=0` });
    expect(multi.status).toBe(400);
    expect(multi.json().error).toMatch(/this model has 14 inputs/);
    const wrongSize = await invoke('resnet_pt_v0.tar.gz', Buffer.alloc(12), {
      'content-type': `${BINARY};json-header-size=0`,
    });
    expect(wrongSize.status).toBe(400);
    expect(wrongSize.json().error).toMatch(/expects 602112 bytes/);
  });

  test.each([
    [
      'count does not match the shape',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [3], data: [1, 2] }] },
      /input 'INPUT0': shape \[3\] needs 3 elements, "data" has 2/,
    ],
    [
      'unknown datatype',
      { inputs: [{ name: 'INPUT0', datatype: 'FLOAT', shape: [1], data: [1] }] },
      /input 'INPUT0': unknown datatype "FLOAT"/,
    ],
    [
      'datatype the model does not take',
      { inputs: [{ name: 'INPUT0', datatype: 'FP64', shape: [1], data: [1] }] },
      /inference input 'INPUT0' data-type is 'FP64', but model '.*' expects 'FP32'/,
    ],
    [
      'element of the wrong type',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [1, 'x'] }] },
      /input 'INPUT0': element 1 is "x", expected a number for FP32/,
    ],
    [
      'negative shape',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1], data: [1] }] },
      /input 'INPUT0': shape must be an array of non-negative integers/,
    ],
    ['no inputs', { inputs: [] }, /non-empty "inputs" array/],
    [
      'no data',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1] }] },
      /input 'INPUT0' has no "data"/,
    ],
    [
      'unknown output',
      { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }], outputs: [{ name: 'NOPE' }] },
      /model 'one' has no output 'NOPE'; its outputs are 'OUTPUT0'/,
    ],
  ])('400 naming the input: %s', async (_label, body, message) => {
    const r = await invoke('one', body);
    expect(r.status).toBe(400);
    expect(r.json().error).toMatch(message);
  });

  test('400 for malformed JSON and bad binary sizes', async () => {
    expect(
      (await invoke('one', '{"inputs": [', { 'content-type': 'application/json' })).json().error,
    ).toMatch(/not valid JSON/);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }],
      }),
    );
    const short = await invoke('one', Buffer.concat([header, Buffer.alloc(4)]), {
      'content-type': `${BINARY};json-header-size=${header.length}`,
    });
    expect(short.status).toBe(400);
    expect(short.json().error).toMatch(/runs past the end/);
    const extra = await invoke('one', Buffer.concat([header, Buffer.alloc(12)]), {
      'content-type': `${BINARY};json-header-size=${header.length}`,
    });
    expect(extra.json().error).toMatch(/4 bytes of binary data that no input claims/);
    const big = await invoke('one', Buffer.alloc(4), { 'content-type': `${BINARY};json-header-size=99` });
    expect(big.json().error).toMatch(/larger than the request body/);
  });

  test('regression: "shape" or a data element nested 10,000 deep is a 400, not a 500 stack overflow', async () => {
    const deepArray = `${'['.repeat(10000)}1${']'.repeat(10000)}`;
    const deepObject = `${'{"a":'.repeat(10000)}1${'}'.repeat(10000)}`;
    for (const [body, message] of [
      [
        `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":${deepArray},"data":[1]}]}`,
        /shape must be an array/,
      ],
      [
        `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[${deepArray}]}]}`,
        /nested more than 32 deep/,
      ],
      [
        `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[${deepObject}]}]}`,
        /element 0 is an object/,
      ],
    ] as const) {
      const r = await invoke('one', body, { 'content-type': 'application/json' });
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(message);
    }
  });

  test('404 for an unknown model, 415 for an unsupported content type', async () => {
    const nf = await invoke('nope', {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }],
    });
    expect(nf.status).toBe(404);
    expect(nf.json()).toEqual({ error: "model 'nope' is not loaded" });
    const um = await invoke('one', 'a,b', { 'content-type': 'text/csv' });
    expect(um.status).toBe(415);
    expect(um.json().error).toMatch(/unsupported content type 'text\/csv'/);
  });

  test('out of memory inside a request: an idle model on its GPU is evicted and the request tried once more', async () => {
    const before = stack.emulator.loadedModels().length;
    const failures = stack.emulator.counters(tritonNameFor('one')).inferFailures;
    const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }] };
    // More than the 64 MiB GPU has: evicting cannot help, so nothing is evicted and the answer is 507.
    stack.emulator.failNextInfer(
      tritonNameFor('one'),
      grpc.status.INTERNAL,
      'PyTorch execute failure: CUDA out of memory. Tried to allocate 1.00 GiB',
    );
    const huge = await invoke('one', body);
    expect(huge.status).toBe(507);
    expect(stack.emulator.loadedModels()).toHaveLength(before);
    // A little more than was free: one idle model goes, and the request is tried once more.
    stack.emulator.failNextInfer(
      tritonNameFor('one'),
      grpc.status.INTERNAL,
      'PyTorch execute failure: CUDA out of memory. Tried to allocate 2.00 MiB',
    );
    const r = await invoke('one', body);
    expect(r.status).toBe(200);
    expect(stack.emulator.counters(tritonNameFor('one')).inferFailures).toBe(failures + 2);
    expect(stack.emulator.loadedModels()).toHaveLength(before - 1);
    expect(stack.emulator.loadedModels()).toContain(tritonNameFor('one'));
  });

  test('502 when Triton fails the inference for its own reasons', async () => {
    stack.emulator.failNextInfer(tritonNameFor('one'), grpc.status.INTERNAL, 'Internal: backend crashed');
    const r = await invoke('one', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }] });
    expect(r.status).toBe(502);
    expect(r.json()).toEqual({ error: 'Internal: backend crashed' });
  });

  test('/invocations: TargetModel header, else the only or default model', async () => {
    const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [9] }] };
    const ambiguous = await request(stack.url, 'POST', '/invocations', body);
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.json().error).toMatch(/3 models are loaded/);
    // On the SageMaker Runtime route a missing TargetModel is the caller's mistake: a ValidationError.
    const runtime = await request(stack.url, 'POST', '/endpoints/ep/invocations', body);
    expect(runtime.status).toBe(400);
    expect(runtime.headers.get('x-amzn-errortype')).toBe('ValidationError');
    expect(runtime.json().Message).toMatch(/3 models are loaded/);
    const targeted = await request(stack.url, 'POST', '/invocations', body, {
      'X-Amzn-SageMaker-Target-Model': 'one',
    });
    expect(targeted.status).toBe(200);
    expect((targeted.json() as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([9]);
  });
});

describe('invoke limits and failures', () => {
  test('413 for a body over the limit, streamed or declared; other requests unaffected', async () => {
    const stack = await startStack({ env: { AGENT_MAX_BODY_BYTES: '1024', AGENT_INVOKE_TIMEOUT_MS: '300' } });
    try {
      const url = await sagemakerArtifact(stack.models, 'o', 'one', {
        config: identityConfig('one', [{ type: 'TYPE_FP32', dims: [-1] }]),
        versions: { '1': { 'model.py': 1 } },
      });
      expect((await request(stack.url, 'POST', '/models', { model_name: 'one', url })).status).toBe(200);
      const big = {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [400], data: new Array(400).fill(1.5) }],
      };
      const r = await request(stack.url, 'POST', '/models/one/invoke', big);
      expect(r.status).toBe(413);
      expect(r.json().error).toMatch(/larger than the limit of 1024 bytes/);
      // A chunked body without Content-Length is cut off by the running total.
      const stream = new ReadableStream({
        start(c) {
          for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(512));
          c.close();
        },
      });
      const chunked = await fetch(`${stack.url}/models/one/invoke`, {
        method: 'POST',
        body: stream,
        headers: { 'content-type': 'application/json' },
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(413);
      const ok = await request(stack.url, 'POST', '/models/one/invoke', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }],
      });
      expect(ok.status).toBe(200);
      // Deadline: an inference slower than AGENT_INVOKE_TIMEOUT_MS is 504.
      stack.emulator.setLatency({ inferMs: 1000 });
      const slow = await request(stack.url, 'POST', '/models/one/invoke', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }],
      });
      expect(slow.status).toBe(504);
      stack.emulator.setLatency({ inferMs: 0 });
      // Triton down: 503, and after Triton restarts empty the model is loaded again transparently.
      await stack.emulator.crash();
      const down = await request(stack.url, 'POST', '/models/one/invoke', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [1] }],
      });
      expect(down.status).toBe(503);
      // Callers learn Triton is away, not where it listens.
      expect(down.json().error).not.toMatch(/127\.0\.0\.1|localhost|:\d{4,5}\b/);
      await stack.emulator.restart();
      // SageMaker pings; /ping waits for the channel to reconnect.
      expect((await request(stack.url, 'GET', '/ping')).status).toBe(200);
      const back = await request(stack.url, 'POST', '/models/one/invoke', {
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: [2] }],
      });
      expect(back.status).toBe(200);
      expect((back.json() as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([2]);
      expect(stack.emulator.loadedModels()).toEqual([tritonNameFor('one')]);
    } finally {
      await stack.stop();
    }
  });
});
