/**
 * Every setting of the agent, read once from the environment at start, validated, with its default and a
 * one-line meaning. SageMaker's own variable names where SageMaker has one. The README's settings table is
 * generated from SETTINGS (`npm run readme-settings`), so the two cannot drift.
 */

export interface AgentConfig {
  port: number;
  host: string;
  multiModel: boolean;
  defaultModelName: string | undefined;
  singleModelDir: string;
  tritonGrpcUrl: string;
  tritonMetricsUrl: string;
  modelRepository: string;
  stagingDir: string;
  stageMode: 'symlink' | 'copy';
  maxBodyBytes: number;
  invokeTimeoutMs: number;
  loadTimeoutMs: number;
  unloadTimeoutMs: number;
  unloadDrainTimeoutMs: number;
  unloadPollMs: number;
  listPageSize: number;
  cacheDir: string;
  cacheBytes: number;
  modelDataUrl: string | undefined;
  awsRegion: string | undefined;
  s3Endpoint: string | undefined;
  s3ForcePathStyle: boolean;
  s3MaxAttempts: number;
  s3ResumeAttempts: number;
  s3StallTimeoutMs: number;
  maxArtifactBytes: number;
  maxArtifactEntries: number;
  fetchConcurrency: number;
  fetchStallTimeoutMs: number;
  fetchDeadlineMs: number;
  fetchMinBytesPerSec: number;
  fetchRateWindowMs: number;
  coldLoadWaitMs: number;
  failureTtlMs: number;
  progressLogMs: number;
  evictionPolicy: 'adaptive' | 'gdsf' | 'gdsf-aged' | 'lru' | 'none';
  gpuHeadroomBytes: number;
  maxResidentModels: number;
  footprintFactor: number;
  metricsIntervalMs: number;
  oomRetries: number;
  releaseWaitMs: number;
  firstSampleWaitMs: number;
  churnGuardMs: number;
  idleUnloadMs: number;
  gpuPlacement: 'adaptive' | 'pack' | 'triton-default';
  artifactGpus: 'respect' | 'ignore';
  scalePeriodMs: number;
  accessLogFile: string | undefined;
  accessLogMaxBytes: number;
  accessLogFiles: number;
  logLevel: string;
  tritonManaged: boolean;
  nvidiaSmiBin: string;
  cudaVisibleDevices: string | undefined;
  tritonServerBin: string;
  tritonServerArgs: string[] | undefined;
  tritonMemoryTracker: boolean;
  tritonMetricsIntervalMs: number;
  tritonStartupTimeoutMs: number;
  tritonStopGraceMs: number;
  tritonRestartBackoffMs: number;
  tritonRestartMaxBackoffMs: number;
  drainTimeoutMs: number;
  maxJsonResponseBytes: number;
  metricsModelLabels: number;
  cloudwatchEmf: boolean;
  cloudwatchEmfNamespace: string;
  cloudwatchEmfIntervalMs: number;
}

type Parser<T> = (raw: string, name: string) => T;

interface Setting<K extends keyof AgentConfig> {
  key: K;
  env: string;
  meaning: string;
  /** Default as written in the environment; undefined = required or optional as `required` says. */
  fallback?: string;
  required?: boolean;
  parse: Parser<AgentConfig[K]>;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> =>
  (raw, name) => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got '${raw}'`);
    const n = Number(raw.trim());
    if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };

const boolean: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got '${raw}'`);
};

const text: Parser<string> = (raw) => raw.trim();

const optionalText: Parser<string | undefined> = (raw) => (raw.trim() === '' ? undefined : raw.trim());

