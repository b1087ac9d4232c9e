import { setMaxListeners } from 'node:events';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  inspectArtifact,
  type ArtifactFetcher,
  type ArtifactLayout,
  type LocalArtifact,
  type StagedModel,
  type Stager,
} from '../artifacts';
import { AgentError, ErrorCode, isAgentError, messageOf } from '../errors';
import { isDatatype, type ModelIO, type TensorSpec } from '../inference';
import type { Logger } from '../observability';
import { TritonError, triedToAllocate, isUnhealthyStub, maskedPlanPath, type TritonControl } from '../triton';
import { instanceGroups, isEnsemble, parsePbtxt, placeOnGpus, warmupBatch } from '../model-config';
import type { Admission } from './admission';
import type { Catalogue } from './catalogue';
import { waitForChange, withTimeout, type Clock } from '../time';
import type { EvictionPolicy } from './eviction';
import type { Footprints } from './footprints';
import { startMove } from './gpu-move';
import type { Devices, GpuLedger } from './gpu-ledger';
import { placementOf, type ArtifactGpus, type Placement, type PlacementMode } from './placement';
import type { ModelRecord } from './model-record';

/** The config `parameters` key in which an artifact may declare its GPU footprint. */
export const DECLARED_GPU_BYTES_PARAMETER = 'gpu_memory_bytes';

const MiB = 1024 * 1024;
/** After a second out-of-memory load in a row, the model's bound is at least its last reservation × this. */
const OOM_GROWTH = 1.5;
/** Bytes for a message. */
const mibText = (b: number) =>
  b >= MiB ? `${(b / MiB).toFixed(0)} MiB` : `${Math.max(0, Math.round(b / 1024))} KiB`;
/** First and longest pause between RepositoryIndex polls while an unload finishes. */
const FIRST_UNLOAD_POLL_MS = 2;

/** Longest a move to more GPUs waits for the room its victims free. */
const RESCALE_ROOM_WAIT_MS = 10_000;

export interface LifecycleOptions {
  /** How models are placed on a multi-GPU instance. */
  placement: PlacementMode;
  /** Whether an artifact's own GPU list is kept (default) or left to the placement. */
  artifactGpus?: ArtifactGpus;
  loadTimeoutMs: number;
  /** How long a load may wait for room on the GPU before answering 507. */
  admissionWaitMs: number;
  unloadTimeoutMs: number;
  unloadDrainTimeoutMs: number;
  /** Longest pause between RepositoryIndex polls while waiting for an unload. */
  unloadPollMs: number;
  /** Times a load that Triton fails for lack of memory evicts more and tries again. */
  oomRetries: number;
}

export interface LifecycleParts {
  triton: TritonControl;
  stager: Stager;
  fetcher: Pick<ArtifactFetcher, 'fetch' | 'describe' | 'isLocal'>;
  catalogue: Catalogue;
  /** Absent when eviction is off: loads go straight to Triton. */
  capacity:
    | {
        ledger: GpuLedger;
        admission: Admission;
        footprints: Footprints;
        policy: EvictionPolicy;
        /** How long released memory may take to show as free. */
        releaseWaitMs: number;
      }
    | undefined;
  clock: Clock;
  logger: Logger;
  /** Hears lifecycle events (metrics, access log). */
  events?: LifecycleEvents;
}

/** What the lifecycle tells observers (metrics, the access log); every field is known when it happens. */
export interface LifecycleEvents {
  /** A request pinned its model: `hit` when it was resident, else it waited `waitMs` for a load. */
  acquired?(e: {
    model: string;
    hit: boolean;
    waitMs: number;
    footprintBytes: number;
    loadMs: number | undefined;
    downloadMs: number;
    evicted: string[];
  }): void;
  loaded?(e: {
    model: string;
    loadMs: number;
    fetchMs: number;
    downloadedBytes: number;
    footprintBytes: number;
    evicted: string[];
  }): void;
  unloaded?(e: { model: string; ms: number; evicted: boolean }): void;
  loadFailed?(e: { model: string; code: string; message: string }): void;
  /** A request could not pin its model (it failed to load, or was not ready in time). */
  acquireFailed?(e: { model: string; cold: boolean; waitMs: number; code: string }): void;
}

/** Work to undo if a load fails part way, run last-in first-out. */
class UndoList {
  private readonly steps: (() => Promise<unknown> | void)[] = [];
  push(step: () => Promise<unknown> | void): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.steps.reverse()) await Promise.resolve(step()).catch(() => undefined);
  }
}

