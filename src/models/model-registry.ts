import NodeCache from 'node-cache';
import { AgentError, ErrorCode, isAgentError, messageOf } from '../errors';
import {
  inspectArtifact,
  tritonNameFor,
  type ArtifactFetcher,
  type LocalArtifact,
  type StagedModel,
  type Stager,
} from '../artifacts';
import { isDatatype, type ModelIO, type TensorSpec } from '../inference';
import { TritonError, type TritonControl, type ModelInferRequest, type ModelInferResponse } from '../triton';
import type { Logger } from '../observability';

/** Time, injected so tests and simulations drive it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type ModelState = 'loading' | 'ready' | 'unloading';

/** What a loading model is doing, for the status route and logs. */
export type LoadPhase = 'fetching' | 'staging' | 'loading';

/** One MME model name and everything the agent knows about it. */
export interface ModelRecord {
  readonly name: string;
  /** The url it was loaded from, as given. */
  readonly url: string;
  readonly tritonName: string;
  /** `X-Amzn-SageMaker-Target-Model` sent with the load, if any. */
  readonly targetModel: string | undefined;
  /** Loaded on first invocation from MODEL_DATA_URL rather than by POST /models. */
  readonly lazy: boolean;
  state: ModelState;
  phase: LoadPhase | undefined;
  /** Download progress while fetching. */
  progress: { bytes: number; totalBytes: number } | undefined;
  /** Requests in flight; a pinned model is never unloaded under them. */
  pins: number;
  /** The local copy of the artifact (held in the disk cache while the model is registered). */
  artifact: LocalArtifact | undefined;
  staged: StagedModel | undefined;
  io: ModelIO | undefined;
  loadedAt: number | undefined;
  lastUsedAt: number;
  invocations: number;
  /** Settles when the current load or unload finishes. */
  transition: Promise<void> | undefined;
  drained: (() => void) | undefined;
}

export interface RegistryOptions {
  /** `s3://bucket/prefix/` or `file:///dir/`: invoking an unknown name loads `<prefix><name>`. */
  modelDataUrl: string | undefined;
  /** How long an invocation waits for its model to finish loading before a retryable not-ready answer. */
  coldLoadWaitMs: number;
  /** How long a failed lazy load is remembered (the same error, at once, without fetching again). */
  failureTtlMs: number;
  loadTimeoutMs: number;
  invokeTimeoutMs: number;
  unloadTimeoutMs: number;
  unloadDrainTimeoutMs: number;
  unloadPollMs: number;
}

/** A pinned model, released exactly once when the request is done. */
export interface Lease {
  readonly record: ModelRecord;
  release(): void;
}

export interface ModelStatus {
  modelName: string;
  modelUrl: string;
  state: LoadPhase | 'resident' | 'unloading' | 'failed';
  progress?: { bytes: number; totalBytes: number; percent: number };
  loadedAt?: string;
  invocations?: number;
  error?: string;
}

