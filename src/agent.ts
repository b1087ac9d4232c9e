import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  ArtifactFetcher,
  DiskCache,
  FileSource,
  RepositoryStager,
  S3Source,
  tritonNameFor,
} from './artifacts';
import type { AgentConfig } from './config';
import { messageOf } from './errors';
import { AgentServer, createApp } from './http';
import { ModelRegistry, TritonGpuProbe, systemClock, type Clock, type GpuMemoryProbe } from './models';
import { policyFromSettings } from './models/eviction';
import { AccessLog, AgentMetrics, openAccessLog, type Logger, type StateSnapshot } from './observability';
import type { LifecycleEvents } from './models';
import {
  ManagedTriton,
  readGpuMap,
  TritonClient,
  TritonMetricsReader,
  tritonServerArgs,
  type GpuMap,
  type TritonControl,
} from './triton';

/** How long nvidia-smi may take at start (it can be slow while the driver initialises). */
const NVIDIA_SMI_TIMEOUT_MS = 15_000;

export interface AgentParts {
  triton?: TritonControl;
  gpu?: GpuMemoryProbe;
  clock?: Clock;
}

/**
 * The agent assembled from its parts: Triton client, stager, registry and HTTP server. `main.ts` builds
 * one from the environment; tests build one around the emulator.
 */
/** Models adopted (each with a bounded look at its source) at once after an agent restart. */
const ADOPTIONS_AT_ONCE = 8;

export class Agent {
  readonly triton: TritonControl;
  readonly stager: RepositoryStager;
  readonly cache: DiskCache;
  readonly fetcher: ArtifactFetcher;
  readonly registry: ModelRegistry;
  /** Prometheus metrics (GET /metrics): requests from http/, the lifecycle from the registry's events. */
  readonly metrics: AgentMetrics;
  /** The access log (AGENT_ACCESS_LOG_FILE), opened at start. */
  private accessLog: AccessLog = AccessLog.disabled();
  private http: AgentServer | undefined;
  /** Set once stop() began: a start still under way then never listens or serves. */
  private stopped = false;
  /** Which GPU is which CUDA device (nvidia-smi), read at start. */
  gpuMap: GpuMap | undefined;
  /** The supervised tritonserver (TRITON_MANAGED=true), from start() on. */
  tritonProcess: ManagedTriton | undefined;

  constructor(
    readonly config: AgentConfig,
    readonly logger: Logger,
    parts: AgentParts = {},
  ) {
    this.triton =
      parts.triton ??
      new TritonClient({
        address: config.tritonGrpcUrl,
        deadlines: { load: config.loadTimeoutMs, infer: config.invokeTimeoutMs },
      });
    this.stager = new RepositoryStager(
      config.modelRepository,
      config.stagingDir,
      config.stageMode,
      path.join(config.cacheDir, 'marker-key'),
    );
    this.cache = new DiskCache(config.cacheDir, config.cacheBytes);
    this.fetcher = new ArtifactFetcher({
      sources: [
        new FileSource(),
        new S3Source({
          region: config.awsRegion ?? process.env.AWS_DEFAULT_REGION,
          endpoint: config.s3Endpoint,
          forcePathStyle: config.s3ForcePathStyle,
          maxAttempts: config.s3MaxAttempts,
          resumeAttempts: config.s3ResumeAttempts,
          stallTimeoutMs: config.s3StallTimeoutMs,
        }),
      ],
      cache: this.cache,
      limits: {
        maxBytes: config.maxArtifactBytes,
        maxEntries: config.maxArtifactEntries,
        cacheBytes: config.cacheBytes,
      },
      concurrency: config.fetchConcurrency,
      stallTimeoutMs: config.fetchStallTimeoutMs,
      deadlineMs: config.fetchDeadlineMs,
      minBytesPerSec: config.fetchMinBytesPerSec,
      rateWindowMs: config.fetchRateWindowMs,
      // A download that cannot resume safely starts again from byte 0, within the same budget.
      restartAttempts: config.s3ResumeAttempts,
      progressIntervalMs: config.progressLogMs,
      logger,
    });
    const clock = parts.clock ?? systemClock;
    const policy = policyFromSettings(config);
    this.metrics = new AgentMetrics({ maxModelLabels: config.metricsModelLabels });
    this.registry = new ModelRegistry(
      {
        triton: this.triton,
        stager: this.stager,
        fetcher: this.fetcher,
        capacity: policy
          ? {
              probe:
                parts.gpu ??
                new TritonGpuProbe(new TritonMetricsReader(config.tritonMetricsUrl), () => this.gpuMap),
              policy,
              headroomBytes: config.gpuHeadroomBytes,
              maxResident: config.maxResidentModels,
              footprintFactor: config.footprintFactor,
              metricsIntervalMs: config.metricsIntervalMs,
              releaseWaitMs: config.releaseWaitMs,
              footprintsFile: path.join(config.cacheDir, 'footprints.json'),
            }
          : undefined,
        logger,
        clock,
        events: this.lifecycleEvents(),
      },
      {
        modelDataUrl: config.modelDataUrl,
        coldLoadWaitMs: config.coldLoadWaitMs,
        failureTtlMs: config.failureTtlMs,
        loadTimeoutMs: config.loadTimeoutMs,
        invokeTimeoutMs: config.invokeTimeoutMs,
        unloadTimeoutMs: config.unloadTimeoutMs,
        unloadDrainTimeoutMs: config.unloadDrainTimeoutMs,
        unloadPollMs: config.unloadPollMs,
        oomRetries: config.oomRetries,
        placement: config.gpuPlacement,
        artifactGpus: config.artifactGpus,
        ownDirs: [config.modelRepository, config.stagingDir, config.cacheDir],
        scalePeriodMs: config.scalePeriodMs,
        firstSampleWaitMs: config.firstSampleWaitMs,
        idleUnloadMs: config.idleUnloadMs,
      },
    );
  }