/** PyTorch (libtorch backend): keeps a failed instance's memory in its cache until the next unload. */
export function isPytorch(platform: string): boolean {
  return platform === 'pytorch_libtorch' || platform === 'pytorch';
}

export { isTensorrt } from './model-record';

/** Replaces the internal Triton name by the user's model name in text meant for the caller. */
export function userText(record: Pick<ModelRecord, 'name' | 'tritonName'>, text: string): string {
  return text.split(record.tritonName).join(record.name);
}

/**
 * The model lifecycle: the one path onto the GPU (`ensureResident`: fetch, stage, admit, load) and the one
 * way off it (`leaveGpu`). Per model it is single-flight: `record.transition` is the work in progress and
 * every caller awaits the same promise. Every failure undoes what the attempt did, so the repository, the
 * cache, Triton and the other models are left as they were.
 */
export class Lifecycle {
  private readonly stopping = new AbortController();

  constructor(
    private readonly parts: LifecycleParts,
    private readonly options: LifecycleOptions,
  ) {
    // Every wait in flight listens to it (one per loading model): no fixed bound applies.
    setMaxListeners(0, this.stopping.signal);
  }

  /** Cancels waits in flight (admission, unload polls); loads already sent to Triton finish on their own. */
  close(): void {
    this.stopping.abort(new AgentError(ErrorCode.TritonUnavailable, 'the agent is stopping'));
  }

  /**
   * Resolves once `record` is resident, loading it if needed (or waiting for the load or unload in
   * flight first). Rejects with the load's failure.
   */
  async ensureResident(record: ModelRecord): Promise<void> {
    while (record.transition) await record.transition;
    if (record.state === 'ready') return;
    if (!record.registered)
      throw (
        record.lastFailure ?? new AgentError(ErrorCode.ModelNotFound, `model '${record.name}' is not loaded`)
      );
    this.startLoad(record);
    await record.transition;
    if ((record.state as string) !== 'ready')
      throw record.lastFailure ?? new AgentError(ErrorCode.Internal, `model '${record.name}' did not load`);
  }

  /** Starts the load of a record that is not resident (its transition settles when done). */
  startLoad(record: ModelRecord): void {
    if (record.transition || record.state === 'ready') return;
    const first = record.loads === 0;
    record.state = 'loading';
    record.phase = 'fetching';
    record.lastFailure = undefined;
    record.victims = [];
    record.victimsReported = false;
    this.track(
      record,
      this.load(record).catch((err: unknown) => {
        // What the caller hears names their model, never the internal Triton name.
        const raw = isAgentError(err)
          ? err
          : new AgentError(ErrorCode.Internal, messageOf(err), { cause: err });
        const text = userText(record, raw.message);
        const e = text === raw.message ? raw : new AgentError(raw.code, text, { cause: raw });
        record.lastFailure = e;
        record.phase = undefined;
        record.progress = undefined;
        record.state = 'evicted';
        // A model that never loaded is forgotten; one that did stays registered for its next invocation.
        if (first) this.parts.catalogue.remove(record);
        this.parts.events?.loadFailed?.({ model: record.name, code: e.code, message: e.message });
        this.parts.logger.warn('model failed to load', {
          model: record.name,
          url: record.url,
          code: e.code,
          error: e.message,
        });
      }),
    );
  }

  /**
   * Makes `work` the model's one transition until it settles, then clears it — unless a transition
   * chained behind it (markLost) has taken its place. Resolves when it settled, either way.
   */
  private track(record: ModelRecord, work: Promise<unknown>): Promise<void> {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    record.transition = settled;
    void settled.then(() => {
      if (record.transition === settled) record.transition = undefined;
    });
    return settled;
  }

  /**
   * A config with `model_warmup` ran its samples inside the load: the model has grown as those batches
   * grow it, and readings after the load measure that, so its first request of that size is not growth.
   */
  private noteWarmup(record: ModelRecord): void {
    const batch = record.stagedConfig ? warmupBatch(record.stagedConfig) : 0;
    const fp = this.parts.capacity?.footprints;
    if (batch === 0 || !fp || !record.footprintKey) return;
    record.peakBatch = batch;
    fp.noteBatch(record.footprintKey, batch);
    if (batch >= fp.largestBatchOf(record.footprintKey)) record.warmSince = this.parts.clock.now();
  }

