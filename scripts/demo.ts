/**
 * `npm run demo`: the agent in front of the Triton emulator, with the SageMaker MME GPU launch post's two
 * ResNet-50 models loaded, and curl commands that work against it.
 *
 * The Triton here is the test emulator (no GPU needed; its "ResNet" computes a documented stand-in
 * function). To use a real Triton, start tritonserver with --model-control-mode=explicit and run the agent
 * with TRITON_GRPC_URL, TRITON_METRICS_URL and TRITON_MODEL_REPOSITORY pointing at it (see README).
 *
 * Flags: --port N (default 8080, 0 = any free port), --once (run the printed requests, check them, exit).
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Agent } from '../src/agent';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/observability';
import { TritonEmulator } from '../test/support/triton-emulator';

const args = process.argv.slice(2);
const USAGE = `usage: npm run demo [-- --port N] [-- --once]

Runs the agent in front of the Triton emulator (no GPU) with two models loaded, and prints curl commands
that load, list, invoke and unload models.
  --port N   the agent's port (default SAGEMAKER_BIND_TO_PORT or 8080; 0: any free port)
  --once     run the printed requests, check the answers, and exit`;
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const unknown = args.filter(
  (a, i) => a.startsWith('-') && a !== '--once' && a !== '--port' && args[i - 1] !== '--port',
);
if (unknown.length > 0) {
  console.error(`demo: unknown option '${unknown[0]}'\n\n${USAGE}`);
  process.exit(2);
}
const once = args.includes('--once');
const portArg = args.indexOf('--port');
const portText = portArg >= 0 ? (args[portArg + 1] ?? '') : (process.env.SAGEMAKER_BIND_TO_PORT ?? '8080');
const port = Number(portText);
const MiB = 1024 * 1024;
// The SDK's notice that it will need Node.js 22 is the SDK's documented opt-out; the image runs Node.js 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Undo steps run in reverse on exit, success or failure, so no temporary folder (~200 MB) is left behind. */
const cleanups: (() => Promise<unknown>)[] = [];

