import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { localPath, type ArtifactFetcher, type Stager } from '../artifacts';
import { AgentError, ErrorCode, messageOf } from '../errors';
import type { Logger } from '../observability';
import { TritonError, type ModelInferRequest, type ModelInferResponse, type TritonControl } from '../triton';
import { Admission } from './admission';
import { Catalogue } from './catalogue';
import { backoffMs, systemClock, waitForChange, waitOrTimeout, type Clock } from '../time';
import type { EvictionPolicy } from './eviction';
import { FailureMemory } from './failure-memory';
import { Footprints } from './footprints';
import { ChangeSignal } from './change-signal';
import type { DeviceEquation } from './footprint-estimator';
import { GpuLedger, type DeviceReading } from './gpu-ledger';
import type { GpuMemoryProbe } from './gpu-probe';
import { AdoptionDeferred, Lifecycle, isTensorrt, userText, type LifecycleEvents } from './lifecycle';
import { SCALE_PERIOD_MS, decideScaling, type ScalerModel } from './scaler';
import { GROWTH_SHARE, RequestOomRecovery } from './request-oom';
import type { Lease, ModelRecord, ModelStatus, ModelView } from './model-record';
import type { ArtifactGpus, PlacementMode } from './placement';

export interface RegistryOptions {
  /** `s3://bucket/prefix/` or `file:///dir/`: invoking an unknown name loads `<prefix><name>`. */
  modelDataUrl: string | undefined;
  /** How long an invocation waits for its model to load (and a load for room) before a retryable answer. */
  coldLoadWaitMs: number;
  /** How long a failed lazy load is remembered (the same error, at once, without fetching again). */
  failureTtlMs: number;
  loadTimeoutMs: number;
  invokeTimeoutMs: number;
  unloadTimeoutMs: number;
  unloadDrainTimeoutMs: number;
  unloadPollMs: number;
  /** Times a load that Triton fails for lack of memory evicts more and tries again. */
  oomRetries: number;
  /** Unload models idle this long ahead of need (0: never). */
  idleUnloadMs: number;
  /** How models are placed on a multi-GPU instance (default `adaptive`). */
  placement?: PlacementMode;
  /** Whether an artifact's own GPU list is kept (default) or left to the placement. */
  artifactGpus?: ArtifactGpus;
  /** How often the adaptive placement looks at how busy each model's instances are (default 2000 ms). */
  scalePeriodMs?: number;
  /** The agent's own directories (repository, staging, cache): no model may be loaded from inside them. */
  ownDirs?: string[];
  /** How long loads wait, from Triton's start, for its first GPU sample (default 10 s). */
  firstSampleWaitMs?: number;
}

/** GPU capacity settings; absent when eviction is off. */
export interface CapacitySettings {
  probe: GpuMemoryProbe;
  policy: EvictionPolicy;
  headroomBytes: number;
  maxResident: number;
  footprintFactor: number;
  /** How often Triton's GPU metrics are read, and how stale a sample may be. */
  metricsIntervalMs: number;
  /** How long memory an unload released may take to show as free before more models are evicted for it. */
  releaseWaitMs: number;
  footprintsFile: string;
  /** How finely the GPU figures are reported (default 1 MiB, as DCGM's). */
  readingStepBytes?: number;
}

/** The parts the registry works with. */
export interface RegistryParts {
  triton: TritonControl;
  stager: Stager;
  fetcher: Pick<ArtifactFetcher, 'fetch' | 'describe' | 'isLocal'>;
  capacity: CapacitySettings | undefined;
  logger: Logger;
  clock?: Clock;
  events?: LifecycleEvents;
}

/**
 * Failures that belong to the artifact or its store, worth answering at once for a while. Capacity and
 * Triton failures depend on the moment (other models, a restart) and are retried on the next call.
 */
const REMEMBERED: ErrorCode[] = [
  ErrorCode.InvalidModel,
  ErrorCode.ArtifactNotFound,
  ErrorCode.BadRequest,
  ErrorCode.SourceUnavailable,
];

/** A remembered failure's artifact is looked at again at most this often. */
const RECHECK_MS = 1000;
/** How long `open` waits for a first GPU sample (Triton may not be up yet: loads wait for one anyway). */
const OPEN_SAMPLE_WAIT_MS = 2000;
/**
 * How long loads wait, from Triton's start, for the first GPU sample by default, so they are admitted
 * knowing each device's base; after that they go ahead on the accounting alone.
 */
const FIRST_SAMPLE_WAIT_MS = 10_000;

/** Filled in by `acquire` as it goes, so a caller knows how a request that failed spent its time. */
export interface AcquireProgress {
  /** True once the request waited for a load. */
  cold?: boolean;
  /** How long it waited (set when it failed; a lease carries it on success). */
  waitedMs?: number;
}

