import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { AgentError, ErrorCode } from '../errors';
import { GRPC_SERVICE_PROTO, PROTO_DIR } from '../model-config';
import { isRetryableGrpc, systemClock, type Clock } from '../time';
import { serializeInferRequest } from './infer-wire';
import { TritonError } from './triton-error';
import type { TritonControl } from './index';
import type {
  InferOutputTensor,
  InferParameter,
  InferTensorContents,
  ModelConfigJson,
  ModelIndexEntry,
  ModelInferRequest,
  ModelInferResponse,
  ModelMetadata,
  ModelRepositoryParameter,
  ModelStatistics,
  ModelStreamInferResponse,
  ServerMetadata,
  StatisticDuration,
} from './types';

/** Loaded once per process: proto parsing is start-up work, never request work. */
let packageDefinition: protoLoader.PackageDefinition | undefined;

export function tritonPackageDefinition(): protoLoader.PackageDefinition {
  packageDefinition ??= protoLoader.loadSync(GRPC_SERVICE_PROTO, {
    keepCase: true,
    // int64 arrive as strings and are converted with a range check (see toSafeNumber).
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [PROTO_DIR],
  });
  return packageDefinition;
}

type ServiceCtor = new (
  address: string,
  creds: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => grpc.Client;

export function tritonServiceDefinition(): grpc.ServiceDefinition {
  const pkg = grpc.loadPackageDefinition(tritonPackageDefinition()) as unknown as {
    inference: { GRPCInferenceService: ServiceCtor & { service: grpc.ServiceDefinition } };
  };
  return pkg.inference.GRPCInferenceService.service;
}

/**
 * The service with ModelInfer's and ModelStreamInfer's requests written by serializeInferRequest: the
 * same bytes as protobufjs, without copying raw inputs that were read into place (infer-wire.ts).
 */
function inferenceServiceDefinition(): grpc.ServiceDefinition {
  const service = { ...tritonServiceDefinition() };
  for (const rpc of ['ModelInfer', 'ModelStreamInfer']) {
    const method = service[rpc] as grpc.MethodDefinition<Raw, Raw>;
    const encodeOthers = method.requestSerialize;
    service[rpc] = {
      ...method,
      requestSerialize: (wire: Raw) => {
        const raws = (wire.raw_input_contents as unknown[] | undefined) ?? [];
        // Anything but bytes (a base64 string, a number array) is protobufjs's to convert.
        if (!raws.every((r) => r instanceof Uint8Array)) return encodeOthers(wire);
        return serializeInferRequest(encodeOthers({ ...wire, raw_input_contents: [] }), raws as Buffer[]);
      },
    };
  }
  return service;
}

/** Default per-call deadlines in milliseconds. */
export interface TritonDeadlines {
  /** Health, metadata, index, statistics. */
  control: number;
  /** RepositoryModelLoad: large TensorRT engines take minutes. */
  load: number;
  /** RepositoryModelUnload (returns before the unload finishes). */
  unload: number;
  /** ModelInfer (SageMaker's own invocation limit is 60 s). */
  infer: number;
}

export const DEFAULT_DEADLINES: TritonDeadlines = {
  control: 5_000,
  load: 600_000,
  unload: 30_000,
  infer: 60_000,
};

export interface RetryPolicy {
  /** Total attempts for an idempotent call that fails with UNAVAILABLE (1 = no retry). */
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, initialDelayMs: 100, maxDelayMs: 2_000 };

export interface TritonClientOptions {
  /** `host:port` of Triton's gRPC endpoint. */
  address: string;
  deadlines?: Partial<TritonDeadlines>;
  retry?: Partial<RetryPolicy>;
  /**
   * Largest message sent or received. Triton's server allows INT32_MAX; a batch-128 ResNet-50 FP32 request
   * is 77 MB, far beyond gRPC's 4 MB default receive limit.
   */
  maxMessageBytes?: number;
  /**
   * Keepalive ping interval. Triton's default server policy treats pings closer than 5 minutes without data
   * as abuse (GOAWAY "too_many_pings"), so the default stays at 5 minutes and pings only during calls.
   */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  /** Time for the waits between retries (default: the system's). */
  clock?: Clock;
}

export interface CallOptions {
  /** Overrides the default deadline for this call, in milliseconds. */
  deadlineMs?: number;
  /** Fail at once instead of retrying (health checks that must answer within their own deadline). */
  noRetry?: boolean;
  /** Wait (within the deadline) for the channel to connect instead of failing fast while it reconnects. */
  waitForReady?: boolean;
  /** Cancels the call (its caller went away): Triton stops working on it and the call fails CANCELLED. */
  signal?: AbortSignal;
}

export interface LoadOptions extends CallOptions {
  /** A ModelConfig (protobuf JSON form) used instead of the on-disk config.pbtxt. Forces a reload. */
  config?: ModelConfigJson | string;
  /** Override files: key `<version>/<file name>` (sent as `file:<version>/<file name>`); needs `config`. */
  files?: Record<string, Buffer>;
}

export interface UnloadOptions extends CallOptions {
  /** Also unload models loaded along with this one (an ensemble's composing models). */
  unloadDependents?: boolean;
}

/** A bidirectional ModelStreamInfer call. */
export interface InferStream {
  write(request: ModelInferRequest): void;
  end(): void;
  cancel(): void;
  responses(): AsyncIterable<ModelStreamInferResponse>;
}

/** Converts an int64 carried as a decimal string. Fails loudly instead of rounding past 2^53. */
export function toSafeNumber(v: string | number | undefined, what: string): number {
  if (v === undefined || v === '') return 0;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n)) {
    throw new AgentError(ErrorCode.TritonProtocol, `${what} ${String(v)} is not an integer below 2^53`);
  }
  return n;
}

