import type { EventEmitter } from 'node:events';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { tritonServiceDefinition } from '../../../src/triton/client';
import { prepareInputs, runModel, type Tensor, type WireInferRequest } from './compute';
import { GpuMemory, emulatedPciBusId, randomGpuUuid } from './gpu-memory';
import {
  EmulatorError,
  ModelLifecycle,
  type Counters,
  type EmulatorEvents,
  type LoadedConfig,
  type ModelRecord,
} from './model-lifecycle';
import { texts } from './texts';

export interface TritonEmulatorOptions {
  /** The repository tritonserver would be started with (`--model-repository`). */
  modelRepository: string;
  host?: string;
  /** 0 picks a free port. */
  grpcPort?: number;
  /** 0 picks a free port; `null` turns metrics off. */
  metricsPort?: number | null;
  /**
   * How many GPUs the server sees (default 1), CUDA device ordinals 0 to gpuCount − 1. Triton places
   * each model's instances on them by its `instance_group` (every GPU by default); see `placement()`.
   */
  gpuCount?: number;
  /** Memory of each GPU (every device the same size). */
  gpuMemoryBytes?: number;
  /**
   * Memory used on each GPU before any model: Triton's CUDA context and its CUDA memory pool (64 MiB by
   * default, `--cuda-memory-pool-byte-size`), other processes. Default: 3 % of the GPU, as a CUDA context
   * of a few hundred MiB is on a 16 GiB device.
   */
  gpuBaselineBytes?: number;
  /** UUID of GPU 0 (the others random). */
  gpuUuid?: string;
  /**
   * UUIDs of the GPUs by CUDA ordinal; default random, as real ones are (their order says nothing of the
   * ordinals: core metrics.cc labels the series with `gpu_uuid` only).
   */
  gpuUuids?: readonly string[];
  /** How long freed GPU memory still shows as used (on each device). */
  memoryReleaseLagMs?: number;
  /**
   * Like `--allow-gpu-metrics` (default true). Off, or with DCGM unavailable, the metrics page has no
   * nv_gpu_* series at all (core metrics.cc): GPU figures unavailable, not "no GPUs".
   */
  gpuMetrics?: boolean;
  /** Like `--metrics-interval-ms` (Triton's default is 2000). */
  metricsIntervalMs?: number;
  loadLatencyMs?: number;
  /** Loads that run at once; the others queue (Triton's `--model-load-thread-count`, default 4). */
  modelLoadThreadCount?: number;
  unloadLatencyMs?: number;
  inferLatencyMs?: number;
  /** GPU bytes = model file bytes × this, unless the config declares `emulator_gpu_bytes`. */
  footprintFactor?: number;
  /**
   * Backends whose Triton memory tracker is on (`--backend-config=<backend>,triton-backend-memory-tracker=true`):
   * only tensorrt and onnxruntime report ModelStatistics.memory_usage, and only then. Default none, as
   * Triton's default.
   */
  memoryTracker?: readonly ('tensorrt' | 'onnxruntime')[];
  /** tensorrt_backend's config auto-complete (Triton's default: on; `--disable-auto-complete-config`). */
  autoCompleteConfig?: boolean;
  /**
   * Every this many metrics refreshes one device (in turn) reads 0 used of 0 total, as DCGM reports a
   * failed read (core metrics.cc); 0 never. Default 29.
   */
  failedReadEvery?: number;
  serverVersion?: string;
  log?: (line: string) => void;
}

type Raw = Record<string, unknown>;
type UnaryHandler = (req: Raw) => Promise<Raw> | Raw;

const GiB = 1024 ** 3;
// The emulated inference latency (`inferLatencyMs`, `emulator_infer_ms`): Triton's inferences take time,
// and this is that time passing.
// Never what keeps a process alive: an emulated inference still running when a test ends (a client that went
// away) must not hold the test runner open; the server itself keeps a running emulator alive.
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

