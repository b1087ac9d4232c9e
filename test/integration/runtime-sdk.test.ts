import {
  InvokeEndpointCommand,
  ModelError,
  ModelNotReadyException,
  SageMakerRuntimeClient,
  ServiceUnavailable,
  ValidationError,
} from '@aws-sdk/client-sagemaker-runtime';
import { tritonNameFor } from '../../src/artifacts';
import { classifierScores } from '../support/triton-emulator';
import { identityConfig, resnetPtConfig } from '../support/model-repo';
import { nextEvent } from '../support/wait';
import {
  MiB,
  binaryRequest,
  launchPostArtifacts,
  request,
  sagemakerArtifact,
  startStack,
  type Stack,
} from '../support/agent-harness';

/** The real AWS SDK, pointed at the agent, as a local user would use it. */
describe('SageMaker Runtime InvokeEndpoint with @aws-sdk/client-sagemaker-runtime', () => {
  let stack: Stack;
  let client: SageMakerRuntimeClient;
  const item = new Float32Array(3 * 224 * 224).map((_, i) => Math.fround((i % 97) / 97));

  beforeAll(async () => {
    stack = await startStack({
      emulator: { gpuMemoryBytes: 64 * MiB },
      env: { AGENT_COLD_LOAD_WAIT_MS: '300' },
    });
    const { pt, trt } = await launchPostArtifacts(stack.models);
    for (const [name, url] of [
      ['resnet_pt_v0.tar.gz', pt],
      ['resnet_trt_v0.tar.gz', trt],
    ]) {
      expect((await request(stack.url, 'POST', '/models', { model_name: name, url })).status).toBe(200);
    }
    client = new SageMakerRuntimeClient({
      endpoint: stack.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      maxAttempts: 1,
    });
  });

  afterAll(async () => {
    client.destroy();
    await stack.stop();
  });

  const payload = (input: string) =>
    JSON.stringify({
      inputs: [{ name: input, shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(item) }],
    });

  test('invokes each launch-post model by TargetModel', async () => {
    for (const [target, input, output] of [
      ['resnet_pt_v0.tar.gz', 'INPUT__0', 'OUTPUT__0'],
      ['resnet_trt_v0.tar.gz', 'input', 'output'],
    ]) {
      const out = await client.send(
        new InvokeEndpointCommand({
          EndpointName: 'resnet-mme-gpu',
          TargetModel: target,
          ContentType: 'application/octet-stream',
          Accept: 'application/json',
          CustomAttributes: 'trace-id=abc',
          Body: payload(input),
        }),
      );
      expect(out.ContentType).toBe('application/json');
      expect(out.InvokedProductionVariant).toBe('AllTraffic');
      expect(out.CustomAttributes).toBe('trace-id=abc');
      const body = JSON.parse(Buffer.from(out.Body as Uint8Array).toString('utf8')) as {
        model_name: string;
        outputs: { name: string; data: number[] }[];
      };
      expect(body.model_name).toBe(target);
      expect(body.outputs[0].name).toBe(output);
      expect(body.outputs[0].data).toEqual(Array.from(classifierScores(item, 1000)));
    }
  });

  test('an unknown TargetModel raises ValidationError', async () => {
    const err = await client
      .send(
        new InvokeEndpointCommand({
          EndpointName: 'e',
          TargetModel: 'missing.tar.gz',
          ContentType: 'application/json',
          Body: '{}',
        }),
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).$metadata.httpStatusCode).toBe(400);
    expect((err as ValidationError).message).toBe("model 'missing.tar.gz' is not loaded");
  });

  test('a payload the model rejects raises ModelError with the original status', async () => {
    const err = await client
      .send(
        new InvokeEndpointCommand({
          EndpointName: 'e',
          TargetModel: 'resnet_pt_v0.tar.gz',
          ContentType: 'application/json',
          Body: JSON.stringify({
            inputs: [{ name: 'INPUT__0', shape: [1, 3, 224], datatype: 'FP32', data: [1] }],
          }),
        }),
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    const e = err as ModelError;
    expect(e.$metadata.httpStatusCode).toBe(424);
    expect(e.OriginalStatusCode).toBe(400);
    expect(JSON.parse(e.OriginalMessage as string).error).toMatch(
      /input 'INPUT__0': shape \[1,3,224\] needs 672 elements/,
    );
  });

  test('a model still loading raises ModelNotReadyException; Triton down raises ServiceUnavailable', async () => {
    const url = await sagemakerArtifact(stack.models, 'slowh', 'm', {
      config: identityConfig('m', [{ type: 'TYPE_FP32', dims: [1] }]),
      versions: { '1': { 'model.py': 1 } },
    });
    const release = stack.emulator.hangNextLoad(tritonNameFor('slow'));
    const held = nextEvent(stack.emulator.events, 'load-started', {
      filter: (m) => m === tritonNameFor('slow'),
      timeoutMs: 10_000,
      what: 'the load of slow in Triton',
    });
    const loading = request(stack.url, 'POST', '/models', { model_name: 'slow', url });
    await held;
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1], datatype: 'FP32', data: [1] }] });
    const invokeSlow = () =>
      client.send(
        new InvokeEndpointCommand({
          EndpointName: 'e',
          TargetModel: 'slow',
          ContentType: 'application/json',
          Body: body,
        }),
      );
    const err = await invokeSlow().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelNotReadyException);
    expect((err as ModelNotReadyException).$metadata.httpStatusCode).toBe(429);
    release();
    expect((await loading).status).toBe(200);
    const ok = await invokeSlow();
    expect(JSON.parse(Buffer.from(ok.Body as Uint8Array).toString()).outputs[0].data).toEqual([1]);

    await stack.emulator.crash();
    const down = await invokeSlow().catch((e: unknown) => e);

    expect(down).toBeInstanceOf(ServiceUnavailable);
    await stack.emulator.restart();
    expect((await request(stack.url, 'GET', '/ping')).status).toBe(200);
  });

  test('binary+json through the SDK', async () => {
    const req = binaryRequest(
      [{ name: 'INPUT__0', shape: [1, 3, 224, 224], datatype: 'FP32', raw: Buffer.from(item.buffer) }],
      ['OUTPUT__0'],
    );
    const out = await client.send(
      new InvokeEndpointCommand({
        EndpointName: 'e',
        TargetModel: 'resnet_pt_v0.tar.gz',
        ContentType: req.contentType,
        Body: req.body,
      }),
    );
    const m = /json-header-size=(\d+)/.exec(out.ContentType ?? '');
    expect(m).not.toBeNull();
    const tail = Buffer.from(out.Body as Uint8Array).subarray(Number(m?.[1]));
    expect(new Float32Array(tail.buffer.slice(tail.byteOffset, tail.byteOffset + tail.length))).toEqual(
      classifierScores(item, 1000),
    );
  });

  test('a resnet config with the launch post name still loads under its own Triton name', async () => {
    // Regression guard: both artifacts say name: "resnet"; neither is staged under that name.
    expect(stack.emulator.loadedModels()).not.toContain('resnet');
    expect(resnetPtConfig()).toContain('name: "resnet"');
  });
});