const IDEMPOTENT = new Set([
  'ServerLive',
  'ServerReady',
  'ServerMetadata',
  'ModelReady',
  'ModelMetadata',
  'ModelConfig',
  'ModelStatistics',
  'RepositoryIndex',
  // Unloading an unloaded model succeeds, so a repeated unload is harmless.
  'RepositoryModelUnload',
]);

type Raw = Record<string, unknown>;

function convertParams(p: unknown): Record<string, InferParameter> {
  const out: Record<string, InferParameter> = {};
  for (const [k, v] of Object.entries((p ?? {}) as Record<string, Raw>)) {
    const choice = v.parameter_choice as keyof InferParameter | undefined;
    if (!choice) continue;
    const value = v[choice];
    out[k] =
      choice === 'int64_param' || choice === 'uint64_param'
        ? { [choice]: toSafeNumber(value as string, `parameter ${k}`) }
        : { [choice]: value };
  }
  return out;
}

function convertContents(c: Raw | null | undefined, what: string): InferTensorContents | undefined {
  if (!c) return undefined;
  const out: InferTensorContents = {};
  let any = false;
  for (const [k, v] of Object.entries(c)) {
    if (!Array.isArray(v) || v.length === 0) continue;
    any = true;
    (out as Record<string, unknown>)[k] =
      k === 'int64_contents' || k === 'uint64_contents'
        ? v.map((x: string) => toSafeNumber(x, `${what} ${k} value`))
        : v;
  }
  return any ? out : undefined;
}

function convertShape(shape: unknown, what: string): number[] {
  return ((shape as string[] | undefined) ?? []).map((d) => toSafeNumber(d, `${what} dimension`));
}

function convertInferResponse(r: Raw): ModelInferResponse {
  const outputs = ((r.outputs as Raw[] | undefined) ?? []).map((o): InferOutputTensor => {
    const t: InferOutputTensor = {
      name: o.name as string,
      datatype: o.datatype as string,
      shape: convertShape(o.shape, `output '${String(o.name)}'`),
      parameters: convertParams(o.parameters),
    };
    const contents = convertContents(o.contents as Raw | undefined, `output '${String(o.name)}'`);
    if (contents) t.contents = contents;
    return t;
  });
  return {
    model_name: r.model_name as string,
    model_version: r.model_version as string,
    id: r.id as string,
    parameters: convertParams(r.parameters),
    outputs,
    raw_output_contents: (r.raw_output_contents as Buffer[] | undefined) ?? [],
  };
}