  /** GPU bytes this model is expected to take. */
  need(record: ModelRecord): number {
    const fp = this.parts.capacity?.footprints;
    if (!fp || !record.footprintKey) return record.declaredBytes ?? record.artifactBytes;
    return fp.estimate(record.footprintKey, record.declaredBytes, record.artifactBytes);
  }

  /** The one load path: fetch, stage, make room, load, read the model's tensors. Failures undo it all. */
  private async load(record: ModelRecord): Promise<void> {
    const { fetcher, stager, clock, capacity, logger } = this.parts;
    const started = clock.now();
    const undo = new UndoList();
    try {
      const artifact: LocalArtifact = await fetcher.fetch(record.url, {
        onProgress: (p) => {
          record.progress = { bytes: p.bytes, totalBytes: p.totalBytes };
        },
        onDescribed: (info) => {
          record.versionSeen = info.version;
        },
      });
      undo.push(() => artifact.release());
      if (artifact.fetchMs > 0) record.fetchMs = artifact.fetchMs;
      record.footprintKey = `${record.url}\u0000${artifact.info.version}`;
      record.artifactBytes = artifact.bytes;

      record.phase = 'staging';
      record.progress = undefined;
      const layout = await inspectArtifact(artifact.dir);
      this.readLayout(record, layout);
      undo.push(() => {
        record.staged = undefined;
      });
      // Staged after admission, which chooses the devices its config places it on.
      const stage = async (devices: Devices): Promise<void> => {
        // Only a placement the agent chose is written; an artifact's own (or a CPU model's) stays as it is.
        const count = capacity?.ledger.devices.length ?? 0;
        const chosen =
          record.placement.kind === 'choose' &&
          devices !== 'all' &&
          (count > 1 || record.placement.unpin === true);
        const unpinned = record.placement.kind === 'all' && record.placement.unpin === true && count > 0;
        const gpus = chosen ? devices : unpinned ? Array.from({ length: count }, (_, d) => d) : undefined;
        const staged: StagedModel = await stager.stage(
          layout,
          record.tritonName,
          { mmeName: record.name, url: record.url, version: artifact.info.version },
          gpus,
        );
        if (!record.staged) undo.push(() => (record.staged ? stager.remove(record.staged) : undefined));
        record.staged = staged;
        record.stagedConfig = gpus ? placeOnGpus(layout.top.config, gpus) : layout.top.config;
        record.devices = devices;
      };

      const loadMs = await this.loadWithCapacity(record, undo, stage);
      record.io = await this.readModelIO(record);
      capacity?.ledger.settle(record.name);
      record.artifact = artifact;
      record.phase = undefined;
      record.state = 'ready';
      record.loadedAt = clock.now();
      record.loadMs = loadMs;
      record.peakBatch = 0;
      record.warmSince = undefined;
      this.noteWarmup(record);
      record.loads++;
      this.learnReportedFootprint(record);
      this.holdForWaiters(record);
      capacity?.policy.onAdmit(record.name, clock.now());
      this.parts.events?.loaded?.({
        model: record.name,
        loadMs,
        fetchMs: artifact.fetchMs,
        downloadedBytes: artifact.fetchMs > 0 ? artifact.info.size : 0,
        footprintBytes: this.need(record),
        evicted: record.victims,
      });
      logger.info('model loaded', {
        model: record.name,
        tritonName: record.tritonName,
        url: record.url,
        ms: clock.now() - started,
        loadMs,
        fetchMs: artifact.fetchMs,
      });
    } catch (err) {
      await undo.run();
      throw err;
    }
  }

  /**
   * A model that just became resident is held for one turn of the event loop, so the requests that waited
   * for it pin it before another admission can choose it as a victim.
   */
  private holdForWaiters(record: ModelRecord): void {
    record.pins++;
    setImmediate(() => this.unpin(record));
  }

  /** One request (or hold) on the model ended: wake a waiting unload or admission when it was the last. */
  unpin(record: ModelRecord): void {
    record.pins--;
    if (record.pins > 0) return;
    record.drained.notify();
    this.parts.capacity?.ledger.notify();
  }

