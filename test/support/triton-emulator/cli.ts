/**
 * `npm run emulator -- --model-repository=DIR --grpc-port=N --metrics-port=M`
 *
 * The Triton emulator as its own process, a stand-in for `tritonserver` (`test/support/bin/tritonserver`
 * puts it on PATH under that name). It takes tritonserver's flags the way tritonserver does
 * (`--flag=value` or `--flag value`; every option takes a value), fails like tritonserver on an
 * unknown option, a missing value or a bad boolean or number, prints tritonserver's startup lines
 * ("Started GRPCInferenceService at 0.0.0.0:8001", "Started Metrics Service at 0.0.0.0:8002") and
 * stops on SIGTERM or SIGINT. Flags that only matter to a real GPU server are accepted and ignored. The
 * emulator is a test double: it runs no models on a GPU.
 */
import * as fs from 'node:fs/promises';
import { TritonEmulator, type TritonEmulatorOptions } from './emulator';

/** tritonserver options that change nothing the emulator models; accepted (value checked) and ignored. */
const IGNORED = new Set([
  'allow-http',
  'allow-grpc',
  'allow-cpu-metrics',
  'allow-sagemaker',
  'allow-vertex-ai',
  'http-port',
  'http-address',
  'http-thread-count',
  'http-header-forward-pattern',
  'reuse-http-port',
  'reuse-grpc-port',
  'grpc-infer-allocation-pool-size',
  'grpc-use-ssl',
  'grpc-keepalive-time',
  'grpc-keepalive-timeout',
  'grpc-keepalive-permit-without-calls',
  'grpc-http2-max-pings-without-data',
  'grpc-http2-min-recv-ping-interval-without-data',
  'grpc-http2-max-ping-strikes',
  'grpc-infer-response-compression-level',
  'sagemaker-port',
  'sagemaker-safe-port-range',
  'sagemaker-thread-count',
  'metrics-config',
  'strict-model-config',
  'strict-readiness',
  'exit-on-error',
  'exit-timeout-secs',
  'id',
  'log-verbose',
  'log-info',
  'log-warning',
  'log-error',
  'log-format',
  'log-file',
  'model-load-thread-count',
  'model-load-retry-count',
  'model-namespacing',
  'backend-directory',
  'repoagent-directory',
  'host-policy',
  'pinned-memory-pool-byte-size',
  'cuda-memory-pool-byte-size',
  'cuda-virtual-address-size',
  'min-supported-compute-capability',
  'buffer-manager-thread-count',
  'rate-limit',
  'rate-limit-resource',
  'model-load-gpu-limit',
  'response-cache-byte-size',
  'cache-config',
  'cache-directory',
  'trace-config',
]);

/** tritonserver options the emulator implements, with what each does here. */
const EMULATED_HELP: Record<string, string> = {
  'model-repository': 'the model repository folder (required; it must exist)',
  'model-store': 'the same as --model-repository',
  'model-control-mode': 'explicit only (the mode the agent uses; the default here)',
  'grpc-port': 'gRPC port (default 8001; 0 picks a free one)',
  'grpc-address': 'gRPC address (default 0.0.0.0)',
  'metrics-port': 'Prometheus /metrics port (default 8002; 0 picks a free one)',
  'metrics-address': 'accepted; metrics listen beside gRPC',
  'allow-metrics': 'false: no metrics endpoint',
  'metrics-interval-ms': 'how often the GPU readings in /metrics are refreshed (default 2000)',
  'allow-gpu-metrics': 'false: no nv_gpu_* series (the agent then has no GPU readings)',
  'backend-config': '<backend>,triton-backend-memory-tracker=true: memory_usage for tensorrt/onnxruntime',
  'disable-auto-complete-config': "true: configs are taken as written (no backend's auto-complete)",
};
const EMULATED = new Set(Object.keys(EMULATED_HELP));

/** The emulator's own knobs (not tritonserver's): GPU count and size, latencies. */
const EMULATOR_ONLY_HELP: Record<string, string> = {
  'gpu-count': 'emulated GPUs (default 1)',
  'gpu-memory-bytes': 'memory per GPU (default 16 GiB)',
  'gpu-baseline-bytes': "memory each GPU's CUDA context takes before any model",
  'memory-release-lag-ms': 'how long freed memory still shows as used in the readings',
  'load-latency-ms': 'time each load takes (a model may set emulator_load_ms per instance)',
  'model-load-thread-count': 'loads run at once (4, as in Triton)',
  'unload-latency-ms': 'time each unload takes',
  'infer-latency-ms': 'time each inference takes (a model may set emulator_infer_ms)',
  'footprint-factor': "a model's GPU footprint as a multiple of its files' size",
  'failed-read-every': 'every Nth metrics read fails, as DCGM reads sometimes do',
};
const EMULATOR_ONLY = new Set(Object.keys(EMULATOR_ONLY_HELP));