/** Resolves `<prefix><name>` for lazy loading, refusing names that would leave the prefix. */
export function lazyUrl(prefix: string, name: string): string {
  const parts = name.split('/');
  if (
    name.startsWith('/') ||
    name.includes('\\') ||
    parts.some((p) => p === '..' || p === '.' || p === '') ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f]/.test(name)
  ) {
    throw new AgentError(ErrorCode.BadRequest, `model name '${name}' cannot be resolved under ${prefix}`);
  }
  const base = prefix.endsWith('/') ? prefix : `${prefix}/`;
  if (base.startsWith('file://')) return base + parts.map(encodeURIComponent).join('/');
  return base + name;
}

/**
 * The registry of MME models: a thin façade over the catalogue (names), the lifecycle (the one load path
 * and the one way off the GPU), admission and the GPU ledger (capacity), footprints, failure memory and
 * the idle reaper. http/ sees records only through `ModelView`.
 */
export class ModelRegistry {
  private readonly catalogue = new Catalogue();
  private readonly failures: FailureMemory;
  private readonly lifecycle: Lifecycle;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly triton: TritonControl;
  private readonly fetcher: Pick<ArtifactFetcher, 'fetch' | 'describe' | 'isLocal'>;
  private readonly events: LifecycleEvents | undefined;
  readonly ledger: GpuLedger | undefined;
  /** Makes room and retries a request that ran out of GPU memory (when capacity is on). */
  private readonly requestOom: RequestOomRecovery | undefined;
  private readonly admission: Admission | undefined;
  /** False once the agent drains: the scaler stops moving models. */
  private moving = true;
  /** True while the adaptive scaler's timer runs. */
  private scaling = false;
  /** Periods in which the scaler looked at the models and decided (not those skipped). */
  private periodsDecided = 0;
  private readonly periodWaiters: { at: number; settle: (err?: Error) => void }[] = [];
  readonly footprints: Footprints | undefined;
  readonly policy: EvictionPolicy | undefined;
  private readonly probe: GpuMemoryProbe | undefined;
  private readonly timers: (() => void)[] = [];
  /** Room being made after an out-of-memory inside a request, per model (one at a time). */
  /** Settles at the first successful GPU sample. */
  private readonly firstSample = new ChangeSignal();
  private sampledOnce = false;
  /** When Triton's metrics were last expected to answer (start, Triton ready): loads wait from there. */
  private samplesExpectedAt = 0;
  private readonly scalePeriodMs: number;
  private sampling = false;
  private metricsState: 'unknown' | 'available' | 'unavailable' = 'unknown';
  private identityWarned = false;

  constructor(
    parts: RegistryParts,
    private readonly options: RegistryOptions,
  ) {
    this.clock = parts.clock ?? systemClock;
    this.logger = parts.logger;
    this.triton = parts.triton;
    this.fetcher = parts.fetcher;
    this.events = parts.events;
    this.failures = new FailureMemory(options.failureTtlMs, this.clock);
    this.scalePeriodMs = options.scalePeriodMs ?? SCALE_PERIOD_MS;
    const cap = parts.capacity;
    let capacity: ConstructorParameters<typeof Lifecycle>[0]['capacity'];
    if (cap) {
      this.probe = cap.probe;
      this.policy = cap.policy;
      const ledger = new GpuLedger(
        {
          headroomBytes: cap.headroomBytes,
          metricsIntervalMs: cap.metricsIntervalMs,
          releaseWaitMs: cap.releaseWaitMs,
          readingStepBytes: cap.readingStepBytes,
        },
        () => this.clock.now(),
      );
      const footprints = new Footprints({
        factor: cap.footprintFactor,
        file: cap.footprintsFile,
        readingStepBytes: cap.readingStepBytes,
      });
      const admission = new Admission(
        ledger,
        cap.policy,
        {
          evictable: (name, exclude) => {
            const r = this.catalogue.get(name);
            return r !== undefined && r !== exclude && r.state === 'ready' && r.pins === 0 && !r.transition;
          },
          evict: (name) => {
            const r = this.catalogue.get(name);
            if (r)
              void this.lifecycle.leaveGpu(r, 'evicted').catch((err: unknown) => this.warnUnload(r, err));
          },
          pinned: (exclude) => {
            let count = 0;
            let bytes = 0;
            for (const r of this.catalogue.values())
              if (r !== exclude && r.state === 'ready' && r.pins > 0) {
                count++;
                bytes += ledger.chargeOf(r.name);
              }
            return { count, bytes };
          },
        },
        this.clock,
        this.logger,
        { maxResident: cap.maxResident },
      );
      this.ledger = ledger;
      this.admission = admission;
      this.footprints = footprints;
      this.requestOom = new RequestOomRecovery(
        { ledger, admission, footprints, catalogue: this.catalogue, need: (r) => this.lifecycle.need(r) },
        this.clock,
        this.logger,
        { coldLoadWaitMs: options.coldLoadWaitMs },
      );
      capacity = { ledger, admission, footprints, policy: cap.policy, releaseWaitMs: cap.releaseWaitMs };
      this.timers.push(this.clock.every(cap.metricsIntervalMs, () => void this.sample()));
    }
    this.lifecycle = new Lifecycle(
      {
        triton: parts.triton,
        stager: parts.stager,
        fetcher: parts.fetcher,
        catalogue: this.catalogue,
        capacity,
        clock: this.clock,
        logger: this.logger,
        events: parts.events,
      },
      {
        placement: options.placement ?? 'adaptive',
        artifactGpus: options.artifactGpus,
        loadTimeoutMs: options.loadTimeoutMs,
        admissionWaitMs: options.coldLoadWaitMs,
        unloadTimeoutMs: options.unloadTimeoutMs,
        unloadDrainTimeoutMs: options.unloadDrainTimeoutMs,
        unloadPollMs: options.unloadPollMs,
        oomRetries: options.oomRetries,
      },
    );
    if (cap && (options.placement ?? 'adaptive') === 'adaptive') {
      this.scaling = true;
      this.timers.push(this.clock.every(this.scalePeriodMs, () => this.scale()));
    }
    if (options.idleUnloadMs > 0 && this.policy) {
      const period = Math.min(60_000, Math.max(100, options.idleUnloadMs / 4));
      this.timers.push(this.clock.every(period, () => this.unloadIdle()));
    }
  }