  /**
   * Makes room, reserves, loads. A Triton out-of-memory failure despite the estimate (TensorRT's masked one
   * included) learns that the model needs more than it had, lets a sample taken after the failure show
   * the devices as they are (memory still on its way back, or held by the failed load), and tries again
   * with that, a bounded number of times. A Python stub that died is tried once more. Resolves with
   * Triton's load time.
   */
  private async loadWithCapacity(
    record: ModelRecord,
    undo: UndoList,
    stage: (devices: Devices) => Promise<void>,
  ): Promise<number> {
    const { triton, clock, capacity, logger } = this.parts;
    const deadline = clock.now() + this.options.admissionWaitMs;
    let lastOom: AgentError | undefined;
    let ooms = 0;
    let stubRetried = false;
    let oomAfterRelease = false;
    for (;;) {
      const need = this.need(record);
      let devices: Devices = 'all';
      if (capacity) {
        record.phase = 'waiting-for-capacity';
        try {
          devices = await capacity.admission.admit(record, need, deadline, this.stopping.signal);
        } catch (err) {
          // Out of room after Triton's own out-of-memory failure: say both.
          if (lastOom && isAgentError(err, ErrorCode.InsufficientCapacity))
            throw new AgentError(
              ErrorCode.InsufficientCapacity,
              `${err.message}; Triton said: ${lastOom.message}`,
              { cause: err },
            );
          throw err;
        }
      }
      record.phase = 'staging';
      try {
        await stage(devices);
      } catch (err) {
        capacity?.ledger.cancel(record.name);
        throw err;
      }
      record.phase = 'loading';
      capacity?.ledger.loading(record.name);
      const t0 = clock.now();
      try {
        await triton.load(record.tritonName, { deadlineMs: this.options.loadTimeoutMs });
      } catch (err) {
        // Leave Triton as it was: whatever part did load goes again.
        await triton.unload(record.tritonName, { unloadDependents: true }).catch(() => undefined);
        // Without an answer the load may have taken memory (Triton finishes a load the caller gave up on
        // before the unload behind it runs): that memory is released, late perhaps, not never taken. A
        // failure Triton answered may have left memory behind too: held until a sample tells.
        const unanswered = !(err instanceof TritonError) || !err.answered;
        const failedAt = clock.now();
        let freeBeside = 0;
        if (capacity) {
          // Free beside its reservation on its devices, as the ledger saw it when the load failed.
          const beside = Math.min(
            ...capacity.ledger.indices(devices).map((d) => capacity.ledger.freeOn(d)),
            Number.MAX_SAFE_INTEGER,
          );
          if (unanswered) capacity.ledger.release(record.name);
          else capacity.ledger.holdAfterFailure(record.name);
          freeBeside = Math.max(0, beside);
        }
        let e = this.loadFailure(record, err);
        if (err instanceof TritonError && isUnhealthyStub(err.tritonMessage)) {
          if (!stubRetried) {
            stubRetried = true;
            logger.warn("the Python backend's stub process died while loading; trying once more", {
              model: record.name,
              error: e.message,
            });
            continue;
          }
          throw new AgentError(
            ErrorCode.TritonUnavailable,
            `${e.message} (the Python backend's stub process died twice while loading; this is often passing — the host's memory, a CUDA crash — so retry)`,
            { cause: e },
          );
        }
        if (capacity && err instanceof TritonError && e.code === ErrorCode.InvalidModel) {
          const plan = maskedPlanPath(err.tritonMessage);
          if (plan !== undefined) {
            const unmasked = await this.planOutOfMemory(record, plan, devices, need, failedAt);
            if (unmasked)
              e = new AgentError(ErrorCode.InsufficientCapacity, `${e.message} (${unmasked})`, { cause: e });
          }
        }
        if (!isAgentError(e, ErrorCode.InsufficientCapacity) || !capacity) throw e;
        lastOom = e;
        const { ledger, footprints } = capacity;
        // Memory an unload just released may not have been free yet (allocators hand it back late).
        oomAfterRelease ||= failedAt - ledger.lastReleaseAt() < capacity.releaseWaitMs;
        // Before answering 507, one fresh sample corrects the ledger and admission decides once more.
        if (ooms++ > this.options.oomRetries || failedAt >= deadline) throw e;
        logger.warn('Triton ran out of memory loading; deciding again once a sample shows the GPU', {
          model: record.name,
          attempt: ooms,
          need,
        });
        // A sample taken after the failure shows the devices as they are: memory released but still in
        // use (admission waits for it), or held by the failed load (admission counts it as used).
        await this.sampleAfter(failedAt + ledger.options.metricsIntervalMs, deadline);
        // It needed more than it had: its reservation and what was free beside it (a lower bound, until its
        // footprint has been measured) — unless the sample shows memory released just before still in use
        // there: then that is what stood in its way, and admission waits for it. (A PyTorch load that fails
        // keeps what it allocated in PyTorch's cache, which looks the same, so PyTorch always learns.)
        const lagged =
          !isPytorch(record.platform) && ledger.indices(devices).some((d) => ledger.lagging(d) > 0);
        // A bound that grows half as much again at each further failure, so a badly wrong estimate is
        // caught in a few tries; and at least the allocation the backend says failed (PyTorch says).
        if (!lagged && record.footprintKey && ooms <= this.options.oomRetries)
          footprints.needsMoreThan(
            record.footprintKey,
            Math.max(
              need + freeBeside,
              ooms > 1 ? Math.ceil(need * OOM_GROWTH) : 0,
              err instanceof TritonError ? (triedToAllocate(err.tritonMessage) ?? 0) : 0,
            ),
          );
        continue;
      }
      // It loaded once released memory had come back: remember how long that took.
      if (oomAfterRelease && capacity)
        capacity.ledger.learnReleaseLag(clock.now() - capacity.ledger.lastReleaseAt());
      undo.push(() => this.parts.capacity?.ledger.release(record.name));
      undo.push(() => triton.unload(record.tritonName, { unloadDependents: true }));
      return clock.now() - t0;
    }
  }