async function main(): Promise<void> {
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new Error(`--port must be a port number (0 picks a free one), got '${portText}'`);
  }
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'mme-demo-'));
  cleanups.push(() => fs.rm(root, { recursive: true, force: true }));
  const repository = path.join(root, 'triton-repository');
  const models = path.join(root, 'opt', 'ml', 'models');
  await fs.mkdir(repository, { recursive: true });

  // Lay the example models out as SageMaker extracts them: /opt/ml/models/<name>/model/resnet/...
  const examples = path.join(__dirname, '..', 'triton-models');
  const artifacts: [string, string, string, string][] = [
    ['resnet_pt_v0.tar.gz', 'resnet_pt', 'model.pt', 'INPUT__0'],
    ['resnet_trt_v0.tar.gz', 'resnet_trt', 'model.plan', 'input'],
  ];
  for (const [name, dir, file] of artifacts) {
    const dest = path.join(models, name, 'model', 'resnet');
    await fs.mkdir(path.join(dest, '1'), { recursive: true });
    await fs.copyFile(path.join(examples, dir, 'resnet', 'config.pbtxt'), path.join(dest, 'config.pbtxt'));
    // A stand-in for the ~100 MB weights file: the emulator sizes GPU memory from it.
    await fs.writeFile(path.join(dest, '1', file), Buffer.alloc(98 * MiB));
  }

  const emulator = await TritonEmulator.start({
    modelRepository: repository,
    gpuMemoryBytes: 16 * 1024 * MiB,
  });
  cleanups.push(() => emulator.stop());
  const config = loadConfig({
    ...process.env,
    SAGEMAKER_BIND_TO_PORT: String(port),
    TRITON_GRPC_URL: emulator.grpcAddress,
    TRITON_METRICS_URL: emulator.metricsUrl,
    TRITON_MODEL_REPOSITORY: repository,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  });
  const agent = new Agent(config, createLogger(config.logLevel));
  try {
    await agent.start();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new Error(
        `port ${port} is already in use; pick another with --port (npm run demo -- --port 8081), or --port 0 for any free port`,
        { cause: err },
      );
    }
    throw err;
  }
  cleanups.push(() => agent.stop(1000));
  const base = `http://127.0.0.1:${agent.port}`;

  for (const [name] of artifacts) {
    const res = await fetch(`${base}/models`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Amzn-SageMaker-Target-Model': name },
      body: JSON.stringify({ model_name: name, url: path.join(models, name, 'model') }),
    });
    if (res.status !== 200) throw new Error(`loading ${name} failed: ${res.status} ${await res.text()}`);
  }

  // Request bodies like the launch post's: a 1×3×224×224 FP32 image as KServe v2 JSON.
  const pixels = Array.from({ length: 3 * 224 * 224 }, (_, i) => Math.round(Math.sin(i) * 1000) / 1000);
  const requests: string[] = [];
  for (const [name, , , input] of artifacts) {
    const file = path.join(root, `${name.replace('.tar.gz', '')}-request.json`);
    await fs.writeFile(
      file,
      JSON.stringify({ inputs: [{ name: input, shape: [1, 3, 224, 224], datatype: 'FP32', data: pixels }] }),
    );
    requests.push(file);
  }

  const commands = [
    `curl -s -o /dev/null -w '%{http_code}\\n' ${base}/ping`,
    `curl -s ${base}/models; echo`,
    `curl -s -X POST ${base}/models/resnet_pt_v0.tar.gz/invoke -H 'Content-Type: application/octet-stream' --data-binary @${requests[0]} | head -c 300; echo`,
    `curl -s -X POST ${base}/endpoints/demo/invocations -H 'X-Amzn-SageMaker-Target-Model: resnet_trt_v0.tar.gz' -H 'Content-Type: application/json' --data-binary @${requests[1]} | head -c 300; echo`,
    `curl -s -X DELETE -o /dev/null -w '%{http_code}\\n' ${base}/models/resnet_trt_v0.tar.gz`,
  ];
  console.log(
    `\nAgent on ${base}, in front of the Triton emulator (a test double, not Triton) at ${emulator.grpcAddress}.`,
  );
  console.log(
    'Loaded resnet_pt_v0.tar.gz and resnet_trt_v0.tar.gz (both hold a model called "resnet").\nTry:\n',
  );
  for (const c of commands) console.log(`  ${c}`);

  if (once) {
    const check = async (p: string, init: RequestInit, expectStatus: number) => {
      const res = await fetch(base + p, init);
      if (res.status !== expectStatus)
        throw new Error(`${init.method ?? 'GET'} ${p}: ${res.status} ${await res.text()}`);
      return res;
    };
    await check('/ping', {}, 200);
    const listed = (await (await check('/models', {}, 200)).json()) as { models: unknown[] };
    if (listed.models.length !== 2) throw new Error('expected two models');
    for (const [i, [name]] of artifacts.entries()) {
      const body = await fs.readFile(requests[i]);
      const res = await check(
        '/endpoints/demo/invocations',
        {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', 'X-Amzn-SageMaker-Target-Model': name },
        },
        200,
      );
      const out = (await res.json()) as { outputs: { shape: number[] }[] };
      if (out.outputs[0].shape.join('x') !== '1x1000') throw new Error(`unexpected output from ${name}`);
    }
    await check('/models/resnet_trt_v0.tar.gz', { method: 'DELETE' }, 200);
    console.log('\ndemo: all requests answered as expected');
  } else {
    console.log('\nCtrl-C to stop.');
    await new Promise<void>((resolve) => (stopWaiting = resolve));
  }
}

async function cleanUp(): Promise<void> {
  for (const undo of cleanups.reverse()) await undo().catch(() => undefined);
  cleanups.length = 0;
}

/** Set while the demo waits for Ctrl-C; a signal before that (during start) cleans up and exits. */
let stopWaiting: (() => void) | undefined;
for (const [signal, status] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    if (stopWaiting) stopWaiting();
    else void cleanUp().then(() => process.exit(status));
  });
}

main().then(
  () => cleanUp(),
  async (err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    await cleanUp();
    process.exit(1);
  },
);
