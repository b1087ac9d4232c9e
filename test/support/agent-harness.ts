import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Agent } from '../../src/agent';
import { loadConfig } from '../../src/config';
import type { Clock } from '../../src/models';
import { createLogger, silentLogger } from '../../src/observability';
import { TritonEmulator, type TritonEmulatorOptions } from './triton-emulator';
import { resnetPtConfig, resnetTrtConfig, tempDir, writeModel, type ModelSpec } from './model-repo';

export interface Stack {
  emulator: TritonEmulator;
  agent: Agent;
  /** Triton's model repository. */
  repository: string;
  /** Where tests lay out artifacts, as SageMaker does under /opt/ml/models. */
  models: string;
  url: string;
  stop(): Promise<void>;
}

/** Starts the emulator and an agent wired to it, both on ephemeral loopback ports. */
export async function startStack(
  opts: {
    emulator?: Partial<TritonEmulatorOptions>;
    env?: Record<string, string>;
    /** Run the agent with its default settings (only where things are, plus `env`). */
    defaults?: boolean;
    /** The agent's clock (default: the system's). */
    clock?: Clock;
  } = {},
): Promise<Stack> {
  const root = await tempDir('mme-stack-');
  const repository = path.join(root.dir, 'repository');
  const models = path.join(root.dir, 'opt-ml-models');
  await fs.mkdir(repository);
  await fs.mkdir(models);
  // Metrics refresh quickly on both sides, so capacity decisions wait milliseconds, not Triton's 2 s.
  const emulator = await TritonEmulator.start({
    modelRepository: repository,
    metricsIntervalMs: 20,
    ...opts.emulator,
  });
  // The machine's nvidia-smi, for the agent to tell the emulated GPUs apart (their UUIDs are random).
  const bin = await tempDir('mme-bin-');
  const nvidiaSmi = await emulator.writeNvidiaSmi(bin.dir);
  const where = {
    AGENT_NVIDIA_SMI: nvidiaSmi,
    SAGEMAKER_BIND_TO_PORT: '0',
    AGENT_BIND_HOST: '127.0.0.1',
    TRITON_GRPC_URL: emulator.grpcAddress,
    TRITON_METRICS_URL: emulator.metricsUrl,
    TRITON_MODEL_REPOSITORY: repository,
  };
  const config = loadConfig(
    opts.defaults
      ? { ...where, ...opts.env }
      : {
          ...where,
          AGENT_UNLOAD_POLL_MS: '10',
          AGENT_GPU_HEADROOM_BYTES: '0',
          // With a margin over the emulator's interval: its timer drifts on a busy machine, as Triton's may.
          AGENT_METRICS_INTERVAL_MS: String(3 * (opts.emulator?.metricsIntervalMs ?? 20)),
          AGENT_CHURN_GUARD_MS: '0',
          ...opts.env,
        },
  );
  // AGENT_TEST_LOG=debug (or info, ...) shows the agent's log on stderr while debugging a test.
  const logger = process.env.AGENT_TEST_LOG
    ? createLogger(process.env.AGENT_TEST_LOG, false, process.stderr)
    : silentLogger();
  const agent = new Agent(config, logger, { clock: opts.clock });
  await agent.start();
  return {
    emulator,
    agent,
    repository,
    models,
    url: agent.url,
    stop: async () => {
      await agent.stop(1000);
      await emulator.stop();
      await root.cleanup();
      await bin.cleanup();
    },
  };
}

/**
 * Lays out an artifact the way SageMaker extracts it: `<models>/<hash>/model/` holding either the model
 * directory (`model/resnet/config.pbtxt`, as the launch post packs it) or, with `flat`, the config itself.
 */
export async function sagemakerArtifact(
  models: string,
  hash: string,
  dirName: string,
  spec: ModelSpec,
  flat = false,
): Promise<string> {
  const url = path.join(models, hash, 'model');
  await fs.mkdir(url, { recursive: true });
  if (flat) {
    const dir = await writeModel(path.join(models, hash), 'model', spec);
    return dir;
  }
  await writeModel(url, dirName, spec);
  return url;
}

export const MiB = 1024 * 1024;

/** The launch post's two artifacts: both hold a model directory called `resnet`. */
export async function launchPostArtifacts(models: string): Promise<{ pt: string; trt: string }> {
  const pt = await sagemakerArtifact(models, 'a1b2c3pt', 'resnet', {
    config: resnetPtConfig(),
    versions: { '1': { 'model.pt': MiB } },
  });
  const trt = await sagemakerArtifact(models, 'd4e5f6trt', 'resnet', {
    config: resnetTrtConfig(),
    versions: { '1': { 'model.plan': MiB } },
  });
  return { pt, trt };
}

export interface HttpResult {
  status: number;
  headers: Headers;
  body: Buffer;
  json: () => Record<string, unknown>;
}

/** One HTTP request to the agent. */
export async function request(
  base: string,
  method: string,
  p: string,
  body?: string | Buffer | object,
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  let payload: string | Buffer | undefined;
  const h: Record<string, string> = { ...headers };
  if (body !== undefined && !(typeof body === 'string') && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  } else {
    payload = body as string | Buffer | undefined;
  }
  const res = await fetch(base + p, { method, headers: h, body: payload });
  const buf = Buffer.from(await res.arrayBuffer());
  return {
    status: res.status,
    headers: res.headers,
    body: buf,
    json: () => JSON.parse(buf.toString('utf8')) as Record<string, unknown>,
  };
}

/** Names of directories in the repository (hidden ones excluded). */
export async function repositoryDirs(repository: string): Promise<string[]> {
  return (await fs.readdir(repository)).filter((d) => !d.startsWith('.')).sort();
}

/**
 * A KServe binary+json body: the JSON header (inputs sized by `binary_data_size`, outputs asked as binary)
 * followed by the raw tensors, and its content type.
 */
export function binaryRequest(
  inputs: { name: string; datatype: string; shape: number[]; raw: Buffer }[],
  binaryOutputs: string[] = [],
): { body: Buffer; contentType: string } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map((i) => ({
        name: i.name,
        shape: i.shape,
        datatype: i.datatype,
        parameters: { binary_data_size: i.raw.length },
      })),
      ...(binaryOutputs.length > 0
        ? { outputs: binaryOutputs.map((name) => ({ name, parameters: { binary_data: true } })) }
        : {}),
    }),
  );
  return {
    body: Buffer.concat([header, ...inputs.map((i) => i.raw)]),
    contentType: `application/vnd.sagemaker-triton.binary+json;json-header-size=${header.length}`,
  };
}