  /**
   * Triton is up (again): its metrics should answer from now on. Loads wait (bounded from here) for the
   * first sample, so the devices' bases are known when they are admitted.
   */
  expectSamples(): void {
    this.samplesExpectedAt = this.clock.now();
    void this.sample();
  }

  /** Loads learned footprints and takes the first GPU sample (bounded; loads never wait for later ones). */
  async open(): Promise<void> {
    this.samplesExpectedAt = this.clock.now();
    await this.footprints?.open();
    if (this.probe) {
      await waitForChange(this.clock, this.sample(), OPEN_SAMPLE_WAIT_MS);
    }
  }

  /**
   * Whether Triton's GPU figures can be read: `unknown` until the first try, `unavailable` while the page
   * is unreachable or has no GPU series (capacity then follows the accounting alone).
   */
  get gpuMetrics(): 'unknown' | 'available' | 'unavailable' {
    return this.metricsState;
  }

  /**
   * Loads wait (bounded) for the first GPU sample, so each device's base is known when they are admitted:
   * without it the first loads look to fit where a CUDA context already sits.
   */
  private async awaitFirstSample(): Promise<void> {
    // Bounded from when Triton came up, not per load: a page that stays unreadable costs the first loads
    // at most that long, then capacity follows the accounting alone.
    const deadline = this.samplesExpectedAt + (this.options.firstSampleWaitMs ?? FIRST_SAMPLE_WAIT_MS);
    let asked = false;
    while (this.probe && this.ledger && !this.sampledOnce) {
      const left = deadline - this.clock.now();
      if (left <= 0) return;
      // Ask now rather than at the next tick; then (a reading that was no sample, say a device that
      // failed to read) wait for the timer's next one.
      const attempt = asked || this.sampling ? this.firstSample.next() : this.sample();
      asked = true;
      await waitForChange(this.clock, attempt, Math.min(left, this.ledger.options.metricsIntervalMs));
    }
  }

  /**
   * Reads Triton's GPU metrics in the background and lets them correct the ledger: each settled device is
   * an equation for the footprint estimator, whose beliefs become the resident models' charges and the
   * devices' bases.
   */
  private async sample(): Promise<void> {
    if (!this.probe || !this.ledger || this.sampling) return;
    this.sampling = true;
    try {
      const devices = await this.probe.read();
      const sample = { devices, at: this.clock.now() };
      const ledger = this.ledger;
      ledger.observe(sample, (settled) => this.learnFrom(settled));
      if (this.metricsState === 'unavailable')
        this.logger.info('GPU metrics available again', { devices: devices.length });
      this.metricsState = 'available';
      if (!this.sampledOnce && ledger.known) {
        this.sampledOnce = true;
        this.firstSample.notify();
      }
      if (!ledger.identified && !this.identityWarned) {
        this.identityWarned = true;
        this.logger.warn('GPUs cannot be told apart; they are one pool (every model on every GPU)', {
          devices: devices.length,
          reason: this.probe.identityProblem?.() ?? 'the GPU figures carry no CUDA device ordinal',
        });
      }
    } catch (err) {
      if (this.metricsState !== 'unavailable')
        this.logger.warn('GPU metrics unavailable; capacity follows the accounting alone', {
          error: messageOf(err),
        });
      this.metricsState = 'unavailable';
    } finally {
      this.sampling = false;
    }
  }

