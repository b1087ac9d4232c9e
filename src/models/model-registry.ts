import { AgentError, ErrorCode, isAgentError, messageOf } from '../errors';
import { inspectArtifact, tritonNameFor, type Stager, type StagedModel } from '../artifacts';
import { isDatatype, type ModelIO, type TensorSpec } from '../inference';
import { TritonError, type TritonControl, type ModelInferRequest, type ModelInferResponse } from '../triton';
import type { Logger } from '../observability';

/** Time, injected so tests and simulations drive it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type ModelState = 'loading' | 'ready' | 'unloading';

/** One MME model name and everything the agent knows about it. */
export interface ModelRecord {
  readonly name: string;
  /** The url it was loaded from, as given. */
  readonly url: string;
  readonly tritonName: string;
  /** `X-Amzn-SageMaker-Target-Model` sent with the load, if any. */
  readonly targetModel: string | undefined;
  state: ModelState;
  /** Requests in flight; a pinned model is never unloaded under them. */
  pins: number;
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

/**
 * The registry of MME models and the one path every load and unload goes through. Per-model work is
 * single-flight: concurrent callers await the same promise (`record.transition`). Invocations pin their
 * model; an unload waits (bounded) for the pins to drain.
 */
export class ModelRegistry {
  private readonly records = new Map<string, ModelRecord>();
  private readonly byTarget = new Map<string, ModelRecord>();

  constructor(
    private readonly triton: TritonControl,
    private readonly stager: Stager,
    private readonly options: RegistryOptions,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {}

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
   * POST /models: stage the directory at `url` under a fresh Triton name and load it. Resolves once the
   * model is ready. 409 when the name is already loaded or loading.
   */
  async load(name: string, url: string, targetModel?: string): Promise<ModelRecord> {
    if (this.records.has(name)) {
      throw new AgentError(ErrorCode.ModelAlreadyLoaded, `model '${name}' is already loaded`);
    }
    const record: ModelRecord = {
      name,
      url,
      tritonName: tritonNameFor(name),
      targetModel,
      state: 'loading',
      pins: 0,
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
    const work = this.stageAndLoad(record);
    record.transition = work.then(
      () => undefined,
      () => undefined,
    );
    try {
      await work;
    } catch (err) {
      this.forget(record);
      throw err;
    } finally {
      record.transition = undefined;
    }
    return record;
  }

  private forget(record: ModelRecord): void {
    if (this.records.get(record.name) === record) this.records.delete(record.name);
    if (record.targetModel && this.byTarget.get(record.targetModel) === record)
      this.byTarget.delete(record.targetModel);
  }

  private async stageAndLoad(record: ModelRecord): Promise<void> {
    const started = this.clock.now();
    const layout = await inspectArtifact(record.url);
    record.staged = await this.stager.stage(layout, record.tritonName, {
      mmeName: record.name,
      url: record.url,
    });
    try {
      await this.loadIntoTriton(record);
    } catch (err) {
      // Leave Triton and the repository as they were: unload anything that did load, remove our files.
      await this.triton.unload(record.tritonName, { unloadDependents: true }).catch(() => undefined);
      await this.stager.remove(record.staged).catch(() => undefined);
      record.staged = undefined;
      throw err;
    }
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
   * Pins a model for one request. Waits for a load in progress (bounded by the invoke timeout); a model
   * being unloaded is waited for and then reported unknown.
   */
  async acquire(nameOrTarget: string): Promise<Lease> {
    const deadline = this.clock.now() + this.options.invokeTimeoutMs;
    for (;;) {
      const record = this.get(nameOrTarget);
      if (!record) throw new AgentError(ErrorCode.ModelNotFound, `model '${nameOrTarget}' is not loaded`);
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
    }
  }

  /**
   * Runs one inference on a pinned model. If Triton no longer has the model (it restarted), the model is
   * loaded again through the one load path and the request is retried once.
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

  private reloading = new Map<ModelRecord, Promise<void>>();

  /** Loads a model Triton lost again; concurrent callers share one load. */
  private reload(record: ModelRecord): Promise<void> {
    let p = this.reloading.get(record);
    if (!p) {
      p = this.loadIntoTriton(record).finally(() => this.reloading.delete(record));
      this.reloading.set(record, p);
    }
    return p;
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