  /** Waits (bounded by `deadline` and three metrics intervals) for a sample taken at or after `at`. */
  private async sampleAfter(at: number, deadline: number): Promise<void> {
    const { clock, capacity } = this.parts;
    if (!capacity) return;
    const { ledger } = capacity;
    const until = Math.min(deadline, at + 3 * ledger.options.metricsIntervalMs);
    while ((ledger.sample?.at ?? -Infinity) < at) {
      const left = until - clock.now();
      if (left <= 0) return;
      await waitForChange(clock, ledger.nextSample(), left, this.stopping.signal);
    }
  }

  /**
   * TensorRT's auto-complete masks an out-of-memory as "unable to load plan file": when the plan is there
   * and a sample taken after the failure shows the GPU it was deserialised on (the model's first) with less
   * free than the model needs, it was out of memory. Returns why (for the message), or undefined: the plan
   * itself is bad.
   */
  private async planOutOfMemory(
    record: ModelRecord,
    plan: string,
    devices: Devices,
    need: number,
    failedAt: number,
  ): Promise<string | undefined> {
    const capacity = this.parts.capacity;
    if (!capacity) return undefined;
    // The path is Triton's (`<repository>/<name>/<version>/<file>`); the staged copy is the agent's view.
    const staged = record.staged?.dirs[0];
    const local = staged ? path.join(staged, ...plan.split('/').slice(-2)) : plan;
    const planBytes = await Promise.any(
      [fsp.stat(plan), fsp.stat(local)].map((p) =>
        p.then((st) => (st.isFile() ? st.size : Promise.reject(new Error('not a file')))),
      ),
    ).catch(() => undefined);
    if (planBytes === undefined) return undefined;
    const { ledger } = capacity;
    await this.sampleAfter(
      failedAt + ledger.options.metricsIntervalMs,
      failedAt + 4 * ledger.options.metricsIntervalMs,
    );
    const first = devices === 'all' ? 0 : (devices[0] ?? 0);
    const device = ledger.sample?.devices.find((d, i) => (d.ordinal ?? i) === first);
    const free = device ? device.totalBytes - device.usedBytes : ledger.freeOn(first) + need;
    // Its engine takes at least about what the plan holds, whatever was declared.
    const needs = Math.max(need, planBytes);
    if (free >= needs) return undefined;
    if (record.footprintKey) capacity.footprints.needsMoreThan(record.footprintKey, planBytes - 1);
    return `TensorRT could not deserialise the plan on GPU ${first} while it had ${mibText(free)} free of the ${mibText(needs)} it needs: out of memory`;
  }