/** Real tritonserver options whose behaviour the emulator does not have: refused rather than faked. */
const NOT_EMULATED = new Set(['load-model', 'repository-poll-secs']);

const BOOLEAN = new Set([
  'allow-http',
  'allow-grpc',
  'allow-metrics',
  'allow-gpu-metrics',
  'allow-cpu-metrics',
  'allow-sagemaker',
  'allow-vertex-ai',
  'strict-model-config',
  'strict-readiness',
  'disable-auto-complete-config',
  'exit-on-error',
  'log-info',
  'log-warning',
  'log-error',
  'reuse-http-port',
  'reuse-grpc-port',
  'grpc-use-ssl',
  'model-namespacing',
]);

/** A failure tritonserver reports with its usage text (its ParseException path), exit status 1. */
class UsageError extends Error {}

/** glog-style prefix of tritonserver's log lines: `I1201 04:22:47.535462 1234 file.cc:123] `. */
function logPrefix(file: string): string {
  const d = new Date();
  const p2 = (n: number) => String(n).padStart(2, '0');
  const micros = String(d.getUTCMilliseconds() * 1000).padStart(6, '0');
  return (
    `I${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:` +
    `${p2(d.getUTCSeconds())}.${micros} ${process.pid} ${file}] `
  );
}

/** Parses tritonserver's command line: every option takes a value, `--flag=value` or `--flag value`. */
function parseArgs(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  backendConfigs.length = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || a === '--') throw new UsageError(`Unexpected argument: ${a}`);
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const known = IGNORED.has(key) || EMULATED.has(key) || EMULATOR_ONLY.has(key) || NOT_EMULATED.has(key);
    if (!known) throw new UsageError(`tritonserver: unrecognized option '--${key}'`);
    if (NOT_EMULATED.has(key))
      throw new UsageError(`--${key} is a tritonserver option the emulator does not emulate`);
    let value: string;
    if (eq > 0) {
      value = a.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`tritonserver: option '--${key}' requires an argument`);
      value = argv[++i];
    }
    if (BOOLEAN.has(key) && !/^(true|false|1|0|on|off|yes|no)$/i.test(value)) {
      throw new UsageError(`invalid value for bool option: ${value}`);
    }
    if (key === 'backend-config') backendConfigs.push(value);
    out.set(key, value);
  }
  return out;
}

/** Every `--backend-config` value, in order (tritonserver takes the option many times). */
const backendConfigs: string[] = [];

/**
 * The backends whose memory tracker `--backend-config` turns on: `<backend>,triton-backend-memory-tracker=true`
 * for one, or the global form without a backend name for all (server command_line_parser.cc; backend
 * device_memory_tracker.h). Only tensorrt and onnxruntime report memory at all.
 */
function memoryTracker(values: readonly string[]): ('tensorrt' | 'onnxruntime')[] {
  const on = new Set<'tensorrt' | 'onnxruntime'>();
  for (const v of values) {
    const m = /^(?:([^,=]+),)?triton-backend-memory-tracker=(.*)$/.exec(v);
    if (!m) continue;
    const enabled = /^(true|1|on|yes)$/i.test(m[2]);
    for (const b of m[1] === undefined ? (['tensorrt', 'onnxruntime'] as const) : [m[1]])
      if (b === 'tensorrt' || b === 'onnxruntime') {
        if (enabled) on.add(b);
        else on.delete(b);
      }
  }
  return [...on];
}

function int(args: Map<string, string>, key: string): number | undefined {
  const v = args.get(key);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v))
    throw new UsageError(`invalid value for --${key}: '${v}' is not a non-negative integer`);
  return Number(v);
}

const isTrue = (v: string | undefined) => v !== undefined && /^(true|1|on|yes)$/i.test(v);
const isFalse = (v: string | undefined) => v !== undefined && /^(false|0|off|no)$/i.test(v);