  /** Every device reading corrects the footprints and bases; resident charges follow. */
  private learnFrom(readings: readonly DeviceReading[]): void {
    const footprints = this.footprints;
    const ledger = this.ledger;
    if (!footprints || !ledger) return;
    const equations: DeviceEquation[] = [];
    for (const dev of readings) {
      const keys: string[] = [];
      let usable = true;
      let raiseOnly = false;
      for (const name of dev.models) {
        const r = this.catalogue.get(name);
        const key = r?.footprintKey;
        if (!r || !key) {
          usable = false;
          break;
        }
        // Not warmed up since it loaded (no request as large as any it has run has finished, a metrics
        // interval before) although it has run before: it holds its load's memory and perhaps not yet
        // what its requests grew it by, so the reading can show it is larger than believed, not smaller.
        // (A model that never ran is what its load took, until its first request loosens it.)
        const cold = r.warmSince === undefined || r.warmSince > dev.at - ledger.options.metricsIntervalMs;
        if (cold && footprints.largestBatchOf(key) > 0) raiseOnly = true;
        keys.push(key);
      }
      if (usable)
        equations.push({
          uuid: dev.uuid,
          usedBytes: dev.usedBytes,
          keys,
          offsetBytes: dev.offsetBytes,
          offsetVariance: dev.offsetVariance,
          raiseOnly,
          slackBytes: dev.slackBytes,
        });
    }
    footprints.observe(equations);
    for (const dev of readings) {
      const base = footprints.base(dev.uuid);
      if (base !== undefined) ledger.setBase(dev.index, base);
    }
    for (const r of this.catalogue.values())
      if (r.state === 'ready' && r.footprintKey && ledger.stateOf(r.name) === 'resident')
        ledger.update(r.name, this.lifecycle.need(r));
  }

  /** Shutting down: no more moves between GPUs (nor evictions for them) while requests drain. */
  stopMoving(): void {
    this.moving = false;
  }

  /** Stops timers and cancels waits in flight. */
  close(): void {
    this.moving = false;
    this.scaling = false;
    for (const stop of this.timers) stop();
    // Nothing will decide another period: whoever waits for periods stops waiting.
    for (const w of this.periodWaiters.splice(0)) w.settle(new Error('the agent stopped'));
    this.lifecycle.close();
  }

  /** Models in a stable order (by name). */
  list(): readonly ModelView[] {
    return this.catalogue.list();
  }

  /** A record by MME name, or by the TargetModel it was loaded with. */
  get(nameOrTarget: string): ModelView | undefined {
    return this.catalogue.get(nameOrTarget);
  }

  get size(): number {
    return this.catalogue.size;
  }

  /** Resident models (ready to serve). */
  readyCount(): number {
    let n = 0;
    for (const r of this.catalogue.values()) if (r.state === 'ready') n++;
    return n;
  }

  /** Models on the GPU or on their way there. */
  residentCount(): number {
    let n = 0;
    for (const r of this.catalogue.values()) if (r.state !== 'evicted' && r.state !== 'registered') n++;
    return n;
  }

  /**
   * POST /models: fetch (or use in place) the artifact at `url`, stage it under its Triton name and load it.
   * Resolves once the model is ready. 409 when the name is already registered.
   */
  async load(name: string, url: string, targetModel?: string): Promise<ModelView> {
    if (this.catalogue.has(name))
      throw new AgentError(ErrorCode.ModelAlreadyLoaded, `model '${name}' is already loaded`);
    await this.refuseOwnDirs(url);
    await this.awaitFirstSample();
    // Another load of the same name may have started while this one waited.
    if (this.catalogue.has(name))
      throw new AgentError(ErrorCode.ModelAlreadyLoaded, `model '${name}' is already loaded`);
    const record = this.catalogue.add({ name, url, targetModel, lazy: false, now: this.clock.now() });
    this.lifecycle.startLoad(record);
    await this.lifecycle.ensureResident(record);
    // A load by POST /models is the model's first use as far as the policy is concerned.
    if (record.loads === 1)
      this.policy?.onAccess(
        record.name,
        Math.max(1, this.lifecycle.need(record)),
        record.loadMs ?? 1,
        this.clock.now(),
      );
    return record;
  }

  /**
   * A model loaded from inside the agent's own repository or cache would share files the agent removes
   * on its own (a staged model's links, an evictable cache entry): refused, judged by the real path.
   */
  private async refuseOwnDirs(url: string): Promise<void> {
    const own = this.options.ownDirs ?? [];
    if (own.length === 0 || !(url.startsWith('/') || url.startsWith('file://'))) return;
    const real = await fsp.realpath(localPath(url)).catch(() => undefined);
    if (real === undefined) return; // the load itself says it is missing
    for (const dir of own) {
      const ownReal = await fsp.realpath(dir).catch(() => dir);
      if (real === ownReal || real.startsWith(ownReal + path.sep))
        throw new AgentError(
          ErrorCode.BadRequest,
          `model url '${url}' is inside the agent's own directory ${dir}; load the artifact from where it came from`,
        );
    }
  }