const EXTENSIONS = [
  'classification',
  'sequence',
  'model_repository',
  'model_repository(unload_dependents)',
  'schedule_policy',
  'model_configuration',
  'system_shared_memory',
  'cuda_shared_memory',
  'binary_tensor_data',
  'parameters',
  'statistics',
  'trace',
  'logging',
];

/**
 * A test double for tritonserver in `--model-control-mode=explicit`: a real gRPC server on loopback
 * speaking Triton's protocol from the project's protos, with Triton's lifecycle rules and error texts,
 * an emulated GPU with Prometheus metrics, real (checkable) inference, and fault injection.
 * Production always uses real Triton.
 */
export class TritonEmulator {
  readonly lifecycle: ModelLifecycle;
  /** The server's GPUs, indexed by CUDA device ordinal; each has its own memory, baseline and peak. */
  readonly gpus: readonly GpuMemory[];
  private server: grpc.Server | undefined;
  private metricsServer: http.Server | undefined;
  private readonly sockets = new Set<Socket>();
  private metricsText = '';
  private metricsTimer: NodeJS.Timeout | undefined;
  private grpcPort: number;
  private metricsPort: number | null;
  private readonly host: string;
  private inferLatencyMs: number;
  private readonly log: (line: string) => void;
  readonly logLines: string[] = [];

  private constructor(readonly options: TritonEmulatorOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.grpcPort = options.grpcPort ?? 0;
    this.metricsPort = options.metricsPort === undefined ? 0 : options.metricsPort;
    this.inferLatencyMs = options.inferLatencyMs ?? 0;
    this.log = (line) => {
      this.logLines.push(line);
      if (this.logLines.length > 1000) this.logLines.shift();
      options.log?.(line);
    };
    const gpuCount = options.gpuCount ?? 1;
    if (!Number.isInteger(gpuCount) || gpuCount < 1)
      throw new Error(`gpuCount must be a whole number of at least 1, got ${gpuCount}`);
    if (options.gpuUuids !== undefined && options.gpuUuids.length !== gpuCount)
      throw new Error(`gpuUuids names ${options.gpuUuids.length} GPUs, gpuCount is ${gpuCount}`);
    const uuids = Array.from(
      { length: gpuCount },
      (_, i) =>
        options.gpuUuids?.[i] ??
        (i === 0 && options.gpuUuid !== undefined ? options.gpuUuid : randomGpuUuid()),
    );
    if (new Set(uuids).size !== uuids.length)
      throw new Error(`two emulated GPUs share a UUID: ${uuids.join(', ')}`);
    const total = options.gpuMemoryBytes ?? 16 * GiB;
    this.gpus = uuids.map(
      (uuid, i) =>
        new GpuMemory(
          total,
          options.gpuBaselineBytes ?? Math.round(total * 0.03),
          options.memoryReleaseLagMs ?? 0,
          Date.now,
          uuid,
          emulatedPciBusId(i),
        ),
    );
    this.lifecycle = new ModelLifecycle({
      repository: options.modelRepository,
      gpus: this.gpus,
      loadLatencyMs: options.loadLatencyMs ?? 0,
      loadThreads: Math.max(1, options.modelLoadThreadCount ?? 4),
      unloadLatencyMs: options.unloadLatencyMs ?? 0,
      footprintFactor: options.footprintFactor ?? 1,
      autoCompleteConfig: options.autoCompleteConfig ?? true,
      memoryTracker: new Set(options.memoryTracker ?? []),
      log: this.log,
    });
  }

  static async start(options: TritonEmulatorOptions): Promise<TritonEmulator> {
    const e = new TritonEmulator(options);
    await e.listen();
    return e;
  }

  get grpcAddress(): string {
    return `${this.host}:${this.grpcPort}`;
  }