/** `--help`: what the emulator takes, tritonserver's options first, then its own knobs. */
function help(): string {
  const list = (flags: Record<string, string>) =>
    Object.entries(flags)
      .map(([n, what]) => `  --${`${n} VALUE`.padEnd(36)} ${what}`)
      .join('\n');
  return [
    'usage: npm run emulator -- --model-repository <dir> [options]   (a Triton stand-in for tests and the demo)',
    '',
    "tritonserver's options it implements:",
    list(EMULATED_HELP),
    '',
    'its own knobs (not tritonserver options):',
    list(EMULATOR_ONLY_HELP),
    '',
    `other tritonserver options are accepted and have no effect, except ${[...NOT_EMULATED].map((n) => `--${n}`).join(', ')}, which are refused.`,
    "A model's config.pbtxt may set parameters emulator_gpu_bytes, emulator_memory_factor, emulator_growth_bytes,",
    'emulator_load_ms, emulator_infer_ms and emulator_behaviour (docs/emulator.md).',
  ].join('\n');
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(help());
    process.exit(0);
  }
  let args: Map<string, string>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(err.message);
    console.error('Usage: tritonserver [options]');
    console.error(
      "  (the Triton emulator accepts tritonserver's options; see test/support/triton-emulator/cli.ts)",
    );
    process.exit(1);
  }
  const repo = args.get('model-repository') ?? args.get('model-store');
  if (!repo) {
    console.error('error: creating server: Invalid argument - --model-repository must be specified');
    process.exit(1);
  }
  // A repository that is not there stops tritonserver at start: core's LocalFileSystem::IsDirectory
  // (src/filesystem/implementations/local.h) answers INTERNAL "failed to stat file <path>" when stat
  // fails, and the server prints it as "error: creating server: ..." (users' logs: server #1931, #4376).
  const exists = await fs.stat(repo).then(
    () => true,
    () => false,
  );
  if (!exists) {
    console.error(`error: creating server: Internal - failed to stat file ${repo}`);
    process.exit(1);
  }
  // tritonserver's default is `none` (load everything at start), which the emulator does not implement;
  // without the flag it behaves as `explicit`, the mode the agent always asks for.
  const mode = args.get('model-control-mode') ?? 'explicit';
  if (mode !== 'explicit') {
    console.error(
      `error: creating server: Invalid argument - the emulator implements --model-control-mode=explicit only, got '${mode}'`,
    );
    process.exit(1);
  }
  const host = args.get('grpc-address') ?? '0.0.0.0';
  const options: TritonEmulatorOptions = {
    modelRepository: repo,
    host,
    grpcPort: int(args, 'grpc-port') ?? 8001,
    metricsPort: isFalse(args.get('allow-metrics')) ? null : (int(args, 'metrics-port') ?? 8002),
    metricsIntervalMs: int(args, 'metrics-interval-ms'),
    gpuCount: int(args, 'gpu-count'),
    gpuMemoryBytes: int(args, 'gpu-memory-bytes'),
    gpuBaselineBytes: int(args, 'gpu-baseline-bytes'),
    memoryReleaseLagMs: int(args, 'memory-release-lag-ms'),
    loadLatencyMs: int(args, 'load-latency-ms'),
    modelLoadThreadCount: int(args, 'model-load-thread-count'),
    unloadLatencyMs: int(args, 'unload-latency-ms'),
    inferLatencyMs: int(args, 'infer-latency-ms'),
    footprintFactor: args.has('footprint-factor') ? Number(args.get('footprint-factor')) : undefined,
    failedReadEvery: int(args, 'failed-read-every'),
    gpuMetrics: !isFalse(args.get('allow-gpu-metrics')),
    memoryTracker: memoryTracker(backendConfigs),
    autoCompleteConfig: !isTrue(args.get('disable-auto-complete-config')),
    log: (line) => console.log(logPrefix('model_lifecycle.cc:0') + line),
  };
  if (options.gpuCount === 0)
    throw new UsageError('invalid value for --gpu-count: the emulated server has at least one GPU');
  let emulator: TritonEmulator;
  try {
    emulator = await TritonEmulator.start(options);
  } catch (err) {
    // tritonserver's words when a port is taken.
    console.error(`error: creating server: Internal - failed to start server: ${(err as Error).message}`);
    process.exit(1);
  }
  console.log(logPrefix('grpc_server.cc:2463') + `Started GRPCInferenceService at ${emulator.grpcAddress}`);
  if (isTrue(args.get('allow-http') ?? 'true')) {
    console.log(logPrefix('http_server.cc:4697') + 'HTTP endpoint is not emulated; use gRPC');
  }
  if (options.metricsPort !== null) {
    const metrics = new URL(emulator.metricsUrl);
    console.log(logPrefix('http_server.cc:362') + `Started Metrics Service at ${metrics.host}`);
  }
  let stopping = false;
  const shutdown = (signal: number) => {
    if (stopping) return;
    stopping = true;
    console.log(logPrefix('main.cc:290') + `Signal (${signal}) received.`);
    void emulator.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown(15));
  process.on('SIGINT', () => shutdown(2));
}

main().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