  /** Lifecycle events, told to the metrics and the access log. */
  private lifecycleEvents(): LifecycleEvents {
    return {
      acquired: (e) =>
        this.accessLog.invoke({
          model: e.model,
          hit: e.hit,
          waitMs: e.waitMs,
          footprintBytes: e.footprintBytes,
          loadMs: e.loadMs,
          downloadMs: e.downloadMs,
          evicted: e.evicted,
        }),
      // A request that failed before it reached its model gets its line too (one per invocation).
      acquireFailed: (e) =>
        this.accessLog.invoke({ model: e.model, hit: !e.cold, waitMs: e.waitMs, error: e.code }),
      loaded: (e) => {
        this.metrics.loaded(e.model, e.loadMs);
        if (e.fetchMs > 0) this.metrics.downloaded(e.model, e.fetchMs, e.downloadedBytes);
        this.accessLog.lifecycle({
          event: 'load',
          model: e.model,
          footprintBytes: e.footprintBytes,
          loadMs: e.loadMs,
          downloadMs: e.fetchMs,
          evicted: e.evicted,
        });
      },
      unloaded: (e) => {
        this.metrics.unloaded(e.model, e.ms);
        if (e.evicted) this.metrics.evicted(e.model);
        this.accessLog.lifecycle({ event: e.evicted ? 'evict' : 'unload', model: e.model });
      },
      loadFailed: (e) =>
        this.accessLog.lifecycle({ event: 'load-failed', model: e.model, reason: e.message }),
    };
  }

  /** What the gauges of /metrics show, read when it is scraped. */
  private async state(): Promise<StateSnapshot> {
    const ledger = this.registry.ledger;
    const policy = this.registry.policy as { leaderName?: string; name?: string } | undefined;
    const disk = await fsp.statfs(this.config.cacheDir).catch(() => undefined);
    // Per GPU: what models may use (total less the GPU's own use and the headroom), and what is used.
    const byGpu = ledger?.known
      ? ledger.devices.map((a, d) => {
          const total = Math.max(0, a.totalBytes - a.baseBytes - this.config.gpuHeadroomBytes);
          return {
            uuid: a.uuid,
            totalBytes: total,
            usedBytes: Math.min(total, Math.max(0, total - ledger.freeOn(d))),
          };
        })
      : undefined;
    return {
      loadedModels: this.registry.readyCount(),
      capacityTotalBytes: byGpu?.reduce((sum, g) => sum + g.totalBytes, 0),
      capacityUsedBytes: byGpu?.reduce((sum, g) => sum + g.usedBytes, 0),
      capacityByGpu: byGpu,
      gpuMetricsAvailable: ledger ? this.registry.gpuMetrics === 'available' : undefined,
      leader: policy?.leaderName ?? policy?.name,
      diskCacheBytes: this.cache.usedBytes,
      disk: disk
        ? { totalBytes: disk.blocks * disk.bsize, usedBytes: (disk.blocks - disk.bfree) * disk.bsize }
        : undefined,
      gpus: ledger?.sample?.devices.map((d) => ({
        uuid: d.uuid,
        usedBytes: d.usedBytes,
        totalBytes: d.totalBytes,
        utilization: d.utilization ?? 0,
      })),
    };
  }