  get metricsUrl(): string {
    return `http://${this.host}:${this.metricsPort ?? 0}/metrics`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  // --- lifecycle of the emulator process itself ---------------------------------------------------

  private async listen(): Promise<void> {
    const server = new grpc.Server({
      // Triton's gRPC server accepts messages up to INT32_MAX.
      'grpc.max_receive_message_length': 2 ** 31 - 1,
      'grpc.max_send_message_length': 2 ** 31 - 1,
    });
    server.addService(tritonServiceDefinition(), this.handlers());
    this.grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${this.host}:${this.grpcPort}`,
        grpc.ServerCredentials.createInsecure(),
        (err, port) => (err ? reject(err) : resolve(port)),
      ),
    );
    this.server = server;
    if (this.metricsPort !== null) {
      const ms = http.createServer((req, res) => {
        if (req.url?.split('?')[0] !== '/metrics') {
          res.writeHead(404).end();
          return;
        }
        this.metricsRequests++;
        if (this.metricsHeld) {
          // As a server still starting its metrics service answers (test control).
          res.writeHead(503).end();
          return;
        }
        res
          .writeHead(200, { 'content-type': 'text/plain; charset=utf-8; version=0.0.4' })
          .end(this.metricsText);
      });
      ms.on('connection', (s: Socket) => {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
      });
      await new Promise<void>((resolve, reject) => {
        ms.once('error', reject);
        ms.listen(this.metricsPort ?? 0, this.host, () => resolve());
      });
      this.metricsPort = (ms.address() as AddressInfo).port;
      this.metricsServer = ms;
      this.refreshMetrics();
      this.metricsTimer = setInterval(() => this.refreshMetrics(), this.options.metricsIntervalMs ?? 2000);
      this.metricsTimer.unref();
    }
  }

  private async close(force: boolean): Promise<void> {
    if (this.metricsTimer) clearInterval(this.metricsTimer);
    this.metricsTimer = undefined;
    const server = this.server;
    this.server = undefined;
    if (server) {
      if (force) server.forceShutdown();
      else await new Promise<void>((r) => server.tryShutdown(() => r()));
    }
    const ms = this.metricsServer;
    this.metricsServer = undefined;
    if (ms) {
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((r) => ms.close(() => r()));
    }
  }

  /** Graceful stop. */
  async stop(): Promise<void> {
    this.lifecycle.crash();
    await this.close(true);
  }

  /** The process dies: ports close, in-flight calls fail, every model and its GPU memory is gone. */
  async crash(): Promise<void> {
    this.lifecycle.crash();
    await this.close(true);
  }

  /** Comes back on the same ports with nothing loaded, as a restarted tritonserver does. */
  async restart(): Promise<void> {
    if (this.running) await this.crash();
    await this.listen();
  }

  // --- test controls ------------------------------------------------------------------------------

  /**
   * What the emulator reports as it works ('load-started', 'load-finished', 'load-failed',
   * 'unload-finished', 'infer-started', each with the Triton model name): for tests to wait on instead of
   * sleeping. Test controls, not Triton behaviour (see EmulatorEvents).
   */
  get events(): EventEmitter<EmulatorEvents> {
    return this.lifecycle.events;
  }

  counters(model: string): Counters {
    return { ...this.lifecycle.counter(model) };
  }

  loadedModels(): string[] {
    return this.lifecycle.loadedModels();
  }

  /** The next load of `model` fails at the lifecycle stage with this reason (`{CodeWord}: {text}`). */
  failNextLoad(model: string, reason = 'Internal: emulated load failure'): void {
    this.lifecycle.failNextLoad(model, reason);
  }

  /** The next load of `model` waits until the returned function is called. */
  hangNextLoad(model: string): () => void {
    return this.lifecycle.hangNextLoad(model);
  }

  /** The next inference on `model` fails with this gRPC code and message. */
  failNextInfer(model: string, code: grpc.status, message: string): void {
    this.lifecycle.failNextInfer(model, code, message);
  }

  setLatency(l: { loadMs?: number; unloadMs?: number; inferMs?: number }): void {
    if (l.loadMs !== undefined) this.lifecycle.options.loadLatencyMs = l.loadMs;
    if (l.unloadMs !== undefined) this.lifecycle.options.unloadLatencyMs = l.unloadMs;
    if (l.inferMs !== undefined) this.inferLatencyMs = l.inferMs;
  }

  /** Resolves when background unloads have completed. */
  idle(): Promise<void> {
    return this.lifecycle.idle();
  }

  /** Takes a metrics snapshot now instead of waiting for the interval. */
  refreshMetrics(): void {
    this.metricsText = this.renderMetrics();
  }

  /**
   * What `nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv,noheader` prints on this server (the
   * emulated GPUs are all the machine has, in PCI order).
   */
  nvidiaSmiCsv(): string {
    return this.gpus.map((g, i) => `${i}, ${g.uuid}, ${g.pciBusId}\n`).join('');
  }

  /**
   * Writes an `nvidia-smi` stand-in into `dir` that answers the agent's query for these GPUs (and refuses
   * anything else); returns its path.
   */
  async writeNvidiaSmi(dir: string): Promise<string> {
    const file = path.join(dir, 'nvidia-smi');
    const script =
      '#!/bin/sh\n' +
      '# nvidia-smi stand-in written by the Triton emulator: answers the GPU identity query only.\n' +
      'case "$*" in\n' +
      "  *--query-gpu=index,uuid,pci.bus_id*) cat <<'EOF'\n" +
      this.nvidiaSmiCsv() +
      'EOF\n' +
      '  ;;\n' +
      '  *) echo "nvidia-smi stand-in: unsupported arguments: $*" >&2; exit 2 ;;\n' +
      'esac\n';
    await fs.writeFile(file, script, { mode: 0o755 });
    return file;
  }

  private metricsHeld = false;
  /** Requests the metrics page has had (test observation). */
  metricsRequests = 0;

  /** The metrics page answers 503 until the returned function is called (a Triton still starting up). */
  holdMetrics(): () => void {
    this.metricsHeld = true;
    return () => {
      this.metricsHeld = false;
      this.refreshMetrics();
    };
  }

  /** GPU 0: what single-GPU callers mean by "the GPU". */
  get gpu(): GpuMemory {
    return this.gpus[0];
  }

  /** GPU 0's UUID. */
  get gpuUuid(): string {
    return this.gpu.uuid;
  }

  /**
   * Bytes `model` holds on each GPU, indexed by device (0 where it has no instance): where Triton put
   * it. Counts every version still holding memory (an UNLOADING one too); memory freed but still in its
   * release lag belongs to the device, not the model. All zeros for a model that is not loaded.
   */
  placement(model: string): number[] {
    return this.lifecycle.placement(model);
  }

  private refreshes = 0;

  private renderMetrics(): string {
    // DCGM's figures (core metrics.cc): whole MiB; now and then one device's read fails and shows 0 of 0.
    const every = this.options.failedReadEvery ?? 29;
    this.refreshes++;
    const failed =
      every > 0 && this.refreshes % every === 0 ? (this.refreshes / every) % this.gpus.length : -1;
    const readings = this.gpus.map((g, i) => (i === failed ? { usedBytes: 0, totalBytes: 0 } : g.reading()));
    // One series per device, labelled with its UUID, as Triton's DCGM-backed GPU metrics are.
    const perGpu = (value: (g: GpuMemory, i: number) => number) =>
      this.gpus.map((g, i) => `{gpu_uuid="${g.uuid}"} ${value(g, i)}`);
    const gpuLines = [
      '# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)',
      '# TYPE nv_gpu_utilization gauge',
      ...perGpu(() => 0).map((s) => `nv_gpu_utilization${s}`),
      '# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes',
      '# TYPE nv_gpu_memory_total_bytes gauge',
      ...perGpu((_, i) => readings[i].totalBytes).map((s) => `nv_gpu_memory_total_bytes${s}`),
      '# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes',
      '# TYPE nv_gpu_memory_used_bytes gauge',
      ...perGpu((_, i) => readings[i].usedBytes).map((s) => `nv_gpu_memory_used_bytes${s}`),
    ];
    const lines: string[] = this.options.gpuMetrics === false ? [] : gpuLines;
    const families: [string, string, (r: ModelRecord) => number][] = [
      ['nv_inference_request_success', 'counter', (r) => r.stats.successCount],
      ['nv_inference_count', 'counter', (r) => r.stats.inferenceCount],
      ['nv_inference_exec_count', 'counter', (r) => r.stats.executionCount],
      ['nv_inference_request_duration_us', 'counter', (r) => Math.round(r.stats.successNs / 1000)],
      ['nv_model_load_duration_secs', 'gauge', (r) => r.loadDurationSecs],
    ];
    const ready = [...this.lifecycle.records.values()].filter((r) => this.lifecycle.isReady(r));
    for (const [name, type, value] of families) {
      lines.push(`# TYPE ${name} ${type}`);
      for (const r of ready) lines.push(`${name}{model="${r.name}",version="1"} ${value(r)}`);
    }
    lines.push('# TYPE nv_inference_request_failure counter');
    for (const r of ready) {
      lines.push(
        `nv_inference_request_failure{model="${r.name}",reason="BACKEND",version="1"} ${r.stats.failCount}`,
      );
    }
    return lines.join('\n') + '\n';
  }

