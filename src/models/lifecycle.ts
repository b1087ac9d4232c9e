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
import { TritonError, instanceGroups, isEnsemble, parsePbtxt, type TritonControl } from '../triton';
import type { Admission } from './admission';
import type { Catalogue } from './catalogue';
import { waitForChange, type Clock } from './clock';
import type { EvictionPolicy } from './eviction';
import type { Footprints } from './footprints';
import type { Devices, GpuLedger } from './gpu-ledger';
import { placementOf, type ArtifactGpus, type Placement, type PlacementMode } from './placement';
import type { ModelRecord } from './model-record';

/** The config `parameters` key in which an artifact may declare its GPU footprint. */
export const DECLARED_GPU_BYTES_PARAMETER = 'gpu_memory_bytes';

/** First pause before loading again when Triton ran out of memory right after memory was released. */
const LAG_RETRY_FIRST_MS = 25;
/** Growth of a model's reservation after Triton ran out of memory loading it with the last one. */
const OOM_GROWTH = 1.5;
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
  fetcher: Pick<ArtifactFetcher, 'fetch'>;
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
    this.parts.capacity?.footprints.forgetPending();
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
    record.transition = this.load(record).then(
      () => {
        record.transition = undefined;
      },
      (err: unknown) => {
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
        record.transition = undefined;
        this.parts.events?.loadFailed?.({ model: record.name, code: e.code, message: e.message });
        this.parts.logger.warn('model failed to load', {
          model: record.name,
          url: record.url,
          code: e.code,
          error: e.message,
        });
      },
    );
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
          { mmeName: record.name, url: record.url },
          gpus,
        );
        if (!record.staged) undo.push(() => (record.staged ? stager.remove(record.staged) : undefined));
        record.staged = staged;
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
      record.loads++;
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
   * Makes room, reserves, loads. A Triton out-of-memory failure despite the estimate learns a lower
   * bound, evicts more and tries again, a bounded number of times. Resolves with Triton's load time.
   */
  private async loadWithCapacity(
    record: ModelRecord,
    undo: UndoList,
    stage: (devices: Devices) => Promise<void>,
  ): Promise<number> {
    const { triton, clock, capacity } = this.parts;
    const deadline = clock.now() + this.options.admissionWaitMs;
    let need = this.need(record);
    let lastOom: AgentError | undefined;
    let grown = 0;
    let lagRetries = 0;
    let firstOomAt: number | undefined;
    let sampledAfterOom = false;
    for (;;) {
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
              {
                cause: err,
              },
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
      const quiet = capacity?.ledger.quietToken();
      const moved = capacity?.ledger.beginMove();
      const t0 = clock.now();
      try {
        await triton.load(record.tritonName, { deadlineMs: this.options.loadTimeoutMs });
      } catch (err) {
        moved?.();
        // Leave Triton as it was: whatever part did load goes again.
        await triton.unload(record.tritonName, { unloadDependents: true }).catch(() => undefined);
        // Without an answer the load may have taken memory (Triton finishes a load the caller gave up on
        // before the unload behind it runs): that memory is released, late perhaps, not never taken.
        const unanswered =
          !(err instanceof TritonError) ||
          err.kind === 'DeadlineExceeded' ||
          err.kind === 'Unavailable' ||
          err.kind === 'Cancelled';
        if (unanswered) capacity?.ledger.release(record.name);
        else capacity?.ledger.cancel(record.name);
        const e = this.loadFailure(record, err);
        if (!isAgentError(e, ErrorCode.InsufficientCapacity) || !capacity) throw e;
        lastOom = e;
        const { ledger, footprints } = capacity;
        const now = clock.now();
        firstOomAt ??= now;
        // Memory an unload just released may not be free yet (allocators hand it back late): try again
        // soon, backing off, for up to the release wait — without blaming the model's size.
        const lagDelay = LAG_RETRY_FIRST_MS * 2 ** lagRetries;
        if (
          now - ledger.lastReleaseAt() < capacity.releaseWaitMs &&
          now + lagDelay - firstOomAt <= capacity.releaseWaitMs &&
          now + lagDelay < deadline
        ) {
          lagRetries++;
          await clock.sleep(lagDelay, this.stopping.signal);
          continue;
        }
        if (grown++ >= this.options.oomRetries) {
          // Before answering 507, let one fresh sample correct the ledger (memory it did not know about)
          // and decide once more with it; admission then waits or evicts by what the device says.
          if (sampledAfterOom || now >= deadline) throw e;
          sampledAfterOom = true;
          await waitForChange(clock, ledger.nextSample(), deadline - now, this.stopping.signal);
          continue;
        }
        // The estimate was too small: the load failed with `need` reserved and `free` more available.
        const free = ledger.free();
        const failedWith = need + (Number.isFinite(free) ? Math.max(0, free) : 0);
        if (record.footprintKey) footprints.needsMoreThan(record.footprintKey, failedWith);
        need = Math.max(Math.ceil(need * OOM_GROWTH), failedWith + 1, this.need(record));
        this.parts.logger.warn('Triton ran out of memory loading; evicting more and retrying', {
          model: record.name,
          attempt: grown,
          need,
        });
        continue;
      }
      moved?.();
      // It loaded once released memory had come back: remember how long that took.
      if (lagRetries > 0 && capacity)
        capacity.ledger.learnReleaseLag(clock.now() - capacity.ledger.lastReleaseAt());
      undo.push(() => this.parts.capacity?.ledger.release(record.name));
      undo.push(() => triton.unload(record.tritonName, { unloadDependents: true }));
      const loadMs = clock.now() - t0;
      if (capacity) this.learnFootprint(record, quiet, clock.now());
      return loadMs;
    }
  }

  /**
   * Learns the footprint after the answer: from `ModelStatistics.memory_usage` where the backend reports
   * it, else (if the load had the GPU to itself) from the change in used memory a later sample shows.
   */
  private learnFootprint(
    record: ModelRecord,
    quiet: { token: number; before: import('./gpu-probe').GpuSample } | undefined,
    loadedAt: number,
  ): void {
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
      if (reported > 0) {
        capacity.footprints.learn(key, reported);
        capacity.ledger.update(record.name, reported);
      } else if (quiet) {
        capacity.footprints.expect({
          key,
          before: quiet.before,
          token: quiet.token,
          loadedAt,
          onLearned: (bytes) => {
            this.parts.logger.info('footprint measured', { model: record.name, bytes });
            capacity.ledger.update(record.name, bytes);
          },
        });
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
  async adopt(record: ModelRecord): Promise<void> {
    const { fetcher, stager, clock, capacity } = this.parts;
    const undo = new UndoList();
    try {
      const artifact = await fetcher.fetch(record.url);
      undo.push(() => artifact.release());
      record.footprintKey = `${record.url}\u0000${artifact.info.version}`;
      record.artifactBytes = artifact.bytes;
      const layout = await inspectArtifact(artifact.dir);
      const staged = await stager.findIntact(layout, record.tritonName);
      if (!staged)
        throw new AgentError(ErrorCode.InvalidModel, `the staged files of '${record.name}' are not intact`);
      this.readLayout(record, layout);
      // Where the previous run placed it: its staged config says which GPUs (none named: every GPU).
      record.devices = await this.stagedDevices(staged, record.placement);
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
   * Only its staged `config.pbtxt` changes, so Triton updates the instances in place: the old ones keep
   * serving, and room is needed for one copy on each added device only, held in the ledger while it
   * happens. `victims` (chosen by the caller, still evictable) are sent away first to make that room, and
   * the move waits for their memory, at most `admissionWaitMs`. Single-flight with the model's other
   * transitions; if any step fails, the model stays as it was. Resolves true when it moved.
   */
  rescale(record: ModelRecord, devices: number[], victims: readonly string[] = []): Promise<boolean> {
    const { capacity, stager, triton, logger, clock } = this.parts;
    const old = record.devices;
    const staged = record.staged;
    if (
      !capacity ||
      record.state !== 'ready' ||
      record.transition ||
      !record.artifact ||
      !staged ||
      old === 'all' ||
      devices.length === 0
    )
      return Promise.resolve(false);
    const { ledger, admission } = capacity;
    const bytes = ledger.chargeOf(record.name);
    const added = devices.filter((d) => !old.includes(d));
    const roomNow = added.every((d) => ledger.freeOn(d) >= bytes);
    if (!roomNow && victims.length === 0) return Promise.resolve(false);
    // The victims' charges turn `freeing` now, and the room they leave is this model's from here on.
    if (!roomNow) admission.evictFor(record, victims);
    const transient = `${record.name}\u0000rescale`;
    if (added.length > 0) ledger.reserve(transient, bytes, added, { transient: true });
    const artifactDir = record.artifact.dir;
    const work = (async (): Promise<boolean> => {
      // A move is never urgent: it waits briefly for room, and a DELETE behind it is not held long.
      const deadline = clock.now() + Math.min(this.options.admissionWaitMs, RESCALE_ROOM_WAIT_MS);
      // Held room is usable once nothing on an added device is charged beyond its capacity.
      for (;;) {
        // The held room follows the model's charge (a footprint learned meanwhile).
        if (added.length > 0)
          ledger.reserve(transient, ledger.chargeOf(record.name), added, { transient: true });
        if (added.every((d) => ledger.freeOn(d) >= 0)) break;
        const left = deadline - clock.now();
        if (left <= 0 || this.stopping.signal.aborted) {
          ledger.cancel(transient);
          logger.info('no room freed in time to place a busy model on more GPUs', {
            model: record.name,
            devices,
          });
          return false;
        }
        const change = Promise.race([ledger.next(), ledger.nextSample()]);
        await waitForChange(clock, change, Math.min(left, ledger.untilSettled()), this.stopping.signal).catch(
          () => undefined,
        );
      }
      // A reload moves memory: no footprint is measured across it.
      const moved = ledger.beginMove();
      let layout: ArtifactLayout | undefined;
      let asked = false;
      try {
        layout = await inspectArtifact(artifactDir);
        await stager.place(layout, staged, devices);
        asked = true;
        await triton.load(record.tritonName, { deadlineMs: this.options.loadTimeoutMs });
      } catch (err) {
        moved();
        const answered =
          !asked ||
          (err instanceof TritonError &&
            err.kind !== 'DeadlineExceeded' &&
            err.kind !== 'Unavailable' &&
            err.kind !== 'Cancelled');
        if (!answered && layout) {
          // No answer: Triton may still be updating the model (a deadline or a dropped connection does not
          // stop it), so its config is left alone and both placements are charged until a later move.
          const both = [...new Set([...old, ...devices])].sort((a, b) => a - b);
          ledger.cancel(transient);
          ledger.move(record.name, both);
          record.devices = both;
          logger.warn('a move to other GPUs got no answer; counting the model on both sets of GPUs', {
            model: record.name,
            devices: both,
            error: messageOf(err),
          });
          return false;
        }
        // Triton refused the update and kept the old instances; what it allocated meanwhile is released.
        ledger.release(transient);
        if (layout && old.length > 0) await stager.place(layout, staged, old).catch(() => undefined);
        logger.warn('could not move a model to other GPUs; it stays where it was', {
          model: record.name,
          devices,
          error: messageOf(err),
        });
        return false;
      }
      moved();
      // The held room is now the model's own charge; devices it left are released.
      ledger.cancel(transient);
      ledger.move(record.name, devices);
      record.devices = devices;
      logger.info('model moved to other GPUs', { model: record.name, from: old, to: devices });
      return true;
    })();
    const settled: Promise<void> = work.then(
      () => undefined,
      () => undefined,
    );
    record.transition = settled;
    void settled.then(() => {
      // A transition chained behind this one (markLost) keeps its place.
      if (record.transition === settled) record.transition = undefined;
    });
    return work;
  }

  /** What an artifact's config says for capacity and placement: its declared footprint and where it goes. */
  private readLayout(record: ModelRecord, layout: ArtifactLayout): void {
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
  private async stagedDevices(staged: StagedModel, placement: Placement): Promise<Devices> {
    if (placement.kind === 'cpu') return [];
    if (placement.kind === 'all') return 'all';
    const gpus = new Set<number>();
    for (const dir of staged.dirs) {
      const text = await fsp.readFile(path.join(dir, 'config.pbtxt'), 'utf8').catch(() => '');
      try {
        for (const g of instanceGroups(parsePbtxt(text))) for (const d of g.gpus) gpus.add(d);
      } catch {
        // unreadable: counted on every GPU
      }
    }
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
    record.transition = work.then(
      () => {
        record.transition = undefined;
      },
      () => {
        record.transition = undefined;
      },
    );
    return work;
  }

  private async unload(record: ModelRecord, outcome: 'evicted' | 'forgotten'): Promise<void> {
    const { triton, clock, capacity, logger } = this.parts;
    const started = clock.now();
    let moved: (() => void) | undefined;
    try {
      await this.drain(record);
      moved = capacity?.ledger.beginMove();
      await triton.unload(record.tritonName, { unloadDependents: true });
    } catch (err) {
      // Triton was not told: the model stays resident and served.
      moved?.();
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
    } finally {
      moved?.();
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
    const done = () => {
      if (record.transition === work) record.transition = undefined;
    };
    record.transition = work;
    work.then(done, done);
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