  /** The port the HTTP server listens on (after start). */
  get port(): number {
    return this.http?.port ?? 0;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /**
   * Opens the caches, listens (answering 503 until ready), starts and awaits tritonserver in managed
   * mode, cleans up what a previous run left in Triton, then serves. Rejects if tritonserver cannot start;
   * the caller then calls stop().
   */
  async start(): Promise<void> {
    this.gpuMap = await readGpuMap({
      bin: this.config.nvidiaSmiBin,
      visibleDevices: this.config.cudaVisibleDevices,
      timeoutMs: NVIDIA_SMI_TIMEOUT_MS,
    });
    if (this.gpuMap.kind === 'known')
      this.logger.info('GPUs identified', {
        gpus: this.gpuMap.gpus.map((g) => ({ ordinal: g.ordinal, uuid: g.uuid, pciBusId: g.pciBusId })),
      });
    else this.logger.info('GPU identity unknown', { reason: this.gpuMap.reason });
    await this.stager.cleanStaging();
    await this.cache.open();
    await this.registry.open();
    this.accessLog = await openAccessLog(this.config, (err) =>
      this.logger.warn('access log write failed', { error: messageOf(err) }),
    );
    this.metrics.setStateSource(() => this.state());
    const managed = this.config.tritonManaged ? this.createManagedTriton() : undefined;
    this.tritonProcess = managed;
    const app = createApp({
      registry: this.registry,
      logger: this.logger,
      settings: {
        singleModel: () => (this.config.multiModel ? undefined : (this.singleModel ?? '')),
        maxBodyBytes: this.config.maxBodyBytes,

        defaultModelName: this.config.defaultModelName,
        listPageSize: this.config.listPageSize,
        tritonReady: managed ? () => managed.ready() : undefined,
        maxJsonResponseBytes: this.config.maxJsonResponseBytes,
        emf: this.config.cloudwatchEmf
          ? { namespace: this.config.cloudwatchEmfNamespace, intervalMs: this.config.cloudwatchEmfIntervalMs }
          : undefined,
      },
      metrics: this.metrics,
    });
    // A signal during start (before the server existed): never listen.
    if (this.stopped) return;
    this.http = new AgentServer(app, this.logger);
    await this.http.listen(this.config.port, this.config.host);
    this.logger.info('agent listening', {
      port: this.port,
      triton: this.config.tritonGrpcUrl,
      tritonManaged: managed !== undefined,
    });
    await managed?.start();
    this.registry.expectSamples();
    await this.reconcileWithPreviousRun();
    if (!this.http.serve()) return;
    this.logger.info('agent ready');
    if (!this.config.multiModel) this.loadSingleModel();
  }

  /** The tritonserver supervisor of managed mode, from the settings. */
  private createManagedTriton(): ManagedTriton {
    const c = this.config;
    return new ManagedTriton({
      bin: c.tritonServerBin,
      args: tritonServerArgs({
        modelRepository: c.modelRepository,
        grpcUrl: c.tritonGrpcUrl,
        metricsUrl: c.tritonMetricsUrl,
        metricsIntervalMs: c.tritonMetricsIntervalMs,
        stopGraceMs: c.tritonStopGraceMs,
        memoryTracker: c.tritonMemoryTracker,
        extra: c.tritonServerArgs,
      }),
      // CUDA counts GPUs in PCI bus order, as nvidia-smi lists them: the agent's GPU map holds for Triton.
      env: { ...process.env, CUDA_DEVICE_ORDER: 'PCI_BUS_ID' },
      // ServerReady on the agent's own channel: ready means the agent can reach it.
      probe: () => this.triton.serverReady({ deadlineMs: 1_000, noRetry: true }),
      logger: this.logger,
      startupTimeoutMs: c.tritonStartupTimeoutMs,
      stopGraceMs: c.tritonStopGraceMs,
      restartBackoffMs: c.tritonRestartBackoffMs,
      maxRestartBackoffMs: c.tritonRestartMaxBackoffMs,
      onRestarted: () => this.restoreAfterTritonRestart(),
      // An agent killed by SIGKILL cannot stop its tritonserver: the next one finds the group here.
      pidFile: path.join(c.cacheDir, 'tritonserver.pid'),
    });
  }

  /** A restarted tritonserver holds no models: the registry brings back the resident ones, most valuable first. */
  private async restoreAfterTritonRestart(): Promise<void> {
    this.logger.info('tritonserver restarted without models; loading the resident ones again');
    this.registry.expectSamples();
    await this.registry.restoreAfterTritonRestart();
  }

  /** The single model's MME name, once known (single-model mode). */
  singleModel: string | undefined;

  /**
   * Single-model mode: SageMaker extracted the model to AGENT_SINGLE_MODEL_DIR before starting the
   * container. Load its folder named by SAGEMAKER_TRITON_DEFAULT_MODEL_NAME, or its only folder, through
   * the one load path; /ping answers 200 only once it is loaded.
   */
  private loadSingleModel(): void {
    const dir = this.config.singleModelDir;
    void (async () => {
      let name = this.config.defaultModelName;
      if (!name) {
        const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
        const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name);
        if (dirs.length !== 1) {
          throw new Error(
            `${dir} holds ${dirs.length} model folders; set SAGEMAKER_TRITON_DEFAULT_MODEL_NAME to the one to serve`,
          );
        }
        name = dirs[0];
      }
      this.singleModel = name;
      await this.registry.load(name, path.join(dir, name));
    })().catch((err: unknown) => {
      this.logger.error('single-model load failed', { dir, error: messageOf(err) });
    });
  }

