import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ArtifactFetcher, DiskCache, FileSource, RepositoryStager, S3Source } from './artifacts';
import type { AgentConfig } from './config';
import { messageOf } from './errors';
import { createApp } from './http';
import {
  CapacityModel,
  ModelRegistry,
  TritonGpuProbe,
  createPolicy,
  systemClock,
  type Clock,
  type GpuMemoryProbe,
} from './models';
import type { Logger } from './observability';
import { TritonClient, TritonMetricsReader, type TritonControl } from './triton';

export interface AgentParts {
  triton?: TritonControl;
  gpu?: GpuMemoryProbe;
  clock?: Clock;
}

/**
 * The agent assembled from its parts: Triton client, stager, registry and HTTP server. `main.ts` builds
 * one from the environment; tests build one around the emulator.
 */
export class Agent {
  readonly triton: TritonControl;
  readonly stager: RepositoryStager;
  readonly cache: DiskCache;
  readonly fetcher: ArtifactFetcher;
  readonly capacity: CapacityModel | undefined;
  readonly registry: ModelRegistry;
  private server: http.Server | undefined;

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
    this.stager = new RepositoryStager(config.modelRepository, config.stagingDir, config.stageMode);
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
      limits: { maxBytes: config.maxArtifactBytes, maxEntries: config.maxArtifactEntries },
      concurrency: config.fetchConcurrency,
      stallTimeoutMs: config.fetchStallTimeoutMs,
      progressIntervalMs: config.progressLogMs,
      logger,
    });
    const clock = parts.clock ?? systemClock;
    const evicting = config.evictionPolicy !== 'none';
    this.capacity = evicting
      ? new CapacityModel(
          parts.gpu ?? new TritonGpuProbe(new TritonMetricsReader(config.tritonMetricsUrl)),
          {
            headroomBytes: config.gpuHeadroomBytes,
            maxResident: config.maxResidentModels,
            footprintFactor: config.footprintFactor,
            metricsIntervalMs: config.metricsIntervalMs,
            footprintsFile: path.join(config.cacheDir, 'footprints.json'),
          },
          () => clock.now(),
        )
      : undefined;
    this.registry = new ModelRegistry(
      {
        triton: this.triton,
        stager: this.stager,
        fetcher: this.fetcher,
        capacity: this.capacity,
        policy: evicting
          ? createPolicy(config.evictionPolicy, { churnGuard: config.churnGuardMs })
          : undefined,
        logger,
        clock,
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
        releaseWaitMs: config.releaseWaitMs,
        idleUnloadMs: config.idleUnloadMs,
      },
    );
  }

  /** The port the HTTP server listens on (after start). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    await this.stager.cleanStaging();
    await this.cache.open();
    await this.capacity?.open();
    await this.forgetPreviousRun();
    const app = createApp({
      registry: this.registry,
      triton: this.triton,
      logger: this.logger,
      settings: {
        singleModel: () => (this.config.multiModel ? undefined : (this.singleModel ?? '')),
        maxBodyBytes: this.config.maxBodyBytes,

        defaultModelName: this.config.defaultModelName,
        listPageSize: this.config.listPageSize,
      },
    });
    const server = http.createServer(app);
    // SageMaker keeps connections open between invocations; stay above its idle timeout.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.port, this.config.host, () => resolve());
    });
    this.server = server;
    this.logger.info('agent listening', { port: this.port, triton: this.config.tritonGrpcUrl });
    if (!this.config.multiModel) this.loadSingleModel();
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
   * Models staged by an earlier run of the agent are not in this run's registry: unload them from Triton
   * and remove their directories, so Triton and the repository match the (empty) registry. SageMaker
   * re-issues loads for models it still wants.
   */
  private async forgetPreviousRun(): Promise<void> {
    const staged = await this.stager.listStaged();
    if (staged.length === 0) return;
    for (const s of staged) {
      await this.triton.unload(s.tritonName, { unloadDependents: true }).catch((err: unknown) => {
        this.logger.warn('could not unload a model of a previous run', {
          tritonName: s.tritonName,
          error: messageOf(err),
        });
      });
      await this.stager.remove({
        tritonName: s.tritonName,
        memberNames: [],
        dirs: [`${this.config.modelRepository}/${s.tritonName}`],
      });
    }
    this.logger.info('removed models staged by a previous run', { count: staged.length });
  }

  /** Stops accepting connections, lets in-flight requests finish (bounded), then closes Triton's channel. */
  async stop(graceMs = 25_000): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
    }
    this.registry.close();
    this.triton.close();
  }
}
