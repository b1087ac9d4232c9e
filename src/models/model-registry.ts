import NodeCache from 'node-cache';
import { AgentError, ErrorCode, isAgentError, messageOf } from '../errors';
import {
  inspectArtifact,
  type ArtifactFetcher,
  type LocalArtifact,
  type StagedModel,
  type Stager,
} from '../artifacts';
import { isDatatype, type ModelIO, type TensorSpec } from '../inference';
import { TritonError, type TritonControl, type ModelInferRequest, type ModelInferResponse } from '../triton';
import type { Logger } from '../observability';
import type { CapacityModel, GpuSample } from './capacity';
import type { EvictionPolicy } from './eviction';
import { checkModelName } from './model-name';
import { TritonNameBook } from './triton-names';

/** Time, injected so tests and simulations drive it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * `loading` (fetch, stage, make room, Triton load), `ready` (resident on the GPU), `unloading` (leaving
 * the GPU), `evicted` (registered and on disk, not on the GPU: the next invocation loads it again).
 */
export type ModelState = 'loading' | 'ready' | 'unloading' | 'evicted';

/** What a loading model is doing, for the status route and logs. */
export type LoadPhase = 'fetching' | 'staging' | 'waiting-for-capacity' | 'loading';

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
  /** Requests in flight; a pinned model is never evicted or unloaded under them. */
  pins: number;
  /** The local copy of the artifact (held in the disk cache while the model is resident). */
  artifact: LocalArtifact | undefined;
  staged: StagedModel | undefined;
  io: ModelIO | undefined;
  /** Identifies the artifact version for learned footprints. */
  footprintKey: string | undefined;
  /** GPU bytes declared in the config (`parameters { key: "gpu_memory_bytes" ... }`). */
  declaredBytes: number | undefined;
  /** Unpacked artifact bytes (the basis of an estimate). */
  artifactBytes: number;
  /** Measured Triton load time of the last load, ms. */
  loadMs: number | undefined;
  /** Download and unpack time of the last fetch that was not a cache hit, ms. */
  fetchMs: number;
  loadedAt: number | undefined;
  lastUsedAt: number;
  invocations: number;
  loads: number;
  evictions: number;
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
  /** Times a load that Triton fails for lack of memory evicts more and tries again. */
  oomRetries: number;
  /** How long freed GPU memory may take to show before more models are evicted for it. */
  releaseWaitMs: number;
  /** Unload models idle this long ahead of need (0: never). */
  idleUnloadMs: number;
}

/** The parts the registry works with. `capacity` and `policy` are absent when eviction is off. */
export interface RegistryParts {
  triton: TritonControl;
  stager: Stager;
  fetcher: ArtifactFetcher;
  capacity: CapacityModel | undefined;
  policy: EvictionPolicy | undefined;
  logger: Logger;
  clock?: Clock;
}

/** A pinned model, released exactly once when the request is done. */
export interface Lease {
  readonly record: ModelRecord;
  /** How long `acquire` waited for the model to load (0 for a model that was resident). */
  readonly waitedMs: number;
  /** True when the model had to be loaded (or reloaded) for this request. */
  readonly cold: boolean;
  release(): void;
}

export interface ModelStatus {
  modelName: string;
  modelUrl: string;
  state: LoadPhase | 'resident' | 'unloading' | 'evicted' | 'failed';
  progress?: { bytes: number; totalBytes: number; percent: number };
  /** GPU bytes: learned from a measured load, else the estimate. */
  footprintBytes?: number;
  footprintMeasured?: boolean;
  loadMs?: number;
  loadedAt?: string;
  invocations?: number;
  loads?: number;
  evictions?: number;
  error?: string;
}

/** One model's admission across rounds. */
interface AdmissionRound {
  deadline: number;
  evictedBytes: number;
  rounds: number;
}

interface RememberedFailure {
  error: AgentError;
  /** The artifact version that failed ('' when it could not be looked up). */
  version: string;
  checkedAt: number;
}

/** The config `parameters` key in which an artifact may declare its GPU footprint. */
export const DECLARED_GPU_BYTES_PARAMETER = 'gpu_memory_bytes';

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

const MiB = 1024 * 1024;
const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;

/**
 * The registry of MME models and the one path every load, reload, eviction and unload goes through.
 * Per-model work is single-flight: concurrent callers await the same promise (`record.transition`).
 * Invocations pin their model; an unload waits (bounded) for the pins to drain; a pinned model is never
 * an eviction victim. Room on the GPU is made by the eviction policy from measured memory, one admission
 * decision at a time, with reservations covering loads still in flight.
 */