  /**
   * After an agent restart: takes over a model the previous run left loaded (see `Lifecycle.adopt`).
   * False, with nothing changed, when it cannot be accounted for; the caller then unloads it.
   */
  async adopt(
    name: string,
    url: string,
    tritonName: string,
    stagedVersion: string,
  ): Promise<'adopted' | 'deferred' | 'refused'> {
    if (this.catalogue.has(name)) return 'refused';
    const record = this.catalogue.add({
      name,
      url,
      targetModel: undefined,
      lazy: false,
      now: this.clock.now(),
    });
    try {
      if (record.tritonName !== tritonName)
        throw new Error('its Triton name is not the one this run gives it');
      await this.lifecycle.adopt(record, stagedVersion);
      this.logger.info('model adopted from the previous run', { model: name, tritonName });
      return 'adopted';
    } catch (err) {
      if (err instanceof AdoptionDeferred) {
        // Listed as before, loaded from its source on first use. It was loaded before: a failed reload
        // is remembered on the record rather than forgetting the model.
        record.loads = 1;
        this.logger.info('model of the previous run loads again on first use', {
          model: name,
          tritonName,
          reason: err.message,
        });
        return 'deferred';
      }
      this.catalogue.remove(record);
      this.logger.info('model of the previous run not adopted', {
        model: name,
        tritonName,
        reason: messageOf(err),
      });
      return 'refused';
    }
  }

  /** Triton names of an adopted (or any registered) model and its ensemble members. */
  tritonNamesOf(name: string): string[] {
    const r = this.catalogue.get(name);
    return r ? [r.tritonName, ...(r.staged?.memberNames ?? [])] : [];
  }

  /**
   * Pins a model for one request. Loads it if it is evicted, or (with MODEL_DATA_URL) unknown, and waits
   * (bounded by the cold-load wait) for a load in progress; a model being unloaded is waited for.
   */
  async acquire(nameOrTarget: string, progress?: AcquireProgress): Promise<Lease> {
    const started = this.clock.now();
    const deadline = started + this.options.coldLoadWaitMs;
    let cold = false;
    try {
      return await this.acquireLoop(nameOrTarget, started, deadline, (c) => {
        cold = c;
        if (progress) progress.cold = c;
      });
    } catch (err) {
      // A request that failed while it waited for a load was cold all the same, and waited this long.
      const waitedMs = cold ? this.clock.now() - started : 0;
      if (progress) progress.waitedMs = waitedMs;
      this.events?.acquireFailed?.({
        model: this.catalogue.get(nameOrTarget)?.name ?? nameOrTarget,
        cold,
        waitMs: waitedMs,
        code: err instanceof AgentError ? err.code : ErrorCode.Internal,
      });
      throw err;
    }
  }

  /** True when Triton answers ServerLive within `deadlineMs` (the ping's check: never retried, never throws). */
  tritonLive(deadlineMs: number): Promise<boolean> {
    return this.triton.serverLive({ deadlineMs, noRetry: true, waitForReady: true }).catch(() => false);
  }

  /**
   * An invocation refused before it asked for its model (its content type or body): told to the events
   * like a failed acquisition, so the access log has one line per invocation whatever its outcome.
   */
  rejected(nameOrTarget: string, err: unknown): void {
    this.events?.acquireFailed?.({
      model: this.catalogue.get(nameOrTarget)?.name ?? nameOrTarget,
      cold: false,
      waitMs: 0,
      code: err instanceof AgentError ? err.code : ErrorCode.Internal,
    });
  }

  private async acquireLoop(
    nameOrTarget: string,
    started: number,
    deadline: number,
    setCold: (cold: boolean) => void,
  ): Promise<Lease> {
    let cost: number | undefined;
    let cold = false;
    for (;;) {
      const record = this.catalogue.get(nameOrTarget) ?? (await this.startLazyLoad(nameOrTarget));
      // What this access would cost if it misses, as it stands now (the download counts if not on disk).
      cost ??= (record.loadMs ?? 1000) + (record.artifact ? 0 : record.fetchMs);
      if (record.state === 'ready') {
        // Counted once the model answers: names that never load (a bad TargetModel) leave no trace in the
        // policy, so arbitrary names cannot grow its memory.
        this.policy?.onAccess(record.name, Math.max(1, this.lifecycle.need(record)), cost, this.clock.now());
        return this.pin(record, started, cold);
      }
      cold = true;
      setCold(true);
      const left = deadline - this.clock.now();
      const notReady = () =>
        new AgentError(
          ErrorCode.ModelNotReady,
          `model '${nameOrTarget}' is still ${record.state}; try again shortly`,
        );
      if (left <= 0) throw notReady();
      let timedOut = false;
      const loaded = this.lifecycle.ensureResident(record).catch((err: unknown) => {
        // Deleted while this request waited (not failed): with MODEL_DATA_URL the next turn loads it anew.
        if (!record.registered && !record.lastFailure && this.options.modelDataUrl) return;
        throw err;
      });
      await waitOrTimeout(loaded, this.clock, left, () => {
        timedOut = true;
      });
      if (timedOut) throw notReady();
    }
  }