const hostPort: Parser<string> = (raw, name) => {
  const v = raw.trim().replace(/^grpc:\/\//, '');
  if (!/^[^\s/:]+:\d{1,5}$/.test(v) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(v)) {
    throw new ConfigError(`${name} must be host:port (e.g. 127.0.0.1:8001), got '${raw}'`);
  }
  return v;
};

const httpUrl: Parser<string> = (raw, name) => {
  try {
    const u = new URL(raw.trim());
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
    return u.toString();
  } catch {
    throw new ConfigError(`${name} must be an http:// URL, got '${raw}'`);
  }
};

const absolutePath: Parser<string> = (raw, name) => {
  const v = raw.trim();
  if (!v.startsWith('/')) throw new ConfigError(`${name} must be an absolute path, got '${raw}'`);
  return v.replace(/\/+$/, '') || '/';
};

const optionalHttpUrl: Parser<string | undefined> = (raw, name) =>
  raw.trim() === '' ? undefined : httpUrl(raw, name);

const modelDataUrl: Parser<string | undefined> = (raw, name) => {
  const v = raw.trim();
  if (v === '') return undefined;
  if (/^s3:\/\/[^/]+(\/.*)?$/.test(v) || /^file:\/\/\/.+/.test(v)) return v.endsWith('/') ? v : `${v}/`;
  throw new ConfigError(`${name} must be s3://bucket/prefix/ or file:///dir/, got '${raw}'`);
};

/**
 * A command line's words as a POSIX shell splits them (no expansion): blanks separate words, single quotes
 * keep everything literally, double quotes keep blanks (a backslash escapes `"` and `\\` inside them, any
 * character outside quotes). An unterminated quote is an error rather than a guess.
 */
export const shellWords: Parser<string[] | undefined> = (raw, name) => {
  const words: string[] = [];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word = (word ?? '') + c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && (raw[i + 1] === '"' || raw[i + 1] === '\\')) word = (word ?? '') + raw[++i];
      else word = (word ?? '') + c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < raw.length) {
      word = (word ?? '') + raw[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) throw new ConfigError(`${name} has an unterminated ${quote} quote: ${raw}`);
  if (word !== undefined) words.push(word);
  return words.length === 0 ? undefined : words;
};