export class ModelRegistry {
  private readonly records = new Map<string, ModelRecord>();
  private readonly byTarget = new Map<string, ModelRecord>();
  /** Why a record's load failed, for everyone who waited on it. */
  private readonly lastFailure = new WeakMap<ModelRecord, AgentError>();
  /** Failed lazy loads, remembered for a short time so a storm of invocations does not refetch. */
  private readonly failures: NodeCache;
  private readonly reloading = new Map<ModelRecord, Promise<void>>();
  /** Admission decisions run one at a time (each reads memory, picks victims, reserves). */
  private admission: Promise<unknown> = Promise.resolve();

  private idleTimer: NodeJS.Timeout | undefined;
  private readonly triton: TritonControl;
  private readonly stager: Stager;
  private readonly fetcher: ArtifactFetcher;
  private readonly capacity: CapacityModel | undefined;
  private readonly policy: EvictionPolicy | undefined;
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(
    parts: RegistryParts,
    private readonly options: RegistryOptions,
  ) {
    this.triton = parts.triton;
    this.stager = parts.stager;
    this.fetcher = parts.fetcher;
    this.capacity = parts.capacity;
    this.policy = parts.policy;
    this.logger = parts.logger;
    this.clock = parts.clock ?? systemClock;
    this.failures = new NodeCache({
      stdTTL: Math.max(1, options.failureTtlMs / 1000),
      checkperiod: 60,
      useClones: false,
    });
    if (options.idleUnloadMs > 0 && this.policy) {
      this.idleTimer = setInterval(
        () => void this.unloadIdle(),
        Math.min(60_000, Math.max(100, options.idleUnloadMs / 4)),
      );
      this.idleTimer.unref();
    }
  }

  /** Stops timers. */
  close(): void {
    this.failures.close();
    if (this.idleTimer) clearInterval(this.idleTimer);
  }