  private pin(record: ModelRecord, started: number, cold: boolean): Lease {
    record.pins++;
    record.lastUsedAt = this.clock.now();
    // A model that was resident was not waited for, however long the lookup took.
    const waitedMs = cold ? this.clock.now() - started : 0;
    this.events?.acquired?.({
      model: record.name,
      hit: !cold,
      waitMs: waitedMs,
      footprintBytes: this.lifecycle.need(record),
      loadMs: record.loadMs,
      downloadMs: record.fetchMs,
      // Requests that waited for the same load share its evictions: only the first is charged with them.
      evicted: cold && !record.victimsReported ? record.victims : [],
    });
    if (cold) record.victimsReported = true;
    let released = false;
    return {
      record,
      waitedMs,
      cold,
      release: () => {
        if (released) return;
        released = true;
        this.lifecycle.unpin(record);
      },
    };
  }

  /**
   * An unknown name with MODEL_DATA_URL set: load `<prefix><name>` through the one load path. A recent
   * failure of the same artifact version is answered at once; a changed artifact is tried again.
   */
  private async startLazyLoad(name: string): Promise<ModelRecord> {
    const prefix = this.options.modelDataUrl;
    if (!prefix) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
    const url = lazyUrl(prefix, name);
    const failed = this.failures.recall(name);
    if (failed) {
      if (this.clock.now() - failed.checkedAt < RECHECK_MS) throw failed.error;
      failed.checkedAt = this.clock.now();
      const version = await this.fetcher.describe(url).then(
        (i) => i.version,
        () => '',
      );
      if (version === failed.version) throw failed.error;
      this.failures.forget(name);
    }
    await this.awaitFirstSample();
    // Another caller may have started it while we looked.
    const existing = this.catalogue.get(name);
    if (existing) return existing;
    const record = this.catalogue.add({
      name,
      url,
      targetModel: undefined,
      lazy: true,
      now: this.clock.now(),
    });
    this.lifecycle.startLoad(record);
    void record.transition?.then(() => {
      const e = record.lastFailure;
      if (!record.registered && e && REMEMBERED.includes(e.code))
        this.failures.remember(name, e, record.versionSeen);
    });
    return record;
  }

  /**
   * Runs one inference on a pinned model. If Triton no longer has the model (it restarted), the model is
   * loaded again through the one load path and the request is retried once. Errors name the user's model.
   */
  async infer(
    lease: Lease,
    request: Omit<ModelInferRequest, 'model_name'>,
    options: { signal?: AbortSignal } = {},
  ): Promise<ModelInferResponse> {
    const record = this.catalogue.get(lease.record.name);
    if (!record || record !== lease.record)
      throw new AgentError(ErrorCode.ModelNotFound, `model '${lease.record.name}' is not loaded`);
    checkTensorNames(record, request);
    const batch = this.noteBatch(record, request);
    // A NotFound from before a reload finished must not send the reloaded model away again.
    const loadsAtCall = record.loads;
    const call = async () => {
      const t0 = this.clock.now();
      try {
        const res = await this.triton.infer(
          { ...request, model_name: record.tritonName },
          { deadlineMs: this.options.invokeTimeoutMs, signal: options.signal },
        );
        this.noteWarm(record, batch);
        return res;
      } finally {
        // How busy its instances are, for the adaptive placement.
        record.busyMs += this.clock.now() - t0;
      }
    };
    try {
      const res = await call();
      record.invocations++;
      return res;
    } catch (err) {
      // Triton no longer has the model (it restarted): reload it, unless it is on its way out.
      const lost = err instanceof TritonError && err.kind === 'NotFound' && record.registered;
      if (lost && record.state !== 'unloading') {
        if (record.state === 'ready' && record.loads === loadsAtCall) {
          this.logger.warn('model missing from Triton; reloading', {
            model: record.name,
            tritonName: record.tritonName,
          });
          this.lifecycle.markLost(record);
        }
        await this.lifecycle.ensureResident(record);
        const res = await call().catch((e: unknown) => {
          throw this.asUserError(record, e);
        });
        record.invocations++;
        return res;
      }
      // Out of memory inside the request: the model grew past its charge (PyTorch's cache, workspaces).
      // Charge it more, make room on its GPUs and try again (request-oom.ts); 507 only once nothing can go.
      let failure: unknown = err;
      if (this.requestOom && failure instanceof TritonError && failure.kind === 'OutOfMemory') {
        try {
          const res = await this.requestOom.retry(record, failure, call);
          record.invocations++;
          return res;
        } catch (again) {
          failure = again;
        }
      }
      throw this.asUserError(record, failure);
    }
  }