  /**
   * Where the backend reports what a load allocated (ModelStatistics.memory_usage: TensorRT and ONNX
   * Runtime, with Triton's memory tracker on), that figure is the footprint at once; otherwise the samples
   * teach it. Read after the answer, in the background.
   */
  private learnReportedFootprint(record: ModelRecord): void {
    const capacity = this.parts.capacity;
    const key = record.footprintKey;
    if (!capacity || !key) return;
    const names = [record.tritonName, ...(record.staged?.memberNames ?? [])];
    void (async () => {
      // Bytes per device (the ensemble's models together); the footprint is the most any device holds.
      const perDevice = new Map<number, number>();
      for (const n of names) {
        if (this.stopping.signal.aborted) return;
        const stats = await this.parts.triton.modelStatistics(n).catch(() => []);
        for (const s of stats)
          for (const m of s.memory_usage)
            if (m.type === 'GPU') perDevice.set(m.id, (perDevice.get(m.id) ?? 0) + m.byte_size);
      }
      const reported = Math.max(0, ...perDevice.values());
      if (reported > 0 && record.footprintKey === key && record.state === 'ready') {
        capacity.footprints.measure(key, reported);
        capacity.ledger.update(record.name, this.need(record));
        this.parts.logger.info('footprint reported by the backend', { model: record.name, bytes: reported });
      }
    })();
  }

  /** Maps a failed Triton load to what the caller should hear, naming the user's model. */
  private loadFailure(record: ModelRecord, err: unknown): AgentError {
    if (err instanceof TritonError) {
      // A failed connection is told without Triton's address (err.message); Triton's own texts as they are.
      const text = err.connectionFailure ? err.message : err.tritonMessage.trimEnd();
      const msg = `model '${record.name}' failed to load: ${userText(record, text)}`;
      return new AgentError(err.code, msg, { cause: err });
    }
    if (err instanceof AgentError) return err;
    return new AgentError(ErrorCode.Internal, `model '${record.name}' failed to load: ${messageOf(err)}`, {
      cause: err,
    });
  }