interface RememberedFailure {
  error: AgentError;
  /** The artifact version that failed ('' when it could not be looked up). */
  version: string;
  checkedAt: number;
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves `p`, or rejects with `onTimeout()` after `ms` (the work itself goes on). */
function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Maps a failed Triton load to what the caller should hear. */
function loadFailure(err: unknown, name: string): AgentError {
  if (err instanceof TritonError) {
    const msg = `model '${name}' failed to load: ${err.tritonMessage.trimEnd()}`;
    switch (err.kind) {
      case 'OutOfMemory':
        return new AgentError(ErrorCode.InsufficientCapacity, msg, { cause: err });
      case 'Unavailable':
      case 'Cancelled':
        return new AgentError(ErrorCode.TritonUnavailable, msg, { cause: err });
      case 'DeadlineExceeded':
        return new AgentError(ErrorCode.DeadlineExceeded, msg, { cause: err });
      default:
        return new AgentError(ErrorCode.InvalidModel, msg, { cause: err });
    }
  }
  if (err instanceof AgentError) return err;
  return new AgentError(ErrorCode.Internal, `model '${name}' failed to load: ${messageOf(err)}`, {
    cause: err,
  });
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
 * The registry of MME models and the one path every load and unload goes through. Per-model work is
 * single-flight: concurrent callers await the same promise (`record.transition`). Invocations pin their
 * model; an unload waits (bounded) for the pins to drain. With MODEL_DATA_URL set, invoking an unknown
 * name registers it and loads it through the same path.
 */
export class ModelRegistry {
  private readonly records = new Map<string, ModelRecord>();
  private readonly byTarget = new Map<string, ModelRecord>();
  /** Why a record's load failed, for everyone who waited on it. */
  private readonly lastFailure = new WeakMap<ModelRecord, AgentError>();
  /** The artifact version a failed load had seen, when it got that far. */
  private readonly versionSeen = new WeakMap<ModelRecord, string>();
  /** Failed lazy loads, remembered for a short time so a storm of invocations does not refetch. */
  private readonly failures: NodeCache;
  private readonly reloading = new Map<ModelRecord, Promise<void>>();

  constructor(
    private readonly triton: TritonControl,
    private readonly stager: Stager,
    private readonly fetcher: ArtifactFetcher,
    private readonly options: RegistryOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.failures = new NodeCache({
      stdTTL: Math.max(1, options.failureTtlMs / 1000),
      checkperiod: 60,
      useClones: false,
    });
  }

  /** Stops timers (the failure cache's expiry check). */
  close(): void {
    this.failures.close();
  }

  /** Models in a stable order (by name). */
  list(): ModelRecord[] {
    return [...this.records.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** A record by MME name, or by the TargetModel it was loaded with. */
  get(nameOrTarget: string): ModelRecord | undefined {
    return this.records.get(nameOrTarget) ?? this.byTarget.get(nameOrTarget);
  }

  get size(): number {
    return this.records.size;
  }

  /**
   * POST /models: fetch (or use in place) the artifact at `url`, stage it under its Triton name and load
   * it. Resolves once the model is ready. 409 when the name is already loaded or loading.
   */
  async load(name: string, url: string, targetModel?: string): Promise<ModelRecord> {
    if (this.records.has(name)) {
      throw new AgentError(ErrorCode.ModelAlreadyLoaded, `model '${name}' is already loaded`);
    }
    const record = this.register(name, url, targetModel, false);
    await record.transition;
    if (record.state !== 'ready') {
      throw (
        this.lastFailure.get(record) ?? new AgentError(ErrorCode.Internal, `model '${name}' did not load`)
      );
    }
    return record;
  }

  /** Creates the record and starts its load; `record.transition` settles when the load is over. */
  private register(name: string, url: string, targetModel: string | undefined, lazy: boolean): ModelRecord {
    const record: ModelRecord = {
      name,
      url,
      tritonName: tritonNameFor(name),
      targetModel,
      lazy,
      state: 'loading',
      phase: 'fetching',
      progress: undefined,
      pins: 0,
      artifact: undefined,
      staged: undefined,
      io: undefined,
      loadedAt: undefined,
      lastUsedAt: this.clock.now(),
      invocations: 0,
      transition: undefined,
      drained: undefined,
    };
    this.records.set(name, record);
    if (targetModel) this.byTarget.set(targetModel, record);
    record.transition = this.stageAndLoad(record).then(
      () => {
        record.transition = undefined;
      },
      (err: unknown) => {
        const e = isAgentError(err)
          ? err
          : new AgentError(ErrorCode.Internal, messageOf(err), { cause: err });
        this.lastFailure.set(record, e);
        this.forget(record);
        record.transition = undefined;
        if (lazy && REMEMBERED.includes(e.code)) {
          const version = this.versionSeen.get(record) ?? '';
          this.failures.set<RememberedFailure>(name, { error: e, version, checkedAt: this.clock.now() });
        }
        this.logger.warn('model failed to load', { model: name, url, code: e.code, error: e.message });
      },
    );
    return record;
  }

  private forget(record: ModelRecord): void {
    if (this.records.get(record.name) === record) this.records.delete(record.name);
    if (record.targetModel && this.byTarget.get(record.targetModel) === record) {
      this.byTarget.delete(record.targetModel);
    }
  }

  /** The one load path: fetch, stage, load, read the model's tensors. Any failure undoes what it did. */
  private async stageAndLoad(record: ModelRecord): Promise<void> {
    const started = this.clock.now();
    const artifact = await this.fetcher.fetch(record.url, {
      onProgress: (p) => {
        record.progress = { bytes: p.bytes, totalBytes: p.totalBytes };
      },
      onDescribed: (info) => this.versionSeen.set(record, info.version),
    });
    try {
      record.phase = 'staging';
      const layout = await inspectArtifact(artifact.dir);
      const staged = await this.stager.stage(layout, record.tritonName, {
        mmeName: record.name,
        url: record.url,
      });
      try {
        record.phase = 'loading';
        await this.loadIntoTriton(record);
      } catch (err) {
        // Leave Triton and the repository as they were: unload anything that did load, remove our files.
        await this.triton.unload(record.tritonName, { unloadDependents: true }).catch(() => undefined);
        await this.stager.remove(staged).catch(() => undefined);
        throw err;
      }
      record.staged = staged;
    } catch (err) {
      artifact.release();
      throw err;
    }
    record.artifact = artifact;
    record.phase = undefined;
    record.progress = undefined;
    record.state = 'ready';
    record.loadedAt = this.clock.now();
    this.logger.info('model loaded', {
      model: record.name,
      tritonName: record.tritonName,
      url: record.url,
      targetModel: record.targetModel,
      ms: this.clock.now() - started,
    });
  }

  /** Triton load plus the per-model data the invoke path needs, computed once here. */
  private async loadIntoTriton(record: ModelRecord): Promise<void> {
    try {
      await this.triton.load(record.tritonName, { deadlineMs: this.options.loadTimeoutMs });
      record.io = await this.readModelIO(record.tritonName);
    } catch (err) {
      throw loadFailure(err, record.name);
    }
  }

  private async readModelIO(tritonName: string): Promise<ModelIO> {
    const [md, cfg] = await Promise.all([
      this.triton.modelMetadata(tritonName),
      this.triton.modelConfig(tritonName),
    ]);
    const spec = (t: { name: string; datatype: string; shape: number[] }): TensorSpec => {
      if (!isDatatype(t.datatype)) {
        throw new AgentError(
          ErrorCode.TritonProtocol,
          `Triton reports unknown datatype '${t.datatype}' for '${t.name}'`,
        );
      }
      return { name: t.name, datatype: t.datatype, shape: t.shape };
    };
    return {
      maxBatchSize: Number(cfg.max_batch_size ?? 0),
      inputs: md.inputs.map(spec),
      outputs: md.outputs.map(spec),
    };
  }

  /**
   * Pins a model for one request. Waits (bounded by the cold-load wait) for a load in progress, starting a
   * lazy load for an unknown name when MODEL_DATA_URL is set; a model being unloaded is waited for and
   * then reported unknown.
   */
  async acquire(nameOrTarget: string): Promise<Lease> {
    const deadline = this.clock.now() + this.options.coldLoadWaitMs;
    for (;;) {
      const record = this.get(nameOrTarget) ?? (await this.startLazyLoad(nameOrTarget));
      if (record.state === 'ready') {
        record.pins++;
        record.lastUsedAt = this.clock.now();
        let released = false;
        return {
          record,
          release: () => {
            if (released) return;
            released = true;
            record.pins--;
            if (record.pins === 0 && record.drained) record.drained();
          },
        };
      }
      const remaining = deadline - this.clock.now();
      if (remaining <= 0 || !record.transition) {
        throw new AgentError(
          ErrorCode.ModelNotReady,
          `model '${nameOrTarget}' is ${record.state}; try again shortly`,
        );
      }
      await within(
        record.transition,
        remaining,
        () =>
          new AgentError(
            ErrorCode.ModelNotReady,
            `model '${nameOrTarget}' is still ${record.state}; try again shortly`,
          ),
      );
      if ((record.state as ModelState) !== 'ready' && !this.records.has(record.name)) {
        // Its load failed (or it was unloaded) while we waited: the same answer its loader got.
        const failure = this.lastFailure.get(record);
        if (failure) throw failure;
      }
    }
  }

  /**
   * An unknown name with MODEL_DATA_URL set: load `<prefix><name>` through the one load path. A recent
   * failure of the same artifact version is answered at once; a changed artifact is tried again.
   */
  private async startLazyLoad(name: string): Promise<ModelRecord> {
    const prefix = this.options.modelDataUrl;
    if (!prefix) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
    const url = lazyUrl(prefix, name);
    const failed = this.failures.get<RememberedFailure>(name);
    if (failed) {
      // Look at the artifact again at most once a second, so a storm of calls is not a storm of HEADs.
      if (this.clock.now() - failed.checkedAt < 1000) throw failed.error;
      failed.checkedAt = this.clock.now();
      const version = await this.fetcher.describe(url).then(
        (i) => i.version,
        () => '',
      );
      if (version === failed.version) throw failed.error;
      this.failures.del(name);
    }
    // Another caller may have started it while we looked.
    return this.get(name) ?? this.register(name, url, undefined, true);
  }

  /**
   * Runs one inference on a pinned model. If Triton no longer has the model (it restarted), the model is
   * loaded again and the request is retried once.
   */
  async infer(lease: Lease, request: Omit<ModelInferRequest, 'model_name'>): Promise<ModelInferResponse> {
    const record = lease.record;
    const call = () =>
      this.triton.infer(
        { ...request, model_name: record.tritonName },
        { deadlineMs: this.options.invokeTimeoutMs },
      );
    try {
      const res = await call();
      record.invocations++;
      return res;
    } catch (err) {
      if (!(err instanceof TritonError) || err.kind !== 'NotFound' || record.state !== 'ready') throw err;
      this.logger.warn('model missing from Triton; reloading', {
        model: record.name,
        tritonName: record.tritonName,
      });
      await this.reload(record);
      const res = await call();
      record.invocations++;
      return res;
    }
  }

  /** Loads a model Triton lost again; concurrent callers share one load. */
  private reload(record: ModelRecord): Promise<void> {
    let p = this.reloading.get(record);
    if (!p) {
      p = this.loadIntoTriton(record).finally(() => this.reloading.delete(record));
      this.reloading.set(record, p);
    }
    return p;
  }

  /** A model's state for the status route, including a remembered failure. */
  status(name: string): ModelStatus | undefined {
    const r = this.get(name);
    if (r) {
      const state =
        r.state === 'ready' ? 'resident' : r.state === 'unloading' ? 'unloading' : (r.phase ?? 'fetching');
      const out: ModelStatus = { modelName: r.name, modelUrl: r.url, state, invocations: r.invocations };
      if (r.progress && r.phase === 'fetching') {
        const { bytes, totalBytes } = r.progress;
        out.progress = {
          bytes,
          totalBytes,
          percent: totalBytes > 0 ? Math.round((1000 * bytes) / totalBytes) / 10 : 0,
        };
      }
      if (r.loadedAt !== undefined) out.loadedAt = new Date(r.loadedAt).toISOString();
      return out;
    }
    const failed = this.failures.get<RememberedFailure>(name);
    if (!failed) return undefined;
    const url = this.options.modelDataUrl ? lazyUrl(this.options.modelDataUrl, name) : '';
    return { modelName: name, modelUrl: url, state: 'failed', error: failed.error.message };
  }

  /**
   * DELETE /models/<name>: waits for in-flight invocations (bounded), unloads the model and its composing
   * models, waits until Triton reports them unloaded (bounded), removes the staged directories.
   */
  async unload(name: string): Promise<void> {
    for (;;) {
      const record = this.records.get(name);
      if (!record) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
      if (record.state === 'ready') return this.startUnload(record);
      // A load or unload is in progress: wait for it, then decide again.
      await record.transition;
      if (record.state === 'unloading' && !this.records.has(name)) return;
    }
  }

  private async startUnload(record: ModelRecord): Promise<void> {
    record.state = 'unloading';
    const work = this.drainAndUnload(record);
    record.transition = work.then(
      () => undefined,
      () => undefined,
    );
    try {
      await work;
      this.forget(record);
    } catch (err) {
      // Triton could not be told: the model stays loaded and served.
      record.state = 'ready';
      throw err;
    } finally {
      record.transition = undefined;
    }
  }

  private async drainAndUnload(record: ModelRecord): Promise<void> {
    if (record.pins > 0) {
      const drained = new Promise<void>((r) => (record.drained = r));
      await within(drained, this.options.unloadDrainTimeoutMs, () => new Error('drain timeout')).catch(() => {
        this.logger.warn('unloading with requests still in flight', {
          model: record.name,
          pins: record.pins,
        });
      });
      record.drained = undefined;
    }
    try {
      await this.triton.unload(record.tritonName, { unloadDependents: true });
    } catch (err) {
      if (isAgentError(err)) throw err;
      throw new AgentError(ErrorCode.TritonUnavailable, messageOf(err), { cause: err });
    }
    const names = [record.tritonName, ...(record.staged?.memberNames ?? [])];
    await this.waitUnloaded(names, record.name);
    if (record.staged) await this.stager.remove(record.staged);
    record.staged = undefined;
    record.artifact?.release();
    record.artifact = undefined;
    this.logger.info('model unloaded', { model: record.name, tritonName: record.tritonName });
  }

  /** Polls RepositoryIndex until no version of `names` is READY, LOADING or UNLOADING (bounded). */
  private async waitUnloaded(names: string[], model: string): Promise<void> {
    const deadline = this.clock.now() + this.options.unloadTimeoutMs;
    for (;;) {
      const index = await this.triton.repositoryIndex();
      const busy = index.filter(
        (e) => names.includes(e.name) && ['READY', 'LOADING', 'UNLOADING'].includes(e.state),
      );
      if (busy.length === 0) return;
      if (this.clock.now() >= deadline) {
        this.logger.error('Triton did not finish unloading in time; continuing', { model, busy });
        return;
      }
      await sleep(this.options.unloadPollMs);
    }
  }
}