  /**
   * A request's batch larger than any the model has run: it will take more memory (PyTorch keeps what the
   * largest batch needed), so its footprint is loosened for the samples to correct.
   */
  private noteBatch(record: ModelRecord, request: Omit<ModelInferRequest, 'model_name'>): number {
    const batch = (record.io?.maxBatchSize ?? 0) > 0 ? Number(request.inputs[0]?.shape[0] ?? 1) : 1;
    if (!(batch > record.peakBatch)) return batch;
    record.peakBatch = batch;
    const key = record.footprintKey;
    if (key && this.footprints?.noteBatch(key, batch)) this.footprints.loosen(key, GROWTH_SHARE);
    return batch;
  }

  /**
   * A request of `batch` finished: once one as large as any this artifact has run has finished since the
   * model loaded, its memory has grown to its footprint (and readings a metrics interval later show it).
   */
  private noteWarm(record: ModelRecord, batch: number): void {
    if (record.warmSince !== undefined || !record.footprintKey || !this.footprints) return;
    if (batch >= this.footprints.largestBatchOf(record.footprintKey)) record.warmSince = this.clock.now();
  }

  private asUserError(record: ModelRecord, err: unknown): unknown {
    if (!(err instanceof AgentError)) return err;
    const text = userText(record, err.message);
    return text === err.message ? err : new AgentError(err.code, text, { cause: err });
  }

  /**
   * Triton restarted and lost every model: account for them as evicted, then bring them back most
   * valuable first (the reverse of the policy's victim order), one at a time, through the one load path.
   */
  async restoreAfterTritonRestart(): Promise<void> {
    const resident = [...this.catalogue.values()].filter((r) => r.state === 'ready');
    const order = this.policy
      ? this.policy
          .chooseVictims(Number.MAX_SAFE_INTEGER, this.clock.now(), (n) => resident.some((r) => r.name === n))
          .reverse()
      : resident.map((r) => r.name);
    for (const r of resident) if (!order.includes(r.name)) order.unshift(r.name);
    // Only the resident models' charges go (markLost): loads in flight keep their reservations.
    for (const r of resident) this.lifecycle.markLost(r);
    for (const name of order) {
      const r = this.catalogue.get(name);
      if (!r) continue;
      await this.lifecycle.ensureResident(r).catch((err: unknown) => {
        this.logger.warn('could not bring a model back after Triton restarted', {
          model: name,
          error: messageOf(err),
        });
      });
    }
  }

  /** A model's state for the status route, including a remembered failure. */
  status(name: string): ModelStatus | undefined {
    const r = this.catalogue.get(name);
    if (r) {
      const state: ModelStatus['state'] =
        r.state === 'ready' ? 'resident' : r.state === 'loading' ? (r.phase ?? 'fetching') : r.state;
      const out: ModelStatus = {
        modelName: r.name,
        modelUrl: r.url,
        state,
        invocations: r.invocations,
        loads: r.loads,
        evictions: r.evictions,
      };
      if (r.progress && r.phase === 'fetching') {
        const { bytes, totalBytes } = r.progress;
        out.progress = {
          bytes,
          totalBytes,
          percent: totalBytes > 0 ? Math.round((1000 * bytes) / totalBytes) / 10 : 0,
        };
      }
      if (r.footprintKey) {
        out.footprintBytes = this.lifecycle.need(r);
        out.footprintMeasured = this.footprints?.learned(r.footprintKey) ?? false;
      }
      if (r.loadMs !== undefined) out.loadMs = r.loadMs;
      if (r.loadedAt !== undefined) out.loadedAt = new Date(r.loadedAt).toISOString();
      return out;
    }
    const failed = this.failures.recall(name);
    if (!failed) return undefined;
    const url = this.options.modelDataUrl ? lazyUrl(this.options.modelDataUrl, name) : '';
    return { modelName: name, modelUrl: url, state: 'failed', error: failed.error.message };
  }

  /**
   * Resolves once the scaler has decided `n` more periods (every move of theirs started): an event to wait
   * on for "nothing moved over n periods", rather than a guess at how long n periods take.
   */
  scalerPeriods(n: number): Promise<void> {
    if (!this.scaling) return Promise.reject(new Error('the adaptive scaler is not running'));
    return new Promise((resolve, reject) =>
      this.periodWaiters.push({
        at: this.periodsDecided + n,
        settle: (err) => (err ? reject(err) : resolve()),
      }),
    );
  }

  private scale(): void {
    if (!this.decidePeriod()) return;
    this.periodsDecided++;
    for (let i = this.periodWaiters.length - 1; i >= 0; i--) {
      if (this.periodWaiters[i].at <= this.periodsDecided) this.periodWaiters.splice(i, 1)[0].settle();
    }
  }