  private async readModelIO(record: ModelRecord): Promise<ModelIO> {
    const { triton } = this.parts;
    const [md, cfg] = await Promise.all([
      triton.modelMetadata(record.tritonName),
      triton.modelConfig(record.tritonName),
    ]).catch((err: unknown) => {
      throw this.loadFailure(record, err);
    });
    const spec = (t: { name: string; datatype: string; shape: number[] }): TensorSpec => {
      if (!isDatatype(t.datatype)) {
        throw new AgentError(
          ErrorCode.TritonProtocol,
          `Triton reports unknown datatype '${t.datatype}' for '${t.name}' of model '${record.name}'`,
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
   * Takes over a model an earlier run of the agent left loaded in Triton: its artifact is still available,
   * its staged files are intact and Triton reports it ready. It is charged to the ledger like any resident
   * model. Rejects (changing nothing) when any of that does not hold.
   */
  async adopt(record: ModelRecord, stagedVersion: string): Promise<void> {
    const { fetcher, stager, clock, capacity } = this.parts;
    const undo = new UndoList();
    try {
      // Never a download here (the agent answers /ping only once adoption is decided): a source that
      // changed, or an artifact no longer on disk, is loaded again from its source on first use.
      const info = await withTimeout(
        fetcher.describe(record.url),
        ADOPT_DESCRIBE_MS,
        () => new AdoptionDeferred(`looking the source up took more than ${ADOPT_DESCRIBE_MS} ms`),
        clock,
      );
      if (info.version !== stagedVersion)
        throw new AdoptionDeferred('its source changed since it was staged');
      if (!fetcher.isLocal(info)) throw new AdoptionDeferred('its artifact is no longer on local disk');
      const artifact = await fetcher.fetch(record.url);
      if (artifact.info.version !== stagedVersion) {
        artifact.release();
        throw new AdoptionDeferred('its source changed since it was staged');
      }
      undo.push(() => artifact.release());
      record.footprintKey = `${record.url}\u0000${artifact.info.version}`;
      record.artifactBytes = artifact.bytes;
      const layout = await inspectArtifact(artifact.dir);
      const staged = await stager.findIntact(layout, record.tritonName, {
        url: record.url,
        version: artifact.info.version,
      });
      // Staged files changed since (a link pointed elsewhere, a config rewritten): staged anew on first use.
      if (!staged) throw new AdoptionDeferred('its staged files are not as this agent staged them');
      this.readLayout(record, layout);
      // Where the previous run placed it: its staged config says which GPUs (none named: every GPU).
      record.devices =
        capacity && capacity.ledger.known && !capacity.ledger.identified
          ? 'all'
          : await this.stagedDevices(staged, record.placement, record);
      capacity?.ledger.reserve(record.name, this.need(record), record.devices);
      capacity?.ledger.settle(record.name);
      undo.push(() => capacity?.ledger.cancel(record.name));
      record.io = await this.readModelIO(record);
      record.staged = staged;
      record.artifact = artifact;
      record.state = 'ready';
      record.loadedAt = clock.now();
      record.loads = 1;
      capacity?.policy.onAdmit(record.name, clock.now());
    } catch (err) {
      await undo.run();
      throw err;
    }
  }

  /**
   * Moves a resident model's GPU instances to `devices` (more GPUs when it is busy, fewer when it cools).
   * Only its staged `config.pbtxt` changes (one instance group per GPU), so Triton updates the instances in
   * place: the old ones keep serving while the new ones are created, and an instance is kept only on a GPU
   * whose group is unchanged — never for TensorRT, whose every instance is built anew (DEVICE_BLOCKING),
   * and whose engine stays on a GPU it leaves until the whole model unloads. So room is held, while the
   * move happens, for a second copy on each added GPU and on each GPU that stays without keeping its
   * instance. `victims` (chosen by the caller, still evictable) are sent away first to make that room, and
   * the move waits for their memory, at most `admissionWaitMs`. Single-flight with the model's other
   * transitions; if any step fails, the model stays as it was. Resolves true when it moved.
   */
  rescale(record: ModelRecord, devices: number[], victims: readonly string[] = []): Promise<boolean> {
    const { capacity, stager, triton, logger, clock } = this.parts;
    if (!capacity || record.transition) return Promise.resolve(false);
    const work = startMove(
      {
        ledger: capacity.ledger,
        admission: capacity.admission,
        stager,
        triton,
        logger,
        clock,
        roomWaitMs: Math.min(this.options.admissionWaitMs, RESCALE_ROOM_WAIT_MS),
        loadTimeoutMs: this.options.loadTimeoutMs,
        stopping: this.stopping.signal,
      },
      record,
      devices,
      victims,
    );
    if (!work) return Promise.resolve(false);
    this.track(record, work);
    return work;
  }

  /** What an artifact's config says for capacity and placement: its declared footprint and where it goes. */
  private readLayout(record: ModelRecord, layout: ArtifactLayout): void {
    record.platform = layout.top.summary.platform || layout.top.summary.backend || '';
    record.artifactConfig = layout.top.config;
    const declared = Number(layout.top.summary.parameters[DECLARED_GPU_BYTES_PARAMETER]);
    record.declaredBytes = Number.isFinite(declared) && declared > 0 ? declared : undefined;
    record.placement = placementOf(
      isEnsemble(layout.top.summary)
        ? layout.members.flatMap((m) => instanceGroups(m.config))
        : instanceGroups(layout.top.config),
      this.options.placement,
      this.options.artifactGpus,
    );
  }

  /**
   * The GPUs a staged model's config places it on ('all' when it names none): what Triton was given, even
   * when the settings changed since (an artifact's own GPUs ignored by an earlier run).
   */
  private async stagedDevices(
    staged: StagedModel,
    placement: Placement,
    record: ModelRecord,
  ): Promise<Devices> {
    const gpus = new Set<number>();
    for (const [i, dir] of staged.dirs.entries()) {
      const text = await fsp.readFile(path.join(dir, 'config.pbtxt'), 'utf8').catch(() => '');
      try {
        const doc = parsePbtxt(text);
        if (i === 0) record.stagedConfig = doc;
        for (const g of instanceGroups(doc)) for (const d of g.gpus) gpus.add(d);
      } catch {
        // unreadable: counted on every GPU
      }
    }
    if (placement.kind === 'cpu') return [];
    if (placement.kind === 'all') return 'all';
    return gpus.size > 0 ? [...gpus].sort((a, b) => a - b) : 'all';
  }

  // --- off the GPU ----------------------------------------------------------------------------------

  /**
   * The one way off the GPU: drain pins (bounded), unload with dependents, wait for Triton's index, remove
   * the staged files, release the artifact; then keep the model registered as `evicted`, or forget it.
   * The state and the ledger change before the first await, so a caller's decision holds. If Triton
   * cannot be told, the model stays resident and served.
   */
  leaveGpu(record: ModelRecord, outcome: 'evicted' | 'forgotten'): Promise<void> {
    if (record.state !== 'ready' || record.transition) return record.transition ?? Promise.resolve();
    record.state = 'unloading';
    this.parts.capacity?.ledger.startFreeing(record.name);
    const work = this.unload(record, outcome);
    this.track(record, work);
    return work;
  }

  private async unload(record: ModelRecord, outcome: 'evicted' | 'forgotten'): Promise<void> {
    const { triton, clock, capacity, logger } = this.parts;
    const started = clock.now();
    try {
      await this.drain(record);
      await triton.unload(record.tritonName, { unloadDependents: true });
    } catch (err) {
      // Triton was not told: the model stays resident and served.
      record.state = 'ready';
      capacity?.ledger.stopFreeing(record.name);
      const e = isAgentError(err)
        ? err
        : new AgentError(ErrorCode.TritonUnavailable, messageOf(err), { cause: err });
      const text = userText(record, e.message);
      throw text === e.message ? e : new AgentError(e.code, text, { cause: e });
    }
    try {
      await this.waitUnloaded([record.tritonName, ...(record.staged?.memberNames ?? [])], record.name);
    } catch (err) {
      // Triton accepted the unload: it is going whatever the poll says.
      logger.warn('could not confirm the unload; counting the model as gone', {
        model: record.name,
        error: messageOf(err),
      });
    }
    await this.forgetResidency(record);
    if (outcome === 'forgotten') this.parts.catalogue.remove(record);
    else record.evictions++;
    this.parts.events?.unloaded?.({
      model: record.name,
      ms: clock.now() - started,
      evicted: outcome === 'evicted',
    });
    logger.info(outcome === 'evicted' ? 'model evicted' : 'model unloaded', {
      model: record.name,
      tritonName: record.tritonName,
      ms: clock.now() - started,
    });
  }

  /** The model is no longer on the GPU: release its bytes, staged files and artifact; it is `evicted`. */
  private async forgetResidency(record: ModelRecord): Promise<void> {
    const { capacity, stager, clock } = this.parts;
    capacity?.ledger.release(record.name);
    capacity?.policy.onEvict(record.name, clock.now());
    const staged = record.staged;
    record.staged = undefined;
    record.artifact?.release();
    record.artifact = undefined;
    record.io = undefined;
    record.state = 'evicted';
    if (staged) await stager.remove(staged).catch(() => undefined);
  }

  /**
   * Triton lost the model (it restarted): account for it as evicted, so the next use loads it again. A
   * move between GPUs in flight (the one transition of a resident model) finishes first.
   */
  markLost(record: ModelRecord): void {
    if (record.state !== 'ready') return;
    const moving = record.transition;
    const before = moving ?? Promise.resolve();
    // The staged files go before anything reloads it (the reload stages into the same directory).
    const work: Promise<void> = before.then(async () => {
      if (record.state !== 'ready') return;
      // A move that reached the new Triton loaded the model there: it goes, so nothing is held unknown.
      if (moving)
        await this.parts.triton
          .unload(record.tritonName, { unloadDependents: true, deadlineMs: this.options.unloadTimeoutMs })
          .catch(() => undefined);
      await this.forgetResidency(record);
    });
    this.track(record, work);
  }

  /** Waits (bounded) for the model's requests in flight to finish. */
  private async drain(record: ModelRecord): Promise<void> {
    const deadline = this.parts.clock.now() + this.options.unloadDrainTimeoutMs;
    while (record.pins > 0) {
      const left = deadline - this.parts.clock.now();
      if (left <= 0) {
        this.parts.logger.warn('unloading with requests still in flight', {
          model: record.name,
          pins: record.pins,
        });
        return;
      }
      await waitForChange(this.parts.clock, record.drained.next(), left, this.stopping.signal);
    }
  }

  /** Polls RepositoryIndex (quickly at first, then every `unloadPollMs`) until no version of `names` is busy. */
  private async waitUnloaded(names: string[], model: string): Promise<void> {
    const { triton, clock, logger } = this.parts;
    const deadline = clock.now() + this.options.unloadTimeoutMs;
    let pause = FIRST_UNLOAD_POLL_MS;
    for (;;) {
      const index = await triton.repositoryIndex();
      const busy = index.filter(
        (e) => names.includes(e.name) && ['READY', 'LOADING', 'UNLOADING'].includes(e.state),
      );
      if (busy.length === 0) return;
      if (clock.now() >= deadline) {
        logger.error('Triton did not finish unloading in time; continuing', { model, busy });
        return;
      }
      await clock.sleep(pause, this.stopping.signal);
      pause = Math.min(pause * 2, this.options.unloadPollMs);
    }
  }
}

/** How long adoption waits for a source to say which version it holds. */
const ADOPT_DESCRIBE_MS = 10_000;

/**
 * Adoption cannot take the model over as Triton has it, but the model itself is fine: it stays registered
 * and loads again from its source on first use.
 */
export class AdoptionDeferred extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'AdoptionDeferred';
  }
}