  // --- gRPC ---------------------------------------------------------------------------------------

  private handlers(): grpc.UntypedServiceImplementation {
    const unary =
      (fn: UnaryHandler): grpc.handleUnaryCall<Raw, Raw> =>
      (call, callback) => {
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (res) => callback(null, res),
            (err: unknown) => {
              if (err instanceof EmulatorError) callback({ code: err.code, details: err.message });
              else callback({ code: grpc.status.INTERNAL, details: `emulator bug: ${String(err)}` });
            },
          );
      };
    const notEmulated = unary(() => {
      throw new EmulatorError(grpc.status.UNIMPLEMENTED, 'not emulated');
    });
    const lc = this.lifecycle;
    return {
      ServerLive: unary(() => ({ live: true })),
      ServerReady: unary(() => ({ ready: lc.serverReady() })),
      ServerMetadata: unary(() => ({
        name: 'triton',
        version: this.options.serverVersion ?? '2.64.0',
        extensions: EXTENSIONS,
      })),
      ModelReady: unary((req) => {
        try {
          lc.lookup(req.name as string, req.version as string);
          return { ready: true };
        } catch (err) {
          // ModelReady answers OK with ready=false for unknown, loading or unloaded models.
          if (err instanceof EmulatorError && err.code === grpc.status.INVALID_ARGUMENT) throw err;
          return { ready: false };
        }
      }),
      ModelMetadata: unary((req) => {
        const { rec, cfg } = lc.lookup(req.name as string, req.version as string);
        const batch = cfg.summary.maxBatchSize > 0;
        const tensor = (t: { name: string; dataType: string; dims: number[] }) => ({
          name: t.name,
          datatype: t.dataType === 'TYPE_STRING' ? 'BYTES' : t.dataType.replace(/^TYPE_/, ''),
          shape: batch ? [-1, ...t.dims] : t.dims,
        });
        return {
          name: rec.name,
          versions: [...rec.versions.values()]
            .filter((v) => v.state === 'READY')
            .map((v) => String(v.version)),
          platform: cfg.platform,
          inputs: cfg.summary.inputs.map(tensor),
          outputs: cfg.summary.outputs.map(tensor),
        };
      }),
      ModelConfig: unary((req) => ({
        config: lc.lookup(req.name as string, req.version as string).cfg.json,
      })),
      ModelStatistics: unary((req) => this.statistics(req.name as string, req.version as string)),
      RepositoryIndex: unary(async (req) => {
        if (req.repository_name)
          throw new EmulatorError(grpc.status.UNIMPLEMENTED, texts.repositoryNameUnsupported());
        return { models: await lc.index(req.ready === true) };
      }),
      RepositoryModelLoad: unary(async (req) => {
        if (req.repository_name)
          throw new EmulatorError(grpc.status.UNIMPLEMENTED, texts.repositoryNameUnsupported());
        let config: string | undefined;
        const files = new Map<string, Buffer>();
        for (const [key, p] of Object.entries((req.parameters ?? {}) as Record<string, Raw>)) {
          const choice = p.parameter_choice as string | undefined;
          if (key === 'config') {
            if (choice !== 'string_param')
              throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.configNotString());
            config = p.string_param as string;
          } else if (key.startsWith('file:')) {
            if (choice !== 'bytes_param')
              throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.fileNotBytes(key));
            files.set(key.slice('file:'.length), p.bytes_param as Buffer);
          } else {
            throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.unrecognizedLoadParameter(key));
          }
        }
        const name = req.model_name as string;
        if (name.trim() === '') throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.emptyName());
        if (name === '..' || name.includes('/')) {
          throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.traversalName(name));
        }
        await lc.load(name, config, files);
        return {};
      }),
      RepositoryModelUnload: unary(async (req) => {
        if (req.repository_name)
          throw new EmulatorError(grpc.status.UNIMPLEMENTED, texts.repositoryNameUnsupported());
        let dependents = false;
        for (const [key, p] of Object.entries((req.parameters ?? {}) as Record<string, Raw>)) {
          if (key === 'unload_dependents') {
            if (p.parameter_choice !== 'bool_param') {
              throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.unloadDependentsNotBool());
            }
            dependents = p.bool_param === true;
          }
        }
        await lc.unload(req.model_name as string, dependents);
        return {};
      }),
      ModelInfer: unary((req) => this.infer(req as unknown as WireInferRequest)),
      ModelStreamInfer: (call: grpc.ServerDuplexStream<Raw, Raw>) => {
        let pending = Promise.resolve();
        call.on('data', (req: Raw) => {
          pending = pending.then(async () => {
            try {
              call.write({
                error_message: '',
                infer_response: await this.infer(req as unknown as WireInferRequest),
              });
            } catch (err) {
              call.write({ error_message: (err as Error).message });
            }
          });
        });
        call.on('end', () => void pending.then(() => call.end()));
      },
      SystemSharedMemoryStatus: notEmulated,
      SystemSharedMemoryRegister: notEmulated,
      SystemSharedMemoryUnregister: notEmulated,
      CudaSharedMemoryStatus: notEmulated,
      CudaSharedMemoryRegister: notEmulated,
      CudaSharedMemoryUnregister: notEmulated,
      TraceSetting: notEmulated,
      LogSettings: notEmulated,
    };
  }

  private statistics(name: string, version: string): Raw {
    const lc = this.lifecycle;
    const records = name === '' ? [...lc.records.values()].filter((r) => lc.isReady(r)) : [];
    if (name !== '') {
      try {
        records.push(lc.lookup(name, version).rec);
      } catch {
        throw new EmulatorError(grpc.status.INVALID_ARGUMENT, texts.statsNotAvailable(name));
      }
    }
    return {
      model_stats: records.flatMap((r) =>
        [...r.versions.values()]
          .filter((v) => v.state === 'READY')
          .map((v) => ({
            name: r.name,
            version: String(v.version),
            last_inference: r.stats.lastInference,
            inference_count: r.stats.inferenceCount,
            execution_count: r.stats.executionCount,
            inference_stats: {
              success: { count: r.stats.successCount, ns: r.stats.successNs },
              fail: { count: r.stats.failCount, ns: r.stats.failNs },
            },
            // Only tensorrt and onnxruntime report it, at load, with the memory tracker on.
            memory_usage: r.config ? lc.memoryUsage(r.config, v) : [],
          })),
      ),
    };
  }

  private async infer(req: WireInferRequest): Promise<Raw> {
    const lc = this.lifecycle;
    const name = req.model_name;
    const { rec, vr, cfg } = lc.lookup(name, req.model_version);
    const counter = lc.counter(name);
    const started = process.hrtime.bigint();
    lc.enter(vr);
    try {
      const inputs = prepareInputs(name, cfg, req);
      const fault = lc.takeInferFault(name);
      if (fault) throw new EmulatorError(fault.code, fault.message);
      const latency = this.inferLatencyMs + cfg.inferMs;
      let outputs: Map<string, Tensor>;
      // One request at a time per instance; the others queue.
      const { instance, done } = await lc.execute(vr, cfg);
      try {
        lc.events.emit('infer-started', name);
        const first = [...inputs.values()][0];
        lc.grow(cfg, instance, cfg.summary.maxBatchSize > 0 && first ? (first.shape[0] ?? 1) : 1);
        if (latency > 0) await sleep(latency);
        outputs = await this.run(name, cfg, inputs, 0);
      } finally {
        done();
      }
      const wanted =
        req.outputs.length > 0 ? req.outputs.map((o) => o.name) : cfg.summary.outputs.map((o) => o.name);
      const selected = wanted
        .map((n) => [n, outputs.get(n)] as const)
        .filter((e): e is [string, Tensor] => !!e[1]);
      const first = [...inputs.values()][0];
      const batch = cfg.summary.maxBatchSize > 0 && first ? first.shape[0] : 1;
      rec.stats.inferenceCount += batch;
      rec.stats.executionCount += 1;
      rec.stats.successCount += 1;
      rec.stats.successNs += Number(process.hrtime.bigint() - started);
      rec.stats.lastInference = Date.now();
      counter.infers++;
      return {
        model_name: name,
        model_version: String(vr.version),
        id: req.id,
        outputs: selected.map(([n, t]) => ({ name: n, datatype: t.datatype, shape: t.shape })),
        raw_output_contents: selected.map(([, t]) => t.raw),
      };
    } catch (err) {
      rec.stats.failCount += 1;
      rec.stats.failNs += Number(process.hrtime.bigint() - started);
      counter.inferFailures++;
      throw err;
    } finally {
      lc.leave(vr);
    }
  }

  /** Runs a model; an ensemble routes tensors through its steps as data becomes available. */
  private async run(
    name: string,
    cfg: LoadedConfig,
    inputs: Map<string, Tensor>,
    depth: number,
  ): Promise<Map<string, Tensor>> {
    if (cfg.platform !== 'ensemble') return runModel(cfg, inputs);
    if (depth > 8) throw new EmulatorError(grpc.status.INTERNAL, `ensemble '${name}' nests too deeply`);
    const tensors = new Map(inputs);
    const pending = [...cfg.summary.ensembleSteps];
    while (pending.length > 0) {
      const idx = pending.findIndex((s) => Object.values(s.inputMap).every((t) => tensors.has(t)));
      if (idx < 0)
        throw new EmulatorError(
          grpc.status.INTERNAL,
          `ensemble '${name}' has steps whose inputs are never produced`,
        );
      const step = pending.splice(idx, 1)[0];
      const version = step.modelVersion > 0 ? String(step.modelVersion) : '';
      const target = this.lifecycle.lookup(step.modelName, version);
      const stepInputs = new Map<string, Tensor>();
      for (const [modelInput, tensorName] of Object.entries(step.inputMap)) {
        stepInputs.set(modelInput, tensors.get(tensorName) as Tensor);
      }
      this.lifecycle.enter(target.vr);
      try {
        const result = await this.run(step.modelName, target.cfg, stepInputs, depth + 1);
        this.lifecycle.counter(step.modelName).infers++;
        for (const [modelOutput, tensorName] of Object.entries(step.outputMap)) {
          const t = result.get(modelOutput);
          if (t) tensors.set(tensorName, t);
        }
      } finally {
        this.lifecycle.leave(target.vr);
      }
    }
    return tensors;
  }
}