  /**
   * Adaptive placement, every scaler period: gathers each model's busy time and requests over the
   * period, lets `decideScaling` (scaler.ts) choose, and carries its moves out.
   */
  /** One period's decision; false when there was nothing to decide (one GPU, no ledger yet, draining). */
  private decidePeriod(): boolean {
    const ledger = this.ledger;
    const admission = this.admission;
    if (!ledger || !admission || ledger.devices.length < 2 || !this.moving) return false;
    const now = this.clock.now();
    const records = [...this.catalogue.values()];
    const models: ScalerModel[] = records.map((r) => {
      const m: ScalerModel = {
        name: r.name,
        busyMs: r.busyMs,
        requests: r.invocations - r.invocationsSeen,
        smoothedRequests: r.requestsPerPeriod,
        devices: r.devices,
        movable:
          r.state === 'ready' &&
          r.placement.kind === 'choose' &&
          !r.transition &&
          // An ensemble's members are placed with it, never moved (Triton would have to update each).
          (r.staged?.memberNames.length ?? 0) === 0 &&
          now >= r.scaleRetryAt,
        tensorrt: isTensorrt(r.platform),
        loadMs: r.loadMs,
        coolPeriods: r.coolPeriods,
      };
      r.busyMs = 0;
      r.invocationsSeen = r.invocations;
      return m;
    });
    const decision = decideScaling(
      models,
      {
        count: ledger.devices.length,
        chargeOf: (name) => ledger.chargeOf(name),
        freeOn: (d) => ledger.freeOn(d),
        roomOn: (name, d, bytes) => {
          const r = this.catalogue.get(name);
          return r ? admission.roomOn(r, d, bytes) : undefined;
        },
      },
      this.scalePeriodMs,
    );
    for (const [name, smoothed] of decision.smoothedRequests) {
      const r = this.catalogue.get(name);
      if (r) r.requestsPerPeriod = smoothed;
    }
    for (const [name, cool] of decision.coolPeriods) {
      const r = this.catalogue.get(name);
      if (r) r.coolPeriods = cool;
    }
    for (const move of decision.moves) {
      const r = this.catalogue.get(move.name);
      if (r) this.move(r, move.devices, move.victims);
    }
    return true;
  }

  /** Starts a move between GPUs; one that fails is not tried again for a while (doubling, up to 64 periods). */
  private move(r: ModelRecord, devices: number[], victims: readonly string[] = []): void {
    void this.lifecycle.rescale(r, devices, victims).then((moved) => {
      if (moved) {
        r.scaleFailures = 0;
        r.scaleRetryAt = 0;
      } else {
        r.scaleFailures++;
        r.scaleRetryAt =
          this.clock.now() +
          backoffMs(r.scaleFailures, { baseMs: this.scalePeriodMs, maxMs: this.scalePeriodMs * 64 });
      }
    });
  }

  /** Keep-alive: evicts models nobody used for `idleUnloadMs`, ahead of need. */
  private unloadIdle(): void {
    const now = this.clock.now();
    for (const r of [...this.catalogue.values()]) {
      if (
        r.state === 'ready' &&
        r.pins === 0 &&
        !r.transition &&
        now - r.lastUsedAt >= this.options.idleUnloadMs
      )
        void this.lifecycle.leaveGpu(r, 'evicted').catch((err: unknown) => this.warnUnload(r, err));
    }
  }

  private warnUnload(r: ModelRecord, err: unknown): void {
    this.logger.warn('unload failed; the model stays resident', { model: r.name, error: messageOf(err) });
  }

  /**
   * DELETE /models/<name>: waits for a load or unload in flight, then for the model's requests (bounded),
   * unloads it and its composing models, waits until Triton reports them unloaded (bounded), removes the
   * staged directories and forgets it.
   */
  async unload(name: string): Promise<void> {
    for (;;) {
      const record = this.catalogue.get(name);
      if (!record || record.name !== name)
        throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
      if (record.transition) {
        await record.transition;
        continue;
      }
      if (record.state === 'ready') return this.lifecycle.leaveGpu(record, 'forgotten');
      this.catalogue.remove(record);
      this.policy?.onEvict(record.name, this.clock.now());
      return;
    }
  }
}

/** Longest tensor name quoted back in an error. */
const QUOTED_NAME_CHARS = 64;

/**
 * Every input and requested output must be one the model has: checked here, so a bad (or huge) name is a
 * 400 naming the model's tensors, and never reaches Triton (which quotes names back in its errors).
 */
function checkTensorNames(record: ModelRecord, request: Omit<ModelInferRequest, 'model_name'>): void {
  const io = record.io;
  if (!io) return;
  const quote = (n: string) => (n.length > QUOTED_NAME_CHARS ? `${n.slice(0, QUOTED_NAME_CHARS)}…` : n);
  const bad = (kind: string, name: string, known: { name: string }[]) =>
    new AgentError(
      ErrorCode.BadRequest,
      `model '${record.name}' has no ${kind} '${quote(name)}'; its ${kind}s are ${known.map((t) => `'${t.name}'`).join(', ') || 'none'}`,
    );
  for (const t of request.inputs)
    if (!io.inputs.some((x) => x.name === t.name)) throw bad('input', t.name, io.inputs);
  for (const t of request.outputs ?? [])
    if (!io.outputs.some((x) => x.name === t.name)) throw bad('output', t.name, io.outputs);
}