  /** Models in a stable order (by name); sorted once per change, not once per page. */
  list(): ModelRecord[] {
    this.sorted ??= [...this.records.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    return this.sorted;
  }

  private sorted: ModelRecord[] | undefined;

  /** A record by MME name, or by the TargetModel it was loaded with. */
  get(nameOrTarget: string): ModelRecord | undefined {
    return this.records.get(nameOrTarget) ?? this.byTarget.get(nameOrTarget);
  }

  get size(): number {
    return this.records.size;
  }

  /** Models on the GPU or on their way there. */
  residentCount(): number {
    let n = 0;
    for (const r of this.records.values())
      if (r.state === 'ready' || r.state === 'loading' || r.state === 'unloading') n++;
    return n;
  }

  /**
   * POST /models: fetch (or use in place) the artifact at `url`, stage it under its Triton name and load it.
   * Resolves once the model is ready. 409 when the name is already registered.
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

  /** Triton names handed out, so no two accepted names share one. */
  private readonly tritonNames = new TritonNameBook();

  /** Creates the record and starts its first load. */
  private register(name: string, url: string, targetModel: string | undefined, lazy: boolean): ModelRecord {
    checkModelName(name, 'model name');
    const record: ModelRecord = {
      name,
      url,
      tritonName: this.tritonNames.claim(name),
      targetModel,
      lazy,
      state: 'loading',
      phase: 'fetching',
      progress: undefined,
      pins: 0,
      artifact: undefined,
      staged: undefined,
      io: undefined,
      footprintKey: undefined,
      declaredBytes: undefined,
      artifactBytes: 0,
      loadMs: undefined,
      fetchMs: 0,
      loadedAt: undefined,
      lastUsedAt: this.clock.now(),
      invocations: 0,
      loads: 0,
      evictions: 0,
      transition: undefined,
      drained: undefined,
    };
    this.records.set(name, record);
    this.sorted = undefined;
    if (targetModel) this.byTarget.set(targetModel, record);
    this.startLoad(record, true);
    return record;
  }

  /**
   * Runs the one load path for `record` and settles `record.transition`. A first load that fails forgets
   * the record (and, for lazy loads, remembers why); a reload of an evicted model that fails leaves it
   * registered and evicted.
   */
  private startLoad(record: ModelRecord, first: boolean): void {
    record.state = 'loading';
    record.phase = 'fetching';
    record.transition = this.stageAndLoad(record).then(
      () => {
        record.transition = undefined;
      },
      (err: unknown) => {
        const e = isAgentError(err)
          ? err
          : new AgentError(ErrorCode.Internal, messageOf(err), { cause: err });
        this.lastFailure.set(record, e);
        record.phase = undefined;
        record.progress = undefined;
        if (first) {
          this.forget(record);
          if (record.lazy && REMEMBERED.includes(e.code)) {
            this.failures.set<RememberedFailure>(record.name, {
              error: e,
              version: this.versionSeen.get(record) ?? '',
              checkedAt: this.clock.now(),
            });
          }
        } else {
          record.state = 'evicted';
        }
        record.transition = undefined;
        this.logger.warn('model failed to load', {
          model: record.name,
          url: record.url,
          code: e.code,
          error: e.message,
        });
      },
    );
  }

  /** The artifact version a failed load had seen, when it got that far. */
  private readonly versionSeen = new WeakMap<ModelRecord, string>();

  private forget(record: ModelRecord): void {
    if (this.records.get(record.name) === record) {
      this.records.delete(record.name);
      this.sorted = undefined;
      this.tritonNames.release(record.name);
    }

    if (record.targetModel && this.byTarget.get(record.targetModel) === record) {
      this.byTarget.delete(record.targetModel);
    }
  }

  /** The one load path: fetch, stage, make room, load, read the model's tensors. Failures undo it all. */
  private async stageAndLoad(record: ModelRecord): Promise<void> {
    const started = this.clock.now();
    const artifact = await this.fetcher.fetch(record.url, {
      onProgress: (p) => {
        record.progress = { bytes: p.bytes, totalBytes: p.totalBytes };
      },
      onDescribed: (info) => this.versionSeen.set(record, info.version),
    });
    if (artifact.fetchMs > 0) record.fetchMs = artifact.fetchMs;
    record.footprintKey = `${record.url}\u0000${artifact.info.version}`;
    record.artifactBytes = artifact.bytes;
    try {
      record.phase = 'staging';
      const layout = await inspectArtifact(artifact.dir);
      const declared = Number(layout.top.summary.parameters[DECLARED_GPU_BYTES_PARAMETER]);
      record.declaredBytes = Number.isFinite(declared) && declared > 0 ? declared : undefined;
      const staged = await this.stager.stage(layout, record.tritonName, {
        mmeName: record.name,
        url: record.url,
      });
      try {
        await this.loadWithCapacity(record);
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
    record.loads++;
    // A load by POST /models is the model's first use as far as the policy is concerned.
    if (!record.lazy && record.loads === 1) {
      this.policy?.onAccess(
        record.name,
        Math.max(1, this.need(record)),
        record.loadMs ?? 1000,
        this.clock.now(),
      );
    }
    this.policy?.onAdmit(record.name, this.clock.now());
    this.logger.info('model loaded', {
      model: record.name,
      tritonName: record.tritonName,
      url: record.url,
      targetModel: record.targetModel,
      ms: this.clock.now() - started,
      loadMs: record.loadMs,
    });
  }

  /** GPU bytes this model is expected to take. */
  private need(record: ModelRecord): number {
    if (!this.capacity || !record.footprintKey) return record.declaredBytes ?? record.artifactBytes;
    return this.capacity.estimate(record.footprintKey, record.declaredBytes, record.artifactBytes);
  }

  /**
   * Makes room, reserves, loads. A Triton out-of-memory failure despite the estimate evicts more (with a
   * larger estimate) and tries again, a bounded number of times.
   */
  private async loadWithCapacity(record: ModelRecord): Promise<void> {
    let need = this.need(record);
    let lastOom: AgentError | undefined;
    for (let attempt = 0; ; attempt++) {
      record.phase = 'waiting-for-capacity';
      const before = await this.admit(record, need).catch((err: unknown) => {
        // Out of room after Triton's own out-of-memory failure: say both.
        if (lastOom && isAgentError(err, ErrorCode.InsufficientCapacity)) {
          throw new AgentError(
            ErrorCode.InsufficientCapacity,
            `${err.message}; Triton said: ${lastOom.message}`,
            { cause: err },
          );
        }
        throw err;
      });

      record.phase = 'loading';
      const quiet = this.capacity?.quietToken(before) ?? -1;
      const done = this.capacity?.begin();
      const t0 = this.clock.now();
      try {
        await this.loadIntoTriton(record);
        record.loadMs = this.clock.now() - t0;
        this.capacity?.loaded(record.name);
        // It ran out of memory with less: until a measurement says otherwise, this is its footprint.
        if (attempt > 0 && record.footprintKey) this.capacity?.succeededWith(record.footprintKey, need);

        done?.();
        void this.measure(record, before, quiet);
        return;
      } catch (err) {
        done?.();
        this.capacity?.release(record.name);
        if (
          !isAgentError(err, ErrorCode.InsufficientCapacity) ||
          !this.capacity ||
          attempt >= this.options.oomRetries
        ) {
          throw err;
        }
        lastOom = err;
        // The estimate was too small. The load failed with `free` bytes available, so it needs more than
        // that; ask for at least half again as much, and more than what was free.
        const freeThen = before ? (this.capacity as CapacityModel).free(before) : 0;
        need = Math.max(Math.ceil(need * 1.5), freeThen + 1);

        this.logger.warn('Triton ran out of memory loading; evicting more and retrying', {
          model: record.name,
          attempt: attempt + 1,
          need,
        });
      }
    }
  }

  /**
   * After a load: learn its footprint. ModelStatistics `memory_usage` when the backend reports it, else the
   * change in device memory across the load, from a sample that postdates it by a metrics interval, and
   * only if nothing else loaded or unloaded meanwhile. The reservation covers the load until then.
   */
  private async measure(record: ModelRecord, before: GpuSample | undefined, quiet: number): Promise<void> {
    const capacity = this.capacity;
    if (!capacity || !record.footprintKey) return;
    const loadedAt = this.clock.now();
    try {
      const names = [record.tritonName, ...(record.staged?.memberNames ?? [])];
      let reported = 0;
      for (const n of names) {
        const stats = await this.triton.modelStatistics(n).catch(() => []);
        for (const s of stats) for (const m of s.memory_usage) if (m.type === 'GPU') reported += m.byte_size;
      }
      if (reported > 0) capacity.learn(record.footprintKey, reported);
      // The reservation stands until the device's numbers include this load.
      const after = await capacity.freshSample(loadedAt);
      if (reported === 0 && before && capacity.stillQuiet(quiet)) {
        const delta = after.usedBytes - before.usedBytes;
        if (delta > 0) {
          capacity.learn(record.footprintKey, delta);
          this.logger.info('footprint measured', { model: record.name, bytes: delta });
        }
      }
    } catch (err) {
      this.logger.warn('could not measure footprint', { model: record.name, error: messageOf(err) });
    } finally {
      capacity.release(record.name);
    }
  }

  /**
   * Makes room for `need` bytes and reserves them; resolves with the memory sample the decision was made
   * on. Decisions run one at a time (each reads memory, picks victims, reserves), but waiting for memory to
   * show up happens between rounds, outside that section, so one model waiting for room never holds up
   * another that would fit.
   */
  private async admit(record: ModelRecord, need: number): Promise<GpuSample | undefined> {
    if (!this.capacity || !this.policy) return undefined;
    const round: AdmissionRound = {
      deadline: this.clock.now() + this.options.releaseWaitMs,
      evictedBytes: 0,
      rounds: 0,
    };
    for (;;) {
      const step = this.admission.then(() => this.admissionRound(record, need, round));
      this.admission = step.catch(() => undefined);
      const out = await step;
      if (out.admitted) return out.sample;
      await (this.capacity as CapacityModel).freshSample(out.since);
    }
  }

  private evictable(exclude: ModelRecord): (name: string) => boolean {
    return (name) => {
      const r = this.records.get(name);
      return r !== undefined && r !== exclude && r.state === 'ready' && r.pins === 0;
    };
  }

  /**
   * One admission decision: reserve if `need` fits under the measured usage, headroom and reservations
   * (and the resident count fits its limit); else evict victims, or ask to wait for memory that is on
   * its way (freed late, loads in flight, requests about to unpin). 507 when nothing can make room.
   */
  private async admissionRound(
    record: ModelRecord,
    need: number,
    round: AdmissionRound,
  ): Promise<{ admitted: true; sample: GpuSample | undefined } | { admitted: false; since: number }> {
    const capacity = this.capacity as CapacityModel;
    const policy = this.policy as EvictionPolicy;
    let sample: GpuSample;
    try {
      sample = await capacity.sample();
    } catch (err) {
      // Without Triton's metrics there is no measured truth: load without admission control.
      this.logger.warn('GPU metrics unavailable; loading without capacity checks', { error: messageOf(err) });
      return { admitted: true, sample: undefined };
    }
    // A load that finished less than a metrics interval ago may show only in part: wait until it shows.
    const settledAt = capacity.unsettledUntil(sample.at);
    if (settledAt !== undefined)
      return { admitted: false, since: settledAt - capacity.options.metricsIntervalMs };
    const usable = Math.max(0, sample.totalBytes - capacity.options.headroomBytes);
    policy.setCapacity?.(usable);
    if (need > usable) {
      // Evicting cannot help: leave the other models alone.
      throw new AgentError(
        ErrorCode.InsufficientCapacity,
        `model '${record.name}' needs ${mib(need)} of GPU memory, more than the ${mib(usable)} this GPU has for models (${mib(sample.totalBytes)} less ${mib(capacity.options.headroomBytes)} headroom)`,
      );
    }
    const free = capacity.free(sample);
    const { maxResident } = capacity.options;
    const countExcess = maxResident > 0 ? this.residentCount() - maxResident : 0; // `record` counts itself
    if (free >= need && countExcess <= 0) {
      capacity.reserve(record.name, need);
      return { admitted: true, sample };
    }
    const now = this.clock.now();
    // Memory this admission freed may show up late: wait for it rather than evict models that need not go.
    const pending = now < round.deadline ? round.evictedBytes : 0;
    if (countExcess <= 0 && free + pending >= need) return { admitted: false, since: now };
    const deficit = Math.max(0, need - free - pending);
    const victims = policy.chooseVictims(
      Math.max(deficit, countExcess > 0 ? 1 : 0),
      now,
      this.evictable(record),
    );
    if (victims.length === 0) {
      const soon = pending > 0 || capacity.reservedBytes() > 0 || this.anyPinned(record);
      if (now < round.deadline && soon) return { admitted: false, since: now };
      throw this.noCapacity(record, need, sample);
    }
    if (++round.rounds > 50) throw this.noCapacity(record, need, sample);
    this.logger.info('evicting to make room', { model: record.name, need, free, victims });
    for (const v of victims) round.evictedBytes += this.need(this.records.get(v) as ModelRecord);
    await Promise.all(victims.map((v) => this.evict(this.records.get(v) as ModelRecord)));
    return { admitted: false, since: this.clock.now() };
  }

  private anyPinned(exclude: ModelRecord): boolean {
    for (const r of this.records.values())
      if (r !== exclude && r.state === 'ready' && r.pins > 0) return true;
    return false;
  }

  private noCapacity(record: ModelRecord, need: number, sample: GpuSample): AgentError {
    const capacity = this.capacity as CapacityModel;
    const pinned = [...this.records.values()].filter(
      (r) => r.state === 'ready' && r.pins > 0 && r !== record,
    );
    const pinnedBytes = pinned.reduce((a, r) => a + this.need(r), 0);
    const free = Math.max(0, capacity.free(sample));
    return new AgentError(
      ErrorCode.InsufficientCapacity,
      `not enough GPU memory for model '${record.name}': it needs ${mib(need)}, ${mib(free)} are free ` +
        `(${mib(sample.totalBytes)} total, ${mib(sample.usedBytes)} used, ${mib(capacity.options.headroomBytes)} headroom, ` +
        `${mib(capacity.reservedBytes(sample.at))} reserved by loads in flight) and nothing more can be evicted: ` +
        `${pinned.length} resident model(s) holding ${mib(pinnedBytes)} are pinned by requests in flight`,
    );
  }

  /** Takes a resident, unpinned model off the GPU; it stays registered (and on disk) as `evicted`. */
  private async evict(record: ModelRecord): Promise<void> {
    if (record.state !== 'ready' || record.pins > 0) return;
    await this.leaveGpu(record, 'evicted');
  }

  /**
   * The one way off the GPU: unload (draining pins, bounded) and then either keep the model registered as
   * `evicted` or forget it (DELETE). If Triton cannot be told, the model stays loaded and served.
   */
  private async leaveGpu(record: ModelRecord, outcome: 'evicted' | 'forgotten'): Promise<void> {
    record.state = 'unloading';
    const work = this.unloadFromTriton(record);
    record.transition = work.then(
      () => undefined,
      () => undefined,
    );
    try {
      await work;
      if (outcome === 'forgotten') {
        this.forget(record);
      } else {
        record.state = 'evicted';
        record.evictions++;
        this.logger.info('model evicted', { model: record.name, tritonName: record.tritonName });
      }
    } catch (err) {
      record.state = 'ready';
      throw err;
    } finally {
      record.transition = undefined;
    }
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
   * Pins a model for one request. Loads it if it is evicted, or (with MODEL_DATA_URL) unknown, and waits
   * (bounded by the cold-load wait) for a load in progress; a model being unloaded is waited for.
   */
  async acquire(nameOrTarget: string): Promise<Lease> {
    const started = this.clock.now();
    const deadline = started + this.options.coldLoadWaitMs;
    let cold = false;
    let counted = false;
    for (;;) {
      const record = this.get(nameOrTarget) ?? (await this.startLazyLoad(nameOrTarget));
      if (!counted && this.policy) {
        counted = true;
        const cost = (record.loadMs ?? 1000) + (record.artifact ? 0 : record.fetchMs);
        this.policy.onAccess(record.name, Math.max(1, this.need(record)), cost, this.clock.now());
      }
      if (record.state === 'ready') {
        record.pins++;
        record.lastUsedAt = this.clock.now();
        let released = false;
        return {
          record,
          waitedMs: this.clock.now() - started,
          cold,
          release: () => {
            if (released) return;
            released = true;
            record.pins--;
            if (record.pins === 0 && record.drained) record.drained();
          },
        };
      }
      cold = true;
      if (record.state === 'evicted') this.startLoad(record, false);
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
      const state = record.state as ModelState;
      if (state !== 'ready') {
        // Its load failed while we waited: the same answer its loader got.
        const failure = this.lastFailure.get(record);
        if (failure && (state === 'evicted' || !this.records.has(record.name))) throw failure;
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

  /** Loads a model Triton lost again, through the same capacity accounting; concurrent callers share one load. */
  private reload(record: ModelRecord): Promise<void> {
    let p = this.reloading.get(record);
    if (!p) {
      p = this.loadWithCapacity(record).finally(() => this.reloading.delete(record));
      this.reloading.set(record, p);
    }
    return p;
  }

  /** A model's state for the status route, including a remembered failure. */
  status(name: string): ModelStatus | undefined {
    const r = this.get(name);
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
        out.footprintBytes = this.need(r);
        out.footprintMeasured = this.capacity?.learned(r.footprintKey) !== undefined;
      }
      if (r.loadMs !== undefined) out.loadMs = r.loadMs;
      if (r.loadedAt !== undefined) out.loadedAt = new Date(r.loadedAt).toISOString();
      return out;
    }
    const failed = this.failures.get<RememberedFailure>(name);
    if (!failed) return undefined;
    const url = this.options.modelDataUrl ? lazyUrl(this.options.modelDataUrl, name) : '';
    return { modelName: name, modelUrl: url, state: 'failed', error: failed.error.message };
  }

  /** Keep-alive: evicts models nobody used for `idleUnloadMs`, ahead of need. */
  private async unloadIdle(): Promise<void> {
    const now = this.clock.now();
    for (const r of [...this.records.values()]) {
      if (r.state === 'ready' && r.pins === 0 && now - r.lastUsedAt >= this.options.idleUnloadMs) {
        await this.evict(r).catch((err: unknown) => {
          this.logger.warn('idle unload failed', { model: r.name, error: messageOf(err) });
        });
      }
    }
  }

  /**
   * DELETE /models/<name>: waits for in-flight invocations (bounded), unloads the model and its composing
   * models, waits until Triton reports them unloaded (bounded), removes the staged directories, forgets it.
   */
  async unload(name: string): Promise<void> {
    for (;;) {
      const record = this.records.get(name);
      if (!record) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
      if (record.state === 'evicted') {
        this.forget(record);
        this.policy?.onEvict(record.name, this.clock.now());
        return;
      }
      if (record.state === 'ready') return this.leaveGpu(record, 'forgotten');
      // A load or unload is in progress: wait for it, then decide again.
      await record.transition;
      if (!this.records.has(name)) return;
    }
  }

  /** Drain (bounded), unload with dependents, wait for Triton's index, remove staged files, release the artifact. */
  private async unloadFromTriton(record: ModelRecord): Promise<void> {
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
    const done = this.capacity?.begin();
    try {
      await this.triton.unload(record.tritonName, { unloadDependents: true });
      const names = [record.tritonName, ...(record.staged?.memberNames ?? [])];
      await this.waitUnloaded(names, record.name);
    } catch (err) {
      if (isAgentError(err)) throw err;
      throw new AgentError(ErrorCode.TritonUnavailable, messageOf(err), { cause: err });
    } finally {
      done?.();
    }
    this.policy?.onEvict(record.name, this.clock.now());
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