const positiveNumber: Parser<number> = (raw, name) => {
  const n = Number(raw.trim());
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${name} must be a positive number, got '${raw}'`);
  return n;
};

const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw, name) => {
    const v = raw.trim() as T;
    if (!values.includes(v))
      throw new ConfigError(`${name} must be one of ${values.join(', ')}, got '${raw}'`);
    return v;
  };

export const SETTINGS: { [K in keyof AgentConfig]: Setting<K> }[keyof AgentConfig][] = [
  {
    key: 'port',
    env: 'SAGEMAKER_BIND_TO_PORT',
    meaning: 'HTTP port of the SageMaker routes',
    fallback: '8080',
    parse: integer(0, 65535),
  },
  {
    key: 'host',
    env: 'AGENT_BIND_HOST',
    meaning: 'address the HTTP server listens on',
    fallback: '0.0.0.0',
    parse: text,
  },
  {
    key: 'multiModel',
    env: 'SAGEMAKER_MULTI_MODEL',
    meaning: 'multi-model mode (SageMaker sets true for MME)',
    fallback: 'true',
    parse: boolean,
  },
  {
    key: 'defaultModelName',
    env: 'SAGEMAKER_TRITON_DEFAULT_MODEL_NAME',
    meaning: 'model served by single-model /invocations (else the only loaded model)',
    parse: optionalText,
  },
  {
    key: 'singleModelDir',
    env: 'AGENT_SINGLE_MODEL_DIR',
    meaning:
      'single-model mode (SAGEMAKER_MULTI_MODEL=false): where SageMaker extracted the model; its folder named by SAGEMAKER_TRITON_DEFAULT_MODEL_NAME (or its only folder) is loaded at start',
    fallback: '/opt/ml/model',
    parse: absolutePath,
  },
  {
    key: 'tritonGrpcUrl',

    env: 'TRITON_GRPC_URL',
    meaning: "Triton's gRPC address, host:port",
    fallback: '127.0.0.1:8001',
    parse: hostPort,
  },
  {
    key: 'tritonMetricsUrl',
    env: 'TRITON_METRICS_URL',
    meaning: "Triton's Prometheus endpoint",
    fallback: 'http://127.0.0.1:8002/metrics',
    parse: httpUrl,
  },
  {
    key: 'modelRepository',
    env: 'TRITON_MODEL_REPOSITORY',
    meaning: 'the repository Triton was started with; the agent stages models into it',
    required: true,
    parse: absolutePath,
  },
  {
    key: 'stagingDir',
    env: 'AGENT_STAGING_DIR',
    meaning: 'where models are assembled before an atomic rename into the repository (same filesystem)',
    fallback: '<TRITON_MODEL_REPOSITORY>/.staging',
    parse: absolutePath,
  },
  {
    key: 'stageMode',
    env: 'AGENT_STAGE_MODE',
    meaning: 'symlink version directories to the source, or copy them',
    fallback: 'symlink',
    parse: oneOf('symlink', 'copy'),
  },
  {
    key: 'maxBodyBytes',
    env: 'AGENT_MAX_BODY_BYTES',
    meaning:
      "largest request body accepted (413 above): SageMaker's real-time invocations carry at most 6 MB; raise it for larger local requests (Triton's own HTTP limit is 64 MiB)",
    fallback: String(8 * 1024 * 1024),
    parse: integer(1),
  },
  {
    key: 'invokeTimeoutMs',
    env: 'AGENT_INVOKE_TIMEOUT_MS',
    meaning: "deadline of one inference (SageMaker's own limit is 60 s)",
    fallback: '60000',
    parse: integer(1),
  },
  {
    key: 'loadTimeoutMs',
    env: 'AGENT_LOAD_TIMEOUT_MS',
    meaning: 'deadline of one Triton model load',
    fallback: '600000',
    parse: integer(1),
  },
  {
    key: 'unloadTimeoutMs',
    env: 'AGENT_UNLOAD_TIMEOUT_MS',
    meaning: 'how long DELETE waits for Triton to report the model unloaded (SageMaker waits 360 s)',
    fallback: '350000',
    parse: integer(1),
  },
  {
    key: 'unloadDrainTimeoutMs',
    env: 'AGENT_UNLOAD_DRAIN_TIMEOUT_MS',
    meaning: "how long DELETE waits for the model's in-flight invocations before unloading anyway",
    fallback: '60000',
    parse: integer(0),
  },
  {
    key: 'unloadPollMs',
    env: 'AGENT_UNLOAD_POLL_MS',
    meaning: 'interval between RepositoryIndex polls while waiting for an unload',
    fallback: '100',
    parse: integer(1),
  },
  {
    key: 'listPageSize',
    env: 'AGENT_LIST_PAGE_SIZE',
    meaning: 'GET /models page size when the caller gives no max_results',
    fallback: '1000',
    parse: integer(1),
  },
  {
    key: 'cacheDir',
    env: 'MODEL_CACHE_DIR',
    meaning: 'where unpacked artifacts are kept (Triton must see the same path: staged models link into it)',
    fallback: '<TRITON_MODEL_REPOSITORY>/.cache',
    parse: absolutePath,
  },
  {
    key: 'cacheBytes',
    env: 'MODEL_CACHE_BYTES',
    meaning: 'disk budget of the artifact cache; unused artifacts are removed least recently used first',
    fallback: String(20 * 1024 ** 3),
    parse: integer(1),
  },
  {
    key: 'modelDataUrl',
    env: 'MODEL_DATA_URL',
    meaning:
      "s3://bucket/prefix/ or file:///dir/: invoking an unknown model name loads <prefix><name> (SageMaker's ModelDataUrl)",
    parse: modelDataUrl,
  },
  {
    key: 'awsRegion',
    env: 'AWS_REGION',
    meaning:
      "region of the S3 bucket (else the AWS SDK's chain: AWS_DEFAULT_REGION, profile); SageMaker sets it",
    parse: optionalText,
  },
  {
    key: 's3Endpoint',
    env: 'AWS_ENDPOINT_URL_S3',
    meaning:
      "a custom S3 endpoint (MinIO, a local store); credentials and region come from the AWS SDK's standard chain",
    parse: optionalHttpUrl,
  },
  {
    key: 's3ForcePathStyle',
    env: 'S3_FORCE_PATH_STYLE',
    meaning: 'path-style S3 URLs, which MinIO-like stores need',
    fallback: 'false',
    parse: boolean,
  },
  {
    key: 's3MaxAttempts',
    env: 'AGENT_S3_MAX_ATTEMPTS',
    meaning: 'attempts per S3 request (throttling, 5xx and connection errors are retried with backoff)',
    fallback: '5',
    parse: integer(1, 20),
  },
  {
    key: 's3ResumeAttempts',
    env: 'AGENT_S3_RESUME_ATTEMPTS',
    meaning:
      'times a download that breaks off or stalls tries again: from where it stopped when the object is pinned (VersionId, or a strong ETag with If-Match), else from byte 0',
    fallback: '5',
    parse: integer(0, 100),
  },
  {
    key: 's3StallTimeoutMs',
    env: 'AGENT_S3_STALL_TIMEOUT_MS',
    meaning: 'a download that receives nothing for this long is resumed',
    fallback: '30000',
    parse: integer(1),
  },
  {
    key: 'maxArtifactBytes',
    env: 'AGENT_MAX_ARTIFACT_BYTES',
    meaning: 'largest unpacked artifact (counted while unpacking; stops tar bombs)',
    fallback: String(64 * 1024 ** 3),
    parse: integer(1),
  },
  {
    key: 'maxArtifactEntries',
    env: 'AGENT_MAX_ARTIFACT_ENTRIES',
    meaning: 'most entries one archive may hold',
    fallback: '100000',
    parse: integer(1),
  },
  {
    key: 'fetchConcurrency',
    env: 'AGENT_FETCH_CONCURRENCY',
    meaning: 'artifacts downloaded at once (more wait their turn)',
    fallback: '4',
    parse: integer(1, 64),
  },
  {
    key: 'fetchStallTimeoutMs',
    env: 'AGENT_FETCH_STALL_TIMEOUT_MS',
    meaning:
      'a download or local read that receives nothing for this long fails, freeing its fetch slot (S3 downloads first resume after AGENT_S3_STALL_TIMEOUT_MS)',
    fallback: '120000',
    parse: integer(1),
  },
  {
    key: 'fetchDeadlineMs',
    env: 'AGENT_FETCH_DEADLINE_MS',
    meaning:
      'a download (unpacking and restarts included) still running this long after it got its fetch slot is stopped with a retryable 503, freeing the slot (0: no deadline)',
    fallback: '1800000',
    parse: integer(0),
  },
  {
    key: 'fetchMinBytesPerSec',
    env: 'AGENT_FETCH_MIN_BYTES_PER_SEC',
    meaning:
      'a download averaging fewer bytes per second than this over AGENT_FETCH_RATE_WINDOW_MS (checked once it has run that long) is stopped with a retryable 503, freeing its fetch slot (0: no minimum)',
    fallback: String(1024 * 1024),
    parse: integer(0),
  },
  {
    key: 'fetchRateWindowMs',
    env: 'AGENT_FETCH_RATE_WINDOW_MS',
    meaning:
      'window the minimum download rate is averaged over, and the grace before its first check; keep it above AGENT_S3_STALL_TIMEOUT_MS so one resumed stall does not stop a fast download',
    fallback: '60000',
    parse: integer(100),
  },
  {
    key: 'coldLoadWaitMs',
    env: 'AGENT_COLD_LOAD_WAIT_MS',
    meaning:
      "how long an invocation waits for its model to load, and a load for room on the GPU, before a retryable not-ready answer or a 507 (SageMaker's is 60 s); a load already started goes on",
    fallback: '60000',
    parse: integer(0),
  },
  {
    key: 'failureTtlMs',
    env: 'AGENT_FAILURE_TTL_MS',
    meaning:
      'how long a failed lazy load is remembered and answered at once (a changed artifact is retried sooner)',
    fallback: '30000',
    parse: integer(1000),
  },
  {
    key: 'progressLogMs',
    env: 'AGENT_PROGRESS_LOG_MS',
    meaning: 'interval of progress logs during downloads',
    fallback: '5000',
    parse: integer(100),
  },
  {
    key: 'evictionPolicy',
    env: 'AGENT_EVICTION_POLICY',
    meaning:
      'which resident models leave the GPU to make room: adaptive (shadow-tested experts), gdsf-aged, gdsf, lru, or none (no eviction)',
    fallback: 'adaptive',
    parse: oneOf('adaptive', 'gdsf-aged', 'gdsf', 'lru', 'none'),
  },
  {
    key: 'gpuHeadroomBytes',
    env: 'AGENT_GPU_HEADROOM_BYTES',
    meaning: 'GPU memory always kept free for activations and allocator caches',
    fallback: String(1024 ** 3),
    parse: integer(0),
  },
  {
    key: 'maxResidentModels',
    env: 'AGENT_MAX_RESIDENT_MODELS',
    meaning: 'most models on the GPU at once (0: no limit but memory)',
    fallback: '0',
    parse: integer(0),
  },
  {
    key: 'footprintFactor',
    env: 'AGENT_FOOTPRINT_FACTOR',
    meaning: "estimated GPU bytes = unpacked artifact bytes × this, until the model's load has been measured",
    fallback: '1.25',
    parse: positiveNumber,
  },
  {
    key: 'metricsIntervalMs',
    env: 'AGENT_METRICS_INTERVAL_MS',
    meaning:
      "how often the agent reads Triton's GPU metrics in the background to correct its accounting, and how stale a sample may be (Triton's --metrics-interval-ms plus a margin); no request waits for a sample",
    fallback: '2500',
    parse: integer(1),
  },
  {
    key: 'oomRetries',
    env: 'AGENT_OOM_RETRIES',
    meaning: 'times a load that Triton fails out of memory evicts more and retries before answering 507',
    fallback: '2',
    parse: integer(0, 10),
  },
  {
    key: 'releaseWaitMs',
    env: 'AGENT_GPU_RELEASE_WAIT_MS',
    meaning:
      'how long memory an unload released may take to show as free (allocators return it late): a load refused for lack of memory this soon after a release is retried with backoff before more models are evicted for it',
    fallback: '2000',
    parse: integer(0),
  },
  {
    key: 'firstSampleWaitMs',
    env: 'AGENT_FIRST_SAMPLE_WAIT_MS',
    meaning:
      "how long loads wait, from Triton's start, for its first GPU sample (so each GPU's own use is known before anything is placed on it); after that they go ahead on the accounting alone",
    fallback: '10000',
    parse: integer(0),
  },
  {
    key: 'churnGuardMs',
    env: 'AGENT_CHURN_GUARD_MS',
    meaning:
      'models used this recently are evicted only when nothing else frees enough (0: off; in-flight requests already pin their model)',
    fallback: '0',
    parse: integer(0),
  },
  {
    key: 'idleUnloadMs',
    env: 'AGENT_IDLE_UNLOAD_MS',
    meaning:
      'unload models idle this long ahead of need (0: off; SageMaker keeps them until memory is needed)',
    fallback: '0',
    parse: integer(0),
  },
  {
    key: 'accessLogFile',
    env: 'AGENT_ACCESS_LOG_FILE',
    meaning:
      'absolute path of the access log: one JSON line per invocation and per load or eviction, for the capacity planner (unset: off)',
    parse: (raw, name) => (raw.trim() === '' ? undefined : absolutePath(raw, name)),
  },
  {
    key: 'accessLogMaxBytes',
    env: 'AGENT_ACCESS_LOG_MAX_BYTES',
    meaning: 'the access log is rotated (FILE → FILE.1 → FILE.2 …) before it grows past this size',
    fallback: String(100 * 1024 * 1024),
    parse: integer(4096),
  },
  {
    key: 'accessLogFiles',
    env: 'AGENT_ACCESS_LOG_FILES',
    meaning: 'rotated access log files kept (the oldest beyond this are deleted)',
    fallback: '5',
    parse: integer(0, 1000),
  },
  {
    key: 'gpuPlacement',
    env: 'AGENT_GPU_PLACEMENT',
    meaning:
      "on an instance with several GPUs: adaptive (each model on the one GPU it fits best, written into the staged config's instance_group; a model its one instance cannot keep up with gets instances on more GPUs, evicting only models whose reload costs less than its queueing, and gives them back when it cools), pack (one GPU each, never more) or triton-default (every model on every GPU, as Triton places it); an artifact that names its own GPUs, or runs on the CPU, keeps that",
    fallback: 'adaptive',
    parse: oneOf('adaptive', 'pack', 'triton-default'),
  },
  {
    key: 'artifactGpus',
    env: 'AGENT_ARTIFACT_GPUS',
    meaning:
      'an artifact whose instance_group names GPUs: respect keeps them, ignore lets AGENT_GPU_PLACEMENT choose (kind and count kept; CPU models stay on the CPU)',
    fallback: 'respect',
    parse: oneOf('respect', 'ignore'),
  },
  {
    key: 'scalePeriodMs',
    env: 'AGENT_SCALE_PERIOD_MS',
    meaning:
      "adaptive placement: how often it looks at how busy each model's instances are (time in Triton per instance over the period: above 0.7 a model gets one more GPU, below 0.3 on one fewer for two periods it gives one back)",
    fallback: '2000',
    parse: integer(100),
  },
  {
    key: 'logLevel',
    env: 'LOG_LEVEL',
    meaning: 'error, warn, info or debug',
    fallback: 'info',
    parse: oneOf('error', 'warn', 'info', 'debug'),
  },
  {
    key: 'tritonManaged',
    env: 'TRITON_MANAGED',
    meaning:
      'start tritonserver as a child process, supervise it and restart it if it dies (the SageMaker image sets true); false: use a Triton started elsewhere',
    fallback: 'false',
    parse: boolean,
  },
  {
    key: 'nvidiaSmiBin',
    env: 'AGENT_NVIDIA_SMI',
    meaning:
      "nvidia-smi, which tells which GPU (by UUID, as Triton's metrics name them) is which CUDA device; without it several GPUs are one pool (every model on every GPU)",
    fallback: 'nvidia-smi',
    parse: text,
  },
  {
    key: 'cudaVisibleDevices',
    env: 'CUDA_VISIBLE_DEVICES',
    meaning:
      "CUDA's own variable: the GPUs tritonserver may use (indices in PCI bus order, or UUIDs); the agent maps GPUs the same way",
    parse: optionalText,
  },
  {
    key: 'tritonServerBin',
    env: 'TRITON_SERVER_BIN',
    meaning: 'managed mode: the tritonserver executable (a path, or a name looked up on PATH)',
    fallback: 'tritonserver',
    parse: text,
  },
  {
    key: 'tritonServerArgs',
    env: 'TRITON_SERVER_ARGS',
    meaning:
      "managed mode: extra tritonserver options, split like a shell does (quotes group words), placed after the agent's own so they win",
    parse: shellWords,
  },
  {
    key: 'tritonMemoryTracker',
    env: 'TRITON_MEMORY_TRACKER',
    meaning:
      "managed mode: turn Triton's memory tracker on for TensorRT and ONNX Runtime, which then report what a load allocated (a footprint at once); it uses CUPTI, which allows one subscriber per process: set false if another part of Triton needs CUPTI",
    fallback: 'true',
    parse: boolean,
  },
  {
    key: 'tritonMetricsIntervalMs',
    env: 'TRITON_METRICS_INTERVAL_MS',
    meaning:
      "managed mode: tritonserver's --metrics-interval-ms (set AGENT_METRICS_INTERVAL_MS a little above it, e.g. 750)",
    fallback: '500',
    parse: integer(1),
  },
  {
    key: 'tritonStartupTimeoutMs',
    env: 'TRITON_STARTUP_TIMEOUT_MS',
    meaning: 'managed mode: how long tritonserver may take to answer ServerReady before it is killed',
    fallback: '120000',
    parse: integer(1),
  },
  {
    key: 'tritonStopGraceMs',
    env: 'TRITON_STOP_GRACE_MS',
    meaning: 'managed mode: how long tritonserver may take to exit after SIGTERM before SIGKILL',
    fallback: '5000',
    parse: integer(0),
  },
  {
    key: 'tritonRestartBackoffMs',
    env: 'TRITON_RESTART_BACKOFF_MS',
    meaning:
      'managed mode: wait before restarting a tritonserver that died; doubles with each crash or failed start, back to this after a minute of stable running',
    fallback: '250',
    parse: integer(0),
  },
  {
    key: 'tritonRestartMaxBackoffMs',
    env: 'TRITON_RESTART_MAX_BACKOFF_MS',
    meaning: 'managed mode: the longest wait between restarts of tritonserver',
    fallback: '30000',
    parse: integer(1),
  },
  {
    key: 'drainTimeoutMs',
    env: 'AGENT_DRAIN_TIMEOUT_MS',
    meaning:
      "on SIGTERM, how long in-flight requests may run before they are answered 503 and their connections closed; then tritonserver gets TRITON_STOP_GRACE_MS (keep the sum under SageMaker's 30 s)",
    fallback: '20000',
    parse: integer(0),
  },
  {
    key: 'maxJsonResponseBytes',
    env: 'AGENT_MAX_JSON_RESPONSE_BYTES',
    meaning:
      'largest JSON text of an invoke response; above it the answer is 400 asking for binary outputs (binary_data_output or Accept)',
    fallback: String(64 * 1024 * 1024),
    parse: integer(1),
  },
  {
    key: 'metricsModelLabels',
    env: 'AGENT_METRICS_MODEL_LABELS',
    meaning:
      'how many model names get their own model label on /metrics (the first seen); all others are counted as `__other__`',
    fallback: '20',
    parse: integer(0, 1000),
  },
  {
    key: 'cloudwatchEmf',
    env: 'AGENT_CLOUDWATCH_EMF',
    meaning:
      "also write the metrics as CloudWatch Embedded Metric Format lines on stdout, with SageMaker's names (CloudWatch Logs turns them into metrics)",
    fallback: 'false',
    parse: boolean,
  },
  {
    key: 'cloudwatchEmfNamespace',
    env: 'AGENT_CLOUDWATCH_EMF_NAMESPACE',
    meaning: 'the CloudWatch namespace of the EMF metrics',
    fallback: 'SageMakerMMEAgent',
    parse: text,
  },
  {
    key: 'cloudwatchEmfIntervalMs',
    env: 'AGENT_CLOUDWATCH_EMF_INTERVAL_MS',
    meaning: 'how often an EMF line is written (counts are per interval, times averaged over it)',
    fallback: '60000',
    parse: integer(1000),
  },
];

/** Reads and validates the whole configuration; throws ConfigError listing every problem at once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AgentConfig {
  const out: Partial<Record<keyof AgentConfig, unknown>> = {};
  const problems: string[] = [];
  for (const s of SETTINGS) {
    let raw = env[s.env];
    if (raw === undefined || raw.trim() === '') {
      if (s.required) {
        problems.push(`${s.env} is required: ${s.meaning}`);
        continue;
      }
      if (s.fallback === undefined) {
        out[s.key] = undefined;
        continue;
      }
      if (s.fallback.includes('<TRITON_MODEL_REPOSITORY>')) {
        const repo = env.TRITON_MODEL_REPOSITORY?.trim().replace(/\/+$/, '');
        if (!repo) continue;
        raw = s.fallback.replace('<TRITON_MODEL_REPOSITORY>', repo);
      } else {
        raw = s.fallback;
      }
    }
    try {
      out[s.key] = (s.parse as Parser<unknown>)(raw, s.env);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  return out as AgentConfig;
}

/** The README's settings table. */
export function settingsTable(): string {
  const rows = SETTINGS.map(
    (s) =>
      `| \`${s.env}\` | ${s.meaning} | ${s.required ? 'required' : s.fallback === undefined ? 'unset' : `\`${s.fallback}\``} |`,
  );
  return ['| variable | meaning | default |', '| --- | --- | --- |', ...rows].join('\n');
}