function convertDuration(d: Raw | undefined): StatisticDuration {
  // Cumulative nanoseconds can pass 2^53 on a long-lived server; they are totals, so rounding is acceptable.
  return { count: toSafeNumber(d?.count as string, 'statistic count'), ns: Number(d?.ns ?? 0) };
}

function convertStatistics(s: Raw): ModelStatistics {
  const stats = (s.inference_stats ?? {}) as Record<string, Raw>;
  const inference_stats: Record<string, StatisticDuration> = {};
  for (const [k, v] of Object.entries(stats)) inference_stats[k] = convertDuration(v);
  return {
    name: s.name as string,
    version: s.version as string,
    last_inference: toSafeNumber(s.last_inference as string, 'last_inference'),
    inference_count: toSafeNumber(s.inference_count as string, 'inference_count'),
    execution_count: toSafeNumber(s.execution_count as string, 'execution_count'),
    inference_stats,
    memory_usage: ((s.memory_usage as Raw[] | undefined) ?? []).map((m) => ({
      type: m.type as string,
      id: toSafeNumber(m.id as string, 'memory_usage id'),
      byte_size: toSafeNumber(m.byte_size as string, 'memory_usage byte_size'),
    })),
  };
}

function toWireRequest(req: ModelInferRequest): Raw {
  const params = (p: Record<string, InferParameter> | undefined): Raw | undefined => {
    if (!p) return undefined;
    const out: Raw = {};
    for (const [k, v] of Object.entries(p)) out[k] = v;
    return out;
  };
  return {
    model_name: req.model_name,
    model_version: req.model_version ?? '',
    id: req.id ?? '',
    parameters: params(req.parameters),
    inputs: req.inputs.map((i) => ({
      name: i.name,
      datatype: i.datatype,
      shape: i.shape,
      parameters: params(i.parameters),
      contents: i.contents,
    })),
    outputs: (req.outputs ?? []).map((o) => ({ name: o.name, parameters: params(o.parameters) })),
    raw_input_contents: req.raw_input_contents ?? [],
  };
}

/**
 * A typed promise client for Triton's `inference.GRPCInferenceService`.
 *
 * Every call has a deadline. Idempotent calls that fail with UNAVAILABLE (Triton restarting, connection
 * refused) are retried with exponential backoff; loads and inferences are not, since repeating them
 * repeats their work. Failures become TritonError, keeping Triton's message and the gRPC code.
 */
export class TritonClient implements TritonControl {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly deadlines: TritonDeadlines;
  private readonly retry: RetryPolicy;
  private readonly clock: Clock;