  /**
   * After an agent restart (Triton kept running): models the previous run staged, that Triton still has
   * ready and whose artifact and staged files are intact, are adopted (registered as resident and counted
   * against capacity), so SageMaker's view and the GPU stay as they were. Everything else the previous run
   * left is unloaded and removed: staged models Triton no longer has ready, and models Triton has ready
   * that no adopted model accounts for.
   */
  private async reconcileWithPreviousRun(): Promise<void> {
    const staged = await this.stager.listStaged();
    const index = await this.triton.repositoryIndex().catch(() => []);
    const ready = new Set(index.filter((e) => e.state === 'READY').map((e) => e.name));
    const kept = new Set<string>();
    let deferred = 0;
    const tops = staged.filter((s) => {
      const { mmeName, url, version } = s.info;
      // A marker edited since this agent wrote it (or one of an older agent) is not believed; an ensemble
      // member is adopted with its top.
      return (
        s.authentic && !!mmeName && !!url && version !== undefined && s.tritonName === tritonNameFor(mmeName)
      );
    });
    // Each adoption asks its source for the version it holds (bounded): a few at once, so a restart with
    // hundreds of models does not wait on them one after another before /ping can answer.
    const queue = tops.filter((s) => ready.has(s.tritonName));
    const adoptNext = async (): Promise<void> => {
      for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
        const { mmeName, url, version } = s.info;
        const outcome = await this.registry.adopt(mmeName, url, s.tritonName, version);
        if (outcome === 'adopted') for (const n of this.registry.tritonNamesOf(mmeName)) kept.add(n);
        if (outcome === 'deferred') deferred++;
      }
    };
    await Promise.all(Array.from({ length: ADOPTIONS_AT_ONCE }, adoptNext));
    const leftovers = new Set([...staged.map((s) => s.tritonName), ...ready].filter((n) => !kept.has(n)));
    for (const name of leftovers) {
      await this.triton.unload(name, { unloadDependents: true }).catch((err: unknown) => {
        this.logger.warn('could not unload a model of a previous run', {
          tritonName: name,
          error: messageOf(err),
        });
      });
      await this.stager.remove({
        tritonName: name,
        memberNames: [],
        dirs: [path.join(this.config.modelRepository, name)],
      });
    }
    if (kept.size > 0 || leftovers.size > 0)
      this.logger.info('reconciled with the previous run', {
        adopted: kept.size,
        removed: leftovers.size,
        loadOnFirstUse: deferred,
      });
  }

  /**
   * Drains and stops, every step bounded: stops accepting connections; answers new requests on open
   * connections 503 with `Connection: close` (so `/ping` fails); closes idle kept-alive connections at
   * once and busy ones after their response; after `drainMs`, answers the requests still running 503 and
   * closes their connections; then stops the managed tritonserver (SIGTERM, SIGKILL after its grace) and
   * Triton's channel. Resolves once all of that is done.
   */
  async stop(drainMs = this.config.drainTimeoutMs): Promise<void> {
    this.stopped = true;
    this.registry.stopMoving();
    await this.http?.drain(drainMs);
    await this.tritonProcess?.stop();
    this.registry.close();
    await this.accessLog.close();
    this.triton.close();
  }
}
