/**
 * `npm run emulator -- --model-repository DIR --grpc-port N --metrics-port M`
 *
 * Starts the Triton emulator as its own process. Accepts tritonserver's flag names (`--flag=value` or
 * `--flag value`); flags that only matter to a real GPU server are accepted and ignored. The emulator is
 * a test double: it runs no models on a GPU.
 */
import { TritonEmulator, type TritonEmulatorOptions } from './emulator';

const IGNORED = new Set([
  'allow-http',
  'allow-grpc',
  'allow-gpu-metrics',
  'allow-cpu-metrics',
  'http-port',
  'strict-readiness',
  'log-verbose',
  'log-info',
  'log-warning',
  'log-error',
  'exit-on-error',
  'model-load-thread-count',
  'backend-config',
  'disable-auto-complete-config',
]);

function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    if (eq > 0) {
      out.set(a.slice(2, eq), a.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      out.set(a.slice(2), argv[++i]);
    } else {
      out.set(a.slice(2), 'true');
    }
  }
  return out;
}

function int(args: Map<string, string>, key: string): number | undefined {
  const v = args.get(key);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`--${key} must be a non-negative integer, got '${v}'`);
  return Number(v);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const repo = args.get('model-repository') ?? args.get('model-store');
  if (!repo) throw new Error('--model-repository is required');
  const mode = args.get('model-control-mode') ?? 'explicit';
  if (mode !== 'explicit') throw new Error(`only --model-control-mode=explicit is emulated, got '${mode}'`);
  const known = new Set([
    'model-repository',
    'model-store',
    'model-control-mode',
    'grpc-port',
    'grpc-address',
    'metrics-port',
    'metrics-address',
    'allow-metrics',
    'metrics-interval-ms',
    'gpu-memory-bytes',
    'gpu-baseline-bytes',
    'memory-release-lag-ms',
    'load-latency-ms',
    'unload-latency-ms',
    'infer-latency-ms',
    'footprint-factor',
  ]);
  for (const k of args.keys()) {
    if (!known.has(k) && !IGNORED.has(k)) throw new Error(`unknown flag --${k}`);
  }
  const options: TritonEmulatorOptions = {
    modelRepository: repo,
    host: args.get('grpc-address') ?? '127.0.0.1',
    grpcPort: int(args, 'grpc-port') ?? 8001,
    metricsPort: args.get('allow-metrics') === 'false' ? null : (int(args, 'metrics-port') ?? 8002),
    metricsIntervalMs: int(args, 'metrics-interval-ms'),
    gpuMemoryBytes: int(args, 'gpu-memory-bytes'),
    gpuBaselineBytes: int(args, 'gpu-baseline-bytes'),
    memoryReleaseLagMs: int(args, 'memory-release-lag-ms'),
    loadLatencyMs: int(args, 'load-latency-ms'),
    unloadLatencyMs: int(args, 'unload-latency-ms'),
    inferLatencyMs: int(args, 'infer-latency-ms'),
    footprintFactor: args.has('footprint-factor') ? Number(args.get('footprint-factor')) : undefined,
    log: (line) => console.log(line),
  };
  const emulator = await TritonEmulator.start(options);
  console.log(`Started GRPCInferenceService at ${emulator.grpcAddress}`);
  if (options.metricsPort !== null) console.log(`Started Metrics Service at ${emulator.metricsUrl}`);
  const shutdown = () => {
    void emulator.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  console.error(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