  constructor(options: TritonClientOptions) {
    this.clock = options.clock ?? systemClock;
    this.address = options.address;
    this.deadlines = { ...DEFAULT_DEADLINES, ...options.deadlines };
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    const maxBytes = options.maxMessageBytes ?? 2 ** 31 - 1;
    const Ctor = grpc.makeGenericClientConstructor(inferenceServiceDefinition(), 'GRPCInferenceService');
    this.client = new Ctor(options.address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': maxBytes,
      'grpc.max_receive_message_length': maxBytes,
      // Triton echoes names from a request in its error texts (trailers): a long one must fail that call,
      // never the connection every request shares.
      'grpc.max_metadata_size': 16 * 1024 * 1024,
      'grpc.keepalive_time_ms': options.keepaliveTimeMs ?? 300_000,
      'grpc.keepalive_timeout_ms': options.keepaliveTimeoutMs ?? 20_000,
      'grpc.keepalive_permit_without_calls': 0,
      // Reconnect quickly after a Triton restart; the agent's own retries handle the rest.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    });
  }

  close(): void {
    this.client.close();
  }

  private callOnce(rpc: string, request: Raw, deadlineMs: number, opts: CallOptions = {}): Promise<Raw> {
    const { waitForReady = false, signal } = opts;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new TritonError(rpc, grpc.status.CANCELLED, 'the call was cancelled by its caller'));
        return;
      }
      const method = (this.client as unknown as Record<string, grpc.requestCallback<Raw> | undefined>)[rpc];
      if (typeof method !== 'function') {
        reject(new AgentError(ErrorCode.Internal, `unknown Triton RPC ${rpc}`));
        return;
      }
      const deadline = new Date(Date.now() + deadlineMs);
      // grpc-js takes wait-for-ready as a metadata option, not a call option.
      const metadata = new grpc.Metadata({ waitForReady });
      const onAbort = () => call.cancel();
      const call = (
        method as unknown as (
          req: Raw,
          md: grpc.Metadata,
          opts: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res?: Raw) => void,
        ) => grpc.ClientUnaryCall
      ).call(this.client, request, metadata, { deadline }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          // The model's own name is not evidence of anything (a model may be called 'BLOOM-560m').
          const names = typeof request.model_name === 'string' ? [request.model_name] : [];
          reject(new TritonError(rpc, err.code, err.details ?? err.message, { cause: err, names }));
        } else resolve(res ?? {});
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private async call(rpc: string, request: Raw, deadlineMs: number, opts: CallOptions = {}): Promise<Raw> {
    const attempts = IDEMPOTENT.has(rpc) && !opts.noRetry ? Math.max(1, this.retry.attempts) : 1;
    let delay = this.retry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.callOnce(rpc, request, deadlineMs, opts);
      } catch (err) {
        const retryable = err instanceof TritonError && isRetryableGrpc(err.grpcCode);
        if (!retryable || attempt >= attempts) throw err;
        // Equal jitter: at least half the backoff (a reconnect needs time), and agents do not retry in lockstep.
        await this.clock.sleep(delay / 2 + (Math.random() * delay) / 2);
        delay = Math.min(this.retry.maxDelayMs, delay * 2);
      }
    }
  }

  async serverLive(opts: CallOptions = {}): Promise<boolean> {
    const r = await this.call('ServerLive', {}, opts.deadlineMs ?? this.deadlines.control, opts);
    return r.live === true;
  }

  async serverReady(opts: CallOptions = {}): Promise<boolean> {
    const r = await this.call('ServerReady', {}, opts.deadlineMs ?? this.deadlines.control, opts);
    return r.ready === true;
  }

  async serverMetadata(opts: CallOptions = {}): Promise<ServerMetadata> {
    const r = await this.call('ServerMetadata', {}, opts.deadlineMs ?? this.deadlines.control);
    return {
      name: r.name as string,
      version: r.version as string,
      extensions: (r.extensions as string[]) ?? [],
    };
  }

  async modelReady(name: string, version = '', opts: CallOptions = {}): Promise<boolean> {
    const r = await this.call('ModelReady', { name, version }, opts.deadlineMs ?? this.deadlines.control);
    return r.ready === true;
  }

  async modelMetadata(name: string, version = '', opts: CallOptions = {}): Promise<ModelMetadata> {
    const r = await this.call('ModelMetadata', { name, version }, opts.deadlineMs ?? this.deadlines.control);
    const tensors = (list: unknown) =>
      ((list as Raw[] | undefined) ?? []).map((t) => ({
        name: t.name as string,
        datatype: t.datatype as string,
        shape: convertShape(t.shape, `tensor '${String(t.name)}'`),
      }));
    return {
      name: r.name as string,
      versions: (r.versions as string[]) ?? [],
      platform: r.platform as string,
      inputs: tensors(r.inputs),
      outputs: tensors(r.outputs),
    };
  }

  /** The model's configuration as Triton holds it (protobuf JSON-like object, int64 as strings). */
  async modelConfig(name: string, version = '', opts: CallOptions = {}): Promise<ModelConfigJson> {
    const r = await this.call('ModelConfig', { name, version }, opts.deadlineMs ?? this.deadlines.control);
    return (r.config ?? {}) as ModelConfigJson;
  }

  async modelStatistics(name = '', version = '', opts: CallOptions = {}): Promise<ModelStatistics[]> {
    const r = await this.call(
      'ModelStatistics',
      { name, version },
      opts.deadlineMs ?? this.deadlines.control,
    );
    return ((r.model_stats as Raw[] | undefined) ?? []).map(convertStatistics);
  }

  async repositoryIndex(options: CallOptions & { ready?: boolean } = {}): Promise<ModelIndexEntry[]> {
    const r = await this.call(
      'RepositoryIndex',
      { repository_name: '', ready: options.ready ?? false },
      options.deadlineMs ?? this.deadlines.control,
    );
    return ((r.models as Raw[] | undefined) ?? []).map((m) => ({
      name: m.name as string,
      version: m.version as string,
      state: m.state as string,
      reason: m.reason as string,
    }));
  }

  /** RepositoryModelLoad: returns when the model is loaded, throws TritonError when it failed. */
  async load(name: string, options: LoadOptions = {}): Promise<void> {
    const parameters: Record<string, ModelRepositoryParameter> = {};
    if (options.config !== undefined) {
      parameters.config = {
        string_param: typeof options.config === 'string' ? options.config : JSON.stringify(options.config),
      };
    }
    for (const [file, bytes] of Object.entries(options.files ?? {}))
      parameters[`file:${file}`] = { bytes_param: bytes };
    await this.call(
      'RepositoryModelLoad',
      { repository_name: '', model_name: name, parameters },
      options.deadlineMs ?? this.deadlines.load,
    );
  }

  /** RepositoryModelUnload: returns once the unload has started (poll repositoryIndex for completion). */
  async unload(name: string, options: UnloadOptions = {}): Promise<void> {
    const parameters: Record<string, ModelRepositoryParameter> = {};
    if (options.unloadDependents !== undefined)
      parameters.unload_dependents = { bool_param: options.unloadDependents };
    await this.call(
      'RepositoryModelUnload',
      { repository_name: '', model_name: name, parameters },
      options.deadlineMs ?? this.deadlines.unload,
    );
  }

  async infer(request: ModelInferRequest, opts: CallOptions = {}): Promise<ModelInferResponse> {
    const r = await this.call(
      'ModelInfer',
      toWireRequest(request),
      opts.deadlineMs ?? this.deadlines.infer,
      opts,
    );
    return convertInferResponse(r);
  }

  /** Opens a ModelStreamInfer call. Responses carry per-request errors in `error_message`. */
  streamInfer(opts: CallOptions = {}): InferStream {
    const method = (this.client as unknown as Record<string, unknown>).ModelStreamInfer as (
      md: grpc.Metadata,
      o: grpc.CallOptions,
    ) => grpc.ClientDuplexStream<Raw, Raw>;
    const deadline = new Date(Date.now() + (opts.deadlineMs ?? this.deadlines.infer));
    const call = method.call(this.client, new grpc.Metadata(), { deadline });
    return {
      write: (request) => {
        call.write(toWireRequest(request));
      },
      end: () => call.end(),
      cancel: () => call.cancel(),
      responses: () => ({
        [Symbol.asyncIterator]: async function* () {
          try {
            for await (const r of call as AsyncIterable<Raw>) {
              const response: ModelStreamInferResponse = { error_message: (r.error_message as string) ?? '' };
              if (r.infer_response) response.infer_response = convertInferResponse(r.infer_response as Raw);
              yield response;
            }
          } catch (err) {
            const e = err as grpc.ServiceError;
            throw new TritonError('ModelStreamInfer', e.code ?? grpc.status.UNKNOWN, e.details ?? e.message, {
              cause: err,
            });
          }
        },
      }),
    };
  }
}
