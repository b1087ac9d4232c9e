import { EventEmitter } from 'node:events';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import {
  isEnsemble,
  parsePbtxt,
  readModelConfig,
  setModelName,
  type ModelConfigSummary,
  type PbMessage,
} from '../../../src/model-config';
import { modelConfigFromJson, modelConfigToJson, type JsonObject } from '../../../src/model-config';
import { GpuMemory } from './gpu-memory';
import { texts, type CodeWord } from './texts';

/** A failure the gRPC layer answers with `code` and Triton's `message`. */
export class EmulatorError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export type VersionStateName = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';

/**
 * One execution instance of a loaded version (core backend_model_instance.h): where it runs, the
 * signature Triton compares to reuse it in an update, and the memory it holds.
 */
export interface Instance {
  /** CUDA ordinal; undefined for KIND_CPU and KIND_MODEL instances (no GPU memory of their own). */
  device: number | undefined;
  /**
   * Its group's config but `name` and `count`, with the device (core `EquivalentInInstanceConfig` and
   * `Signature`): an update reuses an instance only when this matches.
   */
  signature: string;
  /** Its allocation on `device`. */
  key: string;
  /** Bytes allocated while the instance was created (what a memory tracker sees). */
  loadBytes: number;
  /** Bytes it grew by after load, for the largest batch it has run (PyTorch's caching allocator). */
  grownBytes: number;
  /** Largest batch it has run. */
  peakBatch: number;
  /** Runs one request at a time (Triton's default scheduler). */
  busy: boolean;
}

export interface VersionRecord {
  version: number;
  state: VersionStateName;
  reason: string;
  inflight: number;
  onDrained?: () => void;
  /** Its execution instances; empty for an ensemble (its steps run on the composing models'). */
  instances: Instance[];
  /**
   * TensorRT engines by device (shared by the version's instances there, tensorrt_backend model_state.cc):
   * freed only when the whole model goes (`~ModelState`), even after an update removed the device.
   */
  engines: Map<number, string>;
  /** Requests queued for a free instance, oldest first. */
  queued?: ((i: Instance) => void)[];
}

/** Names of the `parameters` keys the emulator reads from a config.pbtxt. */
export const EMULATOR_PARAMETERS = {
  /** GPU bytes one instance of the model takes at load (else derived from the model file's size). */
  gpuBytes: 'emulator_gpu_bytes',
  /** GPU bytes = model file bytes × this (else the emulator's footprint factor): a footprint is not a file size. */
  memoryFactor: 'emulator_memory_factor',
  /**
   * Bytes one instance grows by at its first inference of a full batch (`max_batch_size`; a smaller batch
   * grows it in proportion), as PyTorch's caching allocator and cuDNN workspaces do. Default: a quarter of
   * its load bytes for PyTorch, none for other backends.
   */
  growthBytes: 'emulator_growth_bytes',
  /**
   * Time in ms one instance takes to load. Backends that create instances one after another (all but
   * python and onnxruntime) take it once per instance, so a model on every GPU loads that many times slower.
   */
  loadMs: 'emulator_load_ms',
  /** Extra inference latency in ms for this model. */
  inferMs: 'emulator_infer_ms',
  /** `identity`, `classifier` or `pattern` (else chosen from the inputs and outputs). */
  behaviour: 'emulator_behaviour',
} as const;

/** One instance Triton will create: its device and the signature an update compares. */
interface Slot {
  device: number | undefined;
  signature: string;
}

export interface LoadedConfig {
  summary: ModelConfigSummary;
  json: JsonObject;
  platform: string;
  modelDir: string;
  loadMs: number;
  inferMs: number;
  /** GPU bytes one instance takes at load, once a version has loaded. */
  perInstanceBytes?: number;
  /**
   * The model directory's files but config.pbtxt, each with the later of its mtime and ctime as `stat`
   * sees them (links followed): what tells an update from a reload (core model_repository_manager.cc).
   */
  files?: Map<string, number>;
}

export interface ModelStats {
  inferenceCount: number;
  executionCount: number;
  lastInference: number;
  successCount: number;
  successNs: number;
  failCount: number;
  failNs: number;
}

export interface ModelRecord {
  name: string;
  versions: Map<number, VersionRecord>;
  config?: LoadedConfig;
  /** Ensembles that loaded this model as a composing model. */
  dependents: Set<string>;
  /** Composing models this ensemble's load brought in. */
  loadedAlong: string[];
  explicitlyLoaded: boolean;
  loadDurationSecs: number;
  stats: ModelStats;
}

export interface LifecycleOptions {
  repository: string;
  /** The server's GPUs, indexed by CUDA device ordinal. */
  gpus: readonly GpuMemory[];
  /** Every load waits this long before it finishes (plus the model's own `emulator_load_ms`). */
  loadLatencyMs: number;
  /** Loads that run at once (Triton's model load thread pool); the others wait their turn. */
  loadThreads: number;
  /** Time an unload takes once in-flight requests have drained. */
  unloadLatencyMs: number;
  /** Model file bytes × this factor = GPU bytes, when the config declares none. */
  footprintFactor: number;
  /**
   * tensorrt_backend auto-completes every config by deserialising its plan (model_state.cc): on by default
   * in Triton; `--disable-auto-complete-config` turns it off.
   */
  autoCompleteConfig: boolean;
  /**
   * `--backend-config=<backend>,triton-backend-memory-tracker=true`: the backends whose load-time memory
   * ModelStatistics.memory_usage reports. Only tensorrt and onnxruntime ever report it.
   */
  memoryTracker: ReadonlySet<string>;
  log: (line: string) => void;
}

export interface Counters {
  loads: number;
  loadFailures: number;
  unloads: number;
  infers: number;
  inferFailures: number;
}

interface Fault {
  failLoad?: string[];
  hangLoad?: { wait: Promise<void> }[];
  failInfer?: { code: status; message: string }[];
}

const DEFAULT_FILE: Record<string, string> = {
  pytorch_libtorch: 'model.pt',
  pytorch: 'model.pt',
  tensorrt_plan: 'model.plan',
  tensorrt: 'model.plan',
  onnxruntime_onnx: 'model.onnx',
  onnxruntime: 'model.onnx',
  python: 'model.py',
  tensorflow_savedmodel: 'model.savedmodel',
  tensorflow_graphdef: 'model.graphdef',
  tensorflow: 'model.savedmodel',
  openvino: 'model.xml',
  ensemble: '',
};

const PLATFORM_OF_BACKEND: Record<string, string> = {
  pytorch: 'pytorch_libtorch',
  tensorrt: 'tensorrt_plan',
  onnxruntime: 'onnxruntime_onnx',
  tensorflow: 'tensorflow_savedmodel',
  python: 'python',
  openvino: 'openvino',
  ensemble: 'ensemble',
};

async function pathSize(p: string): Promise<number> {
  const st = await fs.stat(p);
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const e of await fs.readdir(p)) total += await pathSize(path.join(p, e));
  return total;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}

// The emulated load and unload times (`loadLatencyMs`, `emulator_load_ms`, `unloadLatencyMs`): Triton's
// loads take time, and this is that time passing.
// Never what keeps a process alive: an emulated load or unload still running when a test ends (a client that went
// away) must not hold the test runner open; the server itself keeps a running emulator alive.
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * What the emulator reports as it works, for tests to wait on rather than guess how long something takes.
 * Test controls, not Triton behaviour: Triton emits no such events (the nearest are core model_lifecycle.cc's
 * log lines "loading: <model>:<version>", "successfully loaded", "successfully unloaded"). Emitting one
 * changes nothing the emulator does, nor when. Models are named as Triton names them.
 */
export interface EmulatorEvents {
  /**
   * A RepositoryModelLoad began its work on the model: its versions show LOADING (before any
   * `hangNextLoad` holds it, before it waits for a load thread), or an update of a loaded model's
   * instances began. Not for a load that fails its poll stage, or that finds nothing changed.
   */
  'load-started': [model: string];
  /** A RepositoryModelLoad of the model succeeded (an unchanged model's too). */
  'load-finished': [model: string];
  /** A RepositoryModelLoad of the model failed, with the message Triton answers. */
  'load-failed': [model: string, message: string];
  /** A version's unload finished: UNAVAILABLE, "unloaded", its memory released. */
  'unload-finished': [model: string, version: number];
  /** An inference request on the model got an execution instance and runs (it is in flight). */
  'infer-started': [model: string];
}

class PollFailure extends Error {}

/**
 * Triton's model lifecycle in `--model-control-mode=explicit`: the poll stage (find the directory, read
 * and check config.pbtxt), the lifecycle stage (versions, backend files, GPU memory), per-version states,
 * asynchronous unloads, ensembles and their composing models. Messages and codes are Triton's.
 */
export class ModelLifecycle {
  readonly records = new Map<string, ModelRecord>();
  readonly counters = new Map<string, Counters>();
  private readonly faults = new Map<string, Fault>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly background = new Set<Promise<void>>();
  private allocSeq = 0;
  /** Bumped by a crash so work started before it stops touching state. */
  generation = 0;
  /** Test controls, not Triton behaviour (see EmulatorEvents). */
  readonly events = new EventEmitter<EmulatorEvents>();

  constructor(readonly options: LifecycleOptions) {}

  counter(name: string): Counters {
    let c = this.counters.get(name);
    if (!c) {
      c = { loads: 0, loadFailures: 0, unloads: 0, infers: 0, inferFailures: 0 };
      this.counters.set(name, c);
    }
    return c;
  }

  private fault(name: string): Fault {
    let f = this.faults.get(name);
    if (!f) {
      f = {};
      this.faults.set(name, f);
    }
    return f;
  }

  failNextLoad(name: string, reason: string): void {
    (this.fault(name).failLoad ??= []).push(reason);
  }

  hangNextLoad(name: string): () => void {
    let release!: () => void;
    const wait = new Promise<void>((r) => (release = r));
    (this.fault(name).hangLoad ??= []).push({ wait });
    return release;
  }

  failNextInfer(name: string, code: status, message: string): void {
    (this.fault(name).failInfer ??= []).push({ code, message });
  }

  takeInferFault(name: string): { code: status; message: string } | undefined {
    return this.faults.get(name)?.failInfer?.shift();
  }

  /** Resolves when background unloads have finished. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /** Everything is gone at once, as when the process dies. */
  crash(): void {
    this.generation++;
    for (const r of this.records.values()) for (const v of r.versions.values()) v.onDrained?.();
    this.records.clear();
    this.chains.clear();
    this.faults.clear();
    for (const gpu of this.options.gpus) gpu.releaseAll();
  }

  private serialise<T>(name: string, work: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(name) ?? Promise.resolve();
    const next = prev.then(work, work);
    const tail = next.catch(() => undefined);
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return next;
  }

  private record(name: string): ModelRecord {
    let r = this.records.get(name);
    if (!r) {
      r = {
        name,
        versions: new Map(),
        dependents: new Set(),
        loadedAlong: [],
        explicitlyLoaded: false,
        loadDurationSecs: 0,
        stats: {
          inferenceCount: 0,
          executionCount: 0,
          lastInference: 0,
          successCount: 0,
          successNs: 0,
          failCount: 0,
          failNs: 0,
        },
      };
      this.records.set(name, r);
    }
    return r;
  }

  isReady(r: ModelRecord | undefined): boolean {
    return r !== undefined && [...r.versions.values()].some((v) => v.state === 'READY');
  }

  // --- poll stage ---------------------------------------------------------------------------------

  /** Reads and checks the model's config. Failures are logged and become Triton's generic poll error. */
  private async poll(
    name: string,
    configOverride?: string,
    files?: Map<string, Buffer>,
  ): Promise<LoadedConfig> {
    const fail = (logLine: string): never => {
      this.options.log(logLine);
      throw new PollFailure(logLine);
    };
    let modelDir = path.join(this.options.repository, name);
    if (files && files.size > 0) {
      if (configOverride === undefined) fail(texts.pollOverrideWithoutConfig(name));
      // core writes override files to a temporary model directory.
      modelDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'triton-emu-override-')), name);
      for (const [rel, bytes] of files) {
        const dest = path.join(modelDir, rel);
        if (!dest.startsWith(modelDir + path.sep))
          fail(`Poll failed for model directory '${name}': invalid file path ${rel}`);
        await fs.mkdir(path.dirname(dest), { recursive: true });
        await fs.writeFile(dest, bytes);
      }
    } else if (!(await exists(modelDir))) {
      fail(texts.pollNotFound(name));
    }
    let doc: PbMessage;
    if (configOverride !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(configOverride);
        doc = modelConfigFromJson(parsed);
      } catch (err) {
        return fail(texts.pollBadOverride(name, (err as Error).message));
      }
    } else {
      const file = path.join(modelDir, 'config.pbtxt');
      let text: string;
      try {
        text = await fs.readFile(file, 'utf8');
      } catch {
        return fail(texts.pollMissingConfig(name, file));
      }
      try {
        doc = parsePbtxt(text, file);
        modelConfigToJson(doc);
      } catch (err) {
        this.options.log(
          `[libprotobuf ERROR] Error parsing text-format inference.ModelConfig: ${(err as Error).message}`,
        );
        return fail(texts.pollBadProto(name, file));
      }
    }
    const summary = readModelConfig(doc);
    if (summary.name !== undefined && summary.name !== '' && summary.name !== name) {
      fail(texts.pollNameMismatch(name, summary.name));
    }
    // A config without `name` gets the directory's name.
    doc = setModelName(doc, name);
    summary.name = name;
    const platform = summary.platform || PLATFORM_OF_BACKEND[summary.backend ?? ''] || '';
    if (platform === '')
      fail(
        `Poll failed for model directory '${name}': unable to determine the platform or backend of model '${name}'`,
      );
    const param = (k: string) => Number(summary.parameters[k] ?? '0') || 0;
    return {
      summary,
      json: modelConfigToJson(doc),
      platform,
      modelDir,
      loadMs: param(EMULATOR_PARAMETERS.loadMs),
      inferMs: param(EMULATOR_PARAMETERS.inferMs),
    };
  }

  // --- lifecycle stage ----------------------------------------------------------------------------

  private async selectVersions(cfg: LoadedConfig): Promise<number[]> {
    let entries: string[];
    try {
      // Triton stats each entry, so symlinked version directories count.
      entries = [];
      for (const e of await fs.readdir(cfg.modelDir)) {
        if ((await fs.stat(path.join(cfg.modelDir, e)).catch(() => undefined))?.isDirectory())
          entries.push(e);
      }
    } catch {
      entries = [];
    }
    const available: number[] = [];
    for (const e of entries) {
      if (!/^\d+$/.test(e)) {
        this.options.log(`ignore version directory '${e}' which fails to convert to integral number`);
      } else if (e.length > 1 && e.startsWith('0')) {
        this.options.log(
          `ignore version directory '${e}' which contains leading zeros in its directory name`,
        );
      } else {
        available.push(Number(e));
      }
    }
    available.sort((a, b) => a - b);
    const policy = cfg.summary.versionPolicy;
    if (policy.kind === 'all') return available;
    if (policy.kind === 'specific') {
      for (const v of policy.versions) {
        if (!available.includes(v)) {
          this.options.log(
            `version ${v} is specified for model '${cfg.summary.name}', but the version directory is not present`,
          );
        }
      }
      return policy.versions.filter((v) => available.includes(v)).sort((a, b) => a - b);
    }
    return available.slice(-Math.max(1, policy.numVersions));
  }

  // --- instances ----------------------------------------------------------------------------------

  /**
   * The instances Triton creates for a config, in creation order (core NormalizeInstanceGroup, then
   * ValidateInstanceGroup, then TritonModel::PrepareInstances): a config without `instance_group` gets one
   * KIND_AUTO group; KIND_AUTO becomes KIND_GPU when the server has GPUs (else KIND_CPU); a KIND_GPU group
   * without `gpus` lists every GPU (and that list is part of the normalised group); `count` instances go on
   * each listed GPU; KIND_CPU and KIND_MODEL instances hold no GPU memory. Each carries the signature an
   * update compares: the normalised group but `name` and `count`, and the device (backend_model_instance.h).
   * Returns Triton's failure reason for a GPU id the server does not have, or GPUs on a non-GPU kind.
   */
  private slots(name: string, cfg: LoadedConfig): Slot[] | { reason: string } {
    if (cfg.platform === 'ensemble') return [];
    type Group = Record<string, unknown> & { name?: string; kind?: string; count?: number; gpus?: number[] };
    const declared = (cfg.json.instance_group as Group[] | undefined) ?? [];
    const groups: Group[] = declared.length > 0 ? declared : [{ kind: 'KIND_AUTO' }];
    const all = this.options.gpus.map((_, i) => i);
    const cpuDefault = /^(onnxruntime|tensorflow)/.test(cfg.platform) ? 2 : 1;
    const out: Slot[] = [];
    for (const [i, g] of groups.entries()) {
      const group = g.name || `${name}_${i}`;
      const gpus = g.gpus ?? [];
      let kind = g.kind ?? 'KIND_AUTO';
      if (kind === 'KIND_AUTO') kind = all.length > 0 ? 'KIND_GPU' : 'KIND_CPU';
      if (kind === 'KIND_CPU' || kind === 'KIND_MODEL') {
        if (gpus.length > 0 && g.kind !== 'KIND_AUTO') {
          return {
            reason:
              kind === 'KIND_CPU' ? texts.kindCpuWithGpus(group, name) : texts.kindModelWithGpus(group, name),
          };
        }
        const count = g.count !== undefined && g.count > 0 ? g.count : kind === 'KIND_CPU' ? cpuDefault : 1;
        const signature = JSON.stringify({ ...ModelLifecycle.sansNameAndCount(g), kind, gpus: [] });
        for (let k = 0; k < count; k++) out.push({ device: undefined, signature: `${signature}@cpu` });
        continue;
      }
      const listed = gpus.length > 0 ? gpus : all;
      for (const gpu of listed)
        if (!all.includes(gpu)) return { reason: texts.invalidGpuId(group, name, gpu, all) };
      const signature = JSON.stringify({ ...ModelLifecycle.sansNameAndCount(g), kind, gpus: listed });
      const count = Math.max(1, g.count ?? 1);
      for (const gpu of listed)
        for (let k = 0; k < count; k++) out.push({ device: gpu, signature: `${signature}@${gpu}` });
    }
    return out;
  }

  /** A group's fields but `name` and `count`: what core's EquivalentInInstanceConfig compares. */
  private static sansNameAndCount(g: Record<string, unknown>): Record<string, unknown> {
    const rest = { ...g };
    delete rest.name;
    delete rest.count;
    return rest;
  }

  private loadsRunning = 0;
  private readonly loadQueue: (() => void)[] = [];

  /** A thread of the model load pool, for the time a load creates instances; returns its release. */
  private async loadThread(): Promise<() => void> {
    if (this.loadsRunning >= this.options.loadThreads) await new Promise<void>((r) => this.loadQueue.push(r));
    else this.loadsRunning++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.loadQueue.shift();
      if (next) next();
      else this.loadsRunning--;
    };
  }

  /** Whether the backend creates a model's instances at once (backend docs: only python and onnxruntime). */
  private static parallelInstanceLoading(platform: string): boolean {
    return platform === 'python' || platform.startsWith('onnxruntime');
  }

  private static isTensorrt(platform: string): boolean {
    return platform.startsWith('tensorrt');
  }

  private static isPytorch(platform: string): boolean {
    return platform === 'pytorch_libtorch' || platform === 'pytorch';
  }

  /**
   * Whether an update may keep an existing instance of this kind: never for a GPU instance of a
   * DEVICE_BLOCKING backend (core backend_model.cc PrepareInstances skips reuse when
   * `ShareBackendThread(DeviceBlocking(), kind)`; tensorrt_backend tensorrt.cc sets DEVICE_BLOCKING).
   */
  private static reusable(platform: string, slot: Slot): boolean {
    return !(ModelLifecycle.isTensorrt(platform) && slot.device !== undefined);
  }

  /**
   * Bytes `model` holds on each device right now, by device index (0 where it holds none): every
   * version's instances (grown as they have), TensorRT engines (also on GPUs an update removed), a
   * version still UNLOADING included. Memory already freed but in its release lag is the device's.
   */
  placement(name: string): number[] {
    const versions = [...(this.records.get(name)?.versions.values() ?? [])];
    return this.options.gpus.map((gpu) => {
      let sum = 0;
      for (const v of versions) {
        for (const i of v.instances) sum += gpu.allocatedBytes(i.key);
        for (const k of v.engines.values()) sum += gpu.allocatedBytes(k);
      }
      return sum;
    });
  }

  /**
   * ModelStatistics.memory_usage of a version: what its instances allocated while being created, per
   * device, for the backends that report it (tensorrt and onnxruntime: `TRITONBACKEND_*ReportMemoryUsage`
   * in tensorrt.cc and onnxruntime.cc) and only with Triton's memory tracker on (backend
   * device_memory_tracker.h `EnableFromBackendConfig`); growth after load is never counted. Core sums the
   * instances per type and device (backend_model.h). A TensorRT engine is counted with the instances on
   * its device, so one on a GPU an update removed is not (though still allocated).
   */
  memoryUsage(cfg: LoadedConfig, vr: VersionRecord): { type: string; id: number; byte_size: number }[] {
    const backend = ModelLifecycle.isTensorrt(cfg.platform)
      ? 'tensorrt'
      : cfg.platform.startsWith('onnxruntime')
        ? 'onnxruntime'
        : undefined;
    if (backend === undefined || !this.options.memoryTracker.has(backend)) return [];
    const perDevice = new Map<number, number>();
    for (const i of vr.instances) {
      if (i.device === undefined) continue;
      perDevice.set(i.device, (perDevice.get(i.device) ?? 0) + i.loadBytes);
    }
    for (const [d, key] of vr.engines)
      if (perDevice.has(d))
        perDevice.set(d, (perDevice.get(d) ?? 0) + this.options.gpus[d].allocatedBytes(key));
    return [...perDevice]
      .sort((a, b) => a[0] - b[0])
      .map(([id, bytes]) => ({ type: 'GPU', id, byte_size: bytes }));
  }

  /** GPU bytes one instance of this version takes at load: declared, else its file's bytes × a factor. */
  private async perInstanceBytes(cfg: LoadedConfig, file: string): Promise<number> {
    const declared = Number(cfg.summary.parameters[EMULATOR_PARAMETERS.gpuBytes] ?? NaN);
    if (Number.isFinite(declared)) return declared;
    const factor = Number(cfg.summary.parameters[EMULATOR_PARAMETERS.memoryFactor] ?? NaN);
    return Math.ceil(
      (await pathSize(file)) *
        (Number.isFinite(factor) && factor > 0 ? factor : this.options.footprintFactor),
    );
  }

  /**
   * A TensorRT instance's bytes split as its device's engine (shared by the version's instances there) and
   * its own execution context: a fifth of the footprint (inference; the engine dominates).
   */
  private static tensorrtSplit(perInstance: number): { engine: number; context: number } {
    const context = Math.ceil(perInstance / 5);
    return { engine: perInstance - context, context };
  }

  /**
   * Creates one instance: allocates its memory on its device (an engine first for TensorRT's first
   * instance there). Returns it, or the backend's failure reason.
   */
  private createInstance(
    name: string,
    cfg: LoadedConfig,
    vr: VersionRecord,
    slot: Slot,
    perInstance: number,
  ): Instance | { reason: string } {
    const key = `${name}/${vr.version}/${++this.allocSeq}`;
    const instance: Instance = {
      device: slot.device,
      signature: slot.signature,
      key,
      loadBytes: 0,
      grownBytes: 0,
      peakBatch: 0,
      busy: false,
    };
    const d = slot.device;
    if (d === undefined) return instance;
    const gpu = this.options.gpus[d];
    if (ModelLifecycle.isTensorrt(cfg.platform)) {
      const { engine, context } = ModelLifecycle.tensorrtSplit(perInstance);
      if (!vr.engines.has(d)) {
        const engineKey = `${key}/engine`;
        if (!gpu.tryAllocate(engineKey, engine)) return { reason: texts.tensorrtEngineOutOfMemory() };
        vr.engines.set(d, engineKey);
      }
      if (!gpu.tryAllocate(key, context)) return { reason: texts.tensorrtContextOutOfMemory() };
      instance.loadBytes = context;
      return instance;
    }
    const torch = ModelLifecycle.isPytorch(cfg.platform);
    if (!gpu.tryAllocate(key, perInstance, torch))
      return { reason: this.outOfMemory(name, cfg, perInstance, d) };
    instance.loadBytes = perInstance;
    return instance;
  }

  /**
   * Destroys instances (and, with `engines`, the version's TensorRT engines). A PyTorch instance's
   * destructor empties the caching allocator, process-wide (libtorch.cc ~ModelInstanceState).
   */
  private destroy(
    cfg: LoadedConfig,
    vr: VersionRecord,
    instances: readonly Instance[],
    engines: boolean,
  ): void {
    for (const i of instances) if (i.device !== undefined) this.options.gpus[i.device].release(i.key);
    if (engines) {
      for (const [d, key] of vr.engines) this.options.gpus[d].release(key);
      vr.engines.clear();
    }
    if (ModelLifecycle.isPytorch(cfg.platform) && instances.length > 0)
      for (const gpu of this.options.gpus) gpu.emptyTorchCache();
  }

  /**
   * Creates `slots` one after another (or all at once for backends that create instances in parallel),
   * each taking its memory as it is created and `emulator_load_ms` to load. On a failure the instances
   * created are destroyed and the reason returned (`fresh`: a first load, whose model state goes too). A
   * PyTorch instance that fails with none created before
   * it leaves what it allocated in PyTorch's cache: no destructor runs for it, so nothing empties the cache
   * (libtorch.cc: the constructor throws).
   */
  private async createInstances(
    name: string,
    cfg: LoadedConfig,
    vr: VersionRecord,
    slots: readonly Slot[],
    perInstance: number,
    gen: number,
    fresh: boolean,
  ): Promise<{ created: Instance[] } | { reason: string }> {
    const created: Instance[] = [];
    const parallel = ModelLifecycle.parallelInstanceLoading(cfg.platform);
    const failWith = (reason: string, slot: Slot) => {
      const torchFirst = ModelLifecycle.isPytorch(cfg.platform) && created.length === 0;
      // A failed load destroys the model state and its TensorRT engines with it; a failed update keeps
      // the model state, so an engine made for a new GPU stays (model_state.cc device_engines_).
      this.destroy(cfg, vr, created, fresh);
      if (torchFirst && slot.device !== undefined)
        this.options.gpus[slot.device].keepPartialInTorchCache(perInstance);
      return { reason };
    };
    for (const slot of slots) {
      const made = this.createInstance(name, cfg, vr, slot, perInstance);
      if ('reason' in made) return failWith(made.reason, slot);
      created.push(made);
      const warmup = this.warmUp(cfg, made);
      if (warmup) return failWith(warmup, slot);
      if (!parallel && cfg.loadMs > 0 && slot.device !== undefined) await sleep(cfg.loadMs);
      if (gen !== this.generation) return { created };
    }
    if (parallel && cfg.loadMs > 0 && created.length > 0) await sleep(cfg.loadMs);
    return { created };
  }

  /**
   * tensorrt_backend's auto-complete (on unless `--disable-auto-complete-config`): when the first instance
   * group is KIND_GPU, ModelState::Create deserialises the plan on that group's first GPU
   * (`instance_group[0].gpus[0]`, model_state.cc 119-136 and 308-331), complete config or not, and
   * replaces *any* failure of that, out of memory included, by a text naming only the plan file (397-415).
   */
  private autoCompleteFails(cfg: LoadedConfig, slots: readonly Slot[], perInstance: number): boolean {
    if (!this.options.autoCompleteConfig || !ModelLifecycle.isTensorrt(cfg.platform)) return false;
    const first = slots[0]?.device;
    if (first === undefined) return false;
    return !this.options.gpus[first].fits(ModelLifecycle.tensorrtSplit(perInstance).engine);
  }

  /**
   * Loads one version: checks its file, then creates its instances, taking memory as each is created.
   * Returns its instances, or the failure reason.
   */
  private async loadVersion(
    name: string,
    cfg: LoadedConfig,
    version: number,
    gen: number,
  ): Promise<{ vr: VersionRecord; reason?: undefined } | { reason: string; vr?: undefined }> {
    const vr: VersionRecord = {
      version,
      state: 'LOADING',
      reason: '',
      inflight: 0,
      instances: [],
      engines: new Map(),
    };
    const injected = this.faults.get(name)?.failLoad?.shift();
    if (injected !== undefined) return { reason: injected };
    if (cfg.platform === 'ensemble') return { vr };
    const fileName = cfg.summary.defaultModelFilename || DEFAULT_FILE[cfg.platform];
    if (fileName === undefined)
      return { reason: `Invalid argument: unexpected platform type '${cfg.platform}' for ${name}` };
    const file = path.join(cfg.modelDir, String(version), fileName);
    if (!(await exists(file))) {
      return {
        reason: ModelLifecycle.isTensorrt(cfg.platform)
          ? texts.tensorrtPlanNotLoaded(cfg.modelDir, version, fileName)
          : texts.pytorchMissingFile(cfg.modelDir, version, fileName, name),
      };
    }
    const perInstance = await this.perInstanceBytes(cfg, file);
    cfg.perInstanceBytes = perInstance;
    const slots = this.slots(name, cfg);
    if (!Array.isArray(slots)) return slots;
    if (this.autoCompleteFails(cfg, slots, perInstance)) {
      this.options.log(
        'E tensorrt: 1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory)',
      );
      return { reason: texts.tensorrtPlanNotLoaded(cfg.modelDir, version, fileName) };
    }
    const made = await this.createInstances(name, cfg, vr, slots, perInstance, gen, true);
    if ('reason' in made) return { reason: made.reason };
    vr.instances = made.created;
    return { vr };
  }

  /** The backend's error for an instance that does not fit on device `d`. */
  private outOfMemory(name: string, cfg: LoadedConfig, bytes: number, d: number): string {
    const gpu = this.options.gpus[d];
    const MiB = 1024 * 1024;
    const GiB = 1024 * MiB;
    return ModelLifecycle.isTensorrt(cfg.platform)
      ? texts.tensorrtEngineOutOfMemory()
      : texts.pytorchOutOfMemory(name, bytes / MiB, gpu.totalBytes / GiB, gpu.freeBytes() / MiB, d);
  }

  /**
   * The model directory's entries but config.pbtxt, each with the latest max(mtime, ctime) in its tree,
   * as `stat` sees it (links followed; core model_repository_manager.cc ModelTimestamp, local.h 119-135).
   */
  private static async fileTimes(dir: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const latest = async (p: string, depth: number): Promise<number> => {
      const st = await fs.stat(p).catch(() => undefined);
      if (!st) return 0;
      let t = Math.max(st.mtimeMs, st.ctimeMs);
      if (st.isDirectory() && depth < 8)
        for (const e of await fs.readdir(p).catch(() => [] as string[]))
          t = Math.max(t, await latest(path.join(p, e), depth + 1));
      return t;
    };
    for (const e of (await fs.readdir(dir).catch(() => [] as string[])).sort()) {
      if (e === 'config.pbtxt') continue;
      out.set(e, await latest(path.join(dir, e), 0));
    }
    return out;
  }

  /**
   * Whether a loaded model's files changed since it loaded (core model_repository_manager.cc 396-414,
   * IsModelVersionModified): the latest time over its version directories and other entries (config.pbtxt
   * left out) is strictly newer than it was. An older or equal time is no change.
   */
  private static filesModified(before: Map<string, number> | undefined, now: Map<string, number>): boolean {
    if (!before) return true;
    const latest = (m: Map<string, number>) => Math.max(0, ...m.values());
    return latest(now) > latest(before);
  }

  /**
   * Triton's model update (core model_lifecycle.cc, backend_model.cc UpdateInstanceGroup): a load of a
   * loaded model whose files are unchanged and whose config differs only in `instance_group` (or
   * `version_policy`) keeps serving with its old instances while new ones are created in the background;
   * an existing instance is kept only where one of the new config's instances has the same signature (and
   * never for TensorRT); the others go once the new set is in. On failure the new ones are destroyed and
   * the model stays as it was, READY ("version N is at READY state").
   */
  private async updateInstances(
    name: string,
    rec: ModelRecord,
    cfg: LoadedConfig,
    started: number,
    gen: number,
  ): Promise<void> {
    const prev = rec.config as LoadedConfig;
    const injected = this.faults.get(name)?.failLoad?.shift();
    const ready = [...rec.versions.values()].filter((v) => v.state === 'READY');
    const failUpdate = (reason: string): never => {
      this.counter(name).loadFailures++;
      const perVersion = ready.map((v) => texts.versionReady(v.version, reason)).join('');
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, perVersion));
    };
    if (injected !== undefined) failUpdate(injected);
    const slots = this.slots(name, cfg);
    if (!Array.isArray(slots)) return failUpdate(slots.reason);
    cfg.perInstanceBytes = prev.perInstanceBytes;
    const per = prev.perInstanceBytes ?? 0;
    this.events.emit('load-started', name);
    const thread = await this.loadThread();
    try {
      if (this.options.loadLatencyMs > 0) await sleep(this.options.loadLatencyMs);
      if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
      const plans: { v: VersionRecord; keep: Instance[]; create: Slot[]; order: (Instance | Slot)[] }[] = [];
      for (const v of ready) {
        const pool = [...v.instances];
        const keep: Instance[] = [];
        const create: Slot[] = [];
        const order: (Instance | Slot)[] = [];
        for (const slot of slots) {
          const at = ModelLifecycle.reusable(cfg.platform, slot)
            ? pool.findIndex((i) => i.signature === slot.signature)
            : -1;
          if (at >= 0) {
            const [i] = pool.splice(at, 1);
            keep.push(i);
            order.push(i);
          } else {
            create.push(slot);
            order.push(slot);
          }
        }
        plans.push({ v, keep, create, order });
      }
      const made = new Map<VersionRecord, Instance[]>();
      for (const plan of plans) {
        const result = await this.createInstances(name, cfg, plan.v, plan.create, per, gen, false);
        if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
        if ('reason' in result) {
          for (const [v, created] of made) this.destroy(cfg, v, created, false);
          failUpdate(result.reason);
          return;
        }
        made.set(plan.v, result.created);
      }
      // Commit: the new set serves; instances not kept go (TensorRT engines stay until the model goes).
      for (const plan of plans) {
        const fresh = [...(made.get(plan.v) ?? [])];
        const next = plan.order.map((x) => ('key' in x ? x : (fresh.shift() as Instance)));
        const dropped = plan.v.instances.filter((i) => !plan.keep.includes(i));
        plan.v.instances = next;
        this.destroy(cfg, plan.v, dropped, false);
        ModelLifecycle.pump(plan.v);
      }
    } finally {
      thread();
    }
    cfg.files = prev.files;
    rec.config = cfg;
    rec.loadDurationSecs = (Date.now() - started) / 1000;
  }

  /**
   * RepositoryModelLoad. Resolves when loaded; rejects with Triton's poll-stage (INTERNAL) or
   * lifecycle-stage (INVALID_ARGUMENT) error.
   */
  load(
    name: string,
    configOverride?: string,
    files?: Map<string, Buffer>,
    asDependency = false,
  ): Promise<void> {
    const done = this.serialise(name, () => this.doLoad(name, configOverride, files, asDependency));
    // Reported beside the answer, which is returned as it is.
    void done.then(
      () => this.events.emit('load-finished', name),
      (err: unknown) => this.events.emit('load-failed', name, (err as Error).message),
    );
    return done;
  }

  private async doLoad(
    name: string,
    configOverride: string | undefined,
    files: Map<string, Buffer> | undefined,
    asDependency: boolean,
  ): Promise<void> {
    const gen = this.generation;
    const started = Date.now();
    const counter = this.counter(name);
    counter.loads++;
    let cfg: LoadedConfig;
    try {
      cfg = await this.poll(name, configOverride, files);
    } catch (err) {
      counter.loadFailures++;
      if (err instanceof PollFailure) throw new EmulatorError(status.INTERNAL, texts.pollFailed(name));
      throw err;
    }
    const existing = this.records.get(name);
    // A composing model that is already loaded is reused as it is.
    if (asDependency && this.isReady(existing)) return;
    cfg.files = await ModelLifecycle.fileTimes(cfg.modelDir);
    if (
      existing?.config &&
      this.isReady(existing) &&
      !isEnsemble(cfg.summary) &&
      configOverride === undefined
    ) {
      const modified = ModelLifecycle.filesModified(existing.config.files, cfg.files);
      const rest = (c: LoadedConfig) =>
        JSON.stringify({ ...c.json, instance_group: undefined, version_policy: undefined });
      const same = (c: LoadedConfig) => JSON.stringify(c.json);
      const versions = await this.selectVersions(cfg);
      const readyVersions = [...existing.versions.values()]
        .filter((v) => v.state === 'READY')
        .map((v) => v.version)
        .sort((a, b) => a - b);
      const sameVersions = JSON.stringify(versions) === JSON.stringify(readyVersions);
      // Nothing changed: success at once (model_repository_manager.cc: `if (unmodified) return`).
      if (!modified && same(existing.config) === same(cfg) && sameVersions) return;
      if (!modified && rest(existing.config) === rest(cfg) && sameVersions)
        return this.updateInstances(name, existing, cfg, started, gen);
    }

    if (isEnsemble(cfg.summary)) {
      const deps = [...new Set(cfg.summary.ensembleSteps.map((s) => s.modelName))];
      const along: string[] = [];
      for (const dep of deps) {
        const wasReady = this.isReady(this.records.get(dep));
        try {
          await this.load(dep, undefined, undefined, true);
        } catch (err) {
          counter.loadFailures++;
          const reason = texts.ensembleDependency(name, dep, (err as Error).message.trimEnd());
          const rec = this.record(name);
          rec.versions.set(1, ModelLifecycle.unavailable(1, reason));
          throw new EmulatorError(
            status.INVALID_ARGUMENT,
            texts.loadFailed(name, texts.versionUnavailable(1, reason)),
          );
        }
        if (!wasReady) along.push(dep);
        this.record(dep).dependents.add(name);
      }
      this.record(name).loadedAlong = along;
    }

    const versions = await this.selectVersions(cfg);
    const rec = this.record(name);
    if (!asDependency) rec.explicitlyLoaded = true;
    if (versions.length === 0) {
      // core leaves a lifecycle entry with zero versions behind.
      if (!this.isReady(rec)) rec.versions.clear();
      counter.loadFailures++;
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.noVersions(name));
    }
    for (const v of versions) {
      const cur = rec.versions.get(v);
      // A background reload of a READY version keeps showing READY.
      if (!cur || cur.state !== 'READY')
        rec.versions.set(v, { ...ModelLifecycle.unavailable(v, ''), state: 'LOADING' });
    }
    this.events.emit('load-started', name);

    const hang = this.faults.get(name)?.hangLoad?.shift();
    if (hang) await hang.wait;
    const failures: [number, string][] = [];
    const loaded: VersionRecord[] = [];
    const thread = await this.loadThread();
    try {
      if (this.options.loadLatencyMs > 0) await sleep(this.options.loadLatencyMs);
      if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
      for (const v of versions) {
        const result = await this.loadVersion(name, cfg, v, gen);
        if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
        if (result.reason !== undefined) failures.push([v, result.reason]);
        else loaded.push(result.vr);
      }
    } finally {
      thread();
    }
    if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());

    if (failures.length > 0) {
      counter.loadFailures++;
      // Versions that did load are released again; READY versions of an earlier load keep serving.
      for (const vr of loaded) {
        this.destroy(cfg, vr, vr.instances, true);
        const cur = rec.versions.get(vr.version);
        if (cur && cur.state !== 'READY')
          rec.versions.set(vr.version, ModelLifecycle.unavailable(vr.version, 'unloaded'));
      }
      for (const [v, reason] of failures) {
        const cur = rec.versions.get(v);
        if (!cur || cur.state !== 'READY') rec.versions.set(v, ModelLifecycle.unavailable(v, reason));
      }
      const perVersion = failures.map(([v, reason]) => texts.versionUnavailable(v, reason)).join('');
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, perVersion));
    }

    const oldConfig = rec.config;
    for (const vr of loaded) {
      const old = rec.versions.get(vr.version);
      if (old && old.state === 'READY' && oldConfig) this.destroy(oldConfig, old, old.instances, true);
      vr.state = 'READY';
      rec.versions.set(vr.version, vr);
    }
    // Versions the policy no longer selects are unloaded.
    for (const [v, vr] of rec.versions) {
      if (!versions.includes(v) && vr.state === 'READY') this.startUnloadVersion(name, vr, cfg);
    }
    rec.config = cfg;
    rec.loadDurationSecs = (Date.now() - started) / 1000;
    // A loaded version is a new model object, with statistics of its own from zero (core keeps them in
    // the model, InferenceStatsAggregator); an update in place or a reload that changed nothing keeps them.
    rec.stats = ModelLifecycle.freshStats();
  }

  private static freshStats(): ModelStats {
    return {
      inferenceCount: 0,
      executionCount: 0,
      lastInference: 0,
      successCount: 0,
      successNs: 0,
      failCount: 0,
      failNs: 0,
    };
  }

  private static unavailable(version: number, reason: string): VersionRecord {
    return { version, state: 'UNAVAILABLE', reason, inflight: 0, instances: [], engines: new Map() };
  }

  // --- unload -------------------------------------------------------------------------------------

  /**
   * Starts an unload (core AsyncUnload): UNLOADING at once; the model goes once its requests finish, in
   * the background (ModelDeleter), and only then does the index say UNAVAILABLE, "unloaded".
   */
  private startUnloadVersion(name: string, vr: VersionRecord, cfg: LoadedConfig | undefined): void {
    vr.state = 'UNLOADING';
    vr.reason = '';
    const gen = this.generation;
    const done = (async () => {
      // Triton finishes in-flight requests before it releases the model.
      if (vr.inflight > 0) await new Promise<void>((r) => (vr.onDrained = r));
      if (this.options.unloadLatencyMs > 0) await sleep(this.options.unloadLatencyMs);
      if (gen !== this.generation || vr.state !== 'UNLOADING') return;
      if (cfg) this.destroy(cfg, vr, vr.instances, true);
      vr.instances = [];
      vr.state = 'UNAVAILABLE';
      vr.reason = 'unloaded';
      this.events.emit('unload-finished', name, vr.version);
    })();
    this.background.add(done);
    void done.finally(() => this.background.delete(done));
  }

  /** RepositoryModelUnload: starts the unload and returns (Triton does not wait for it). */
  unload(name: string, unloadDependents: boolean): Promise<void> {
    return this.serialise(name, async () => {
      const rec = this.records.get(name);
      if (!rec) return;
      const ready = [...rec.versions.values()].filter((v) => v.state === 'READY' || v.state === 'LOADING');
      if (ready.length === 0) return;
      this.counter(name).unloads++;
      for (const vr of ready) this.startUnloadVersion(name, vr, rec.config);
      rec.explicitlyLoaded = false;
      if (!unloadDependents) return;
      // Ensembles that use this model cannot serve without it.
      for (const ens of rec.dependents) if (this.isReady(this.records.get(ens))) void this.unload(ens, true);
      // Composing models this ensemble brought in, unless something else still needs them.
      for (const dep of rec.loadedAlong) {
        const d = this.records.get(dep);
        if (!d || d.explicitlyLoaded) continue;
        d.dependents.delete(name);
        const stillUsed = [...d.dependents].some((e) => e !== name && this.isReady(this.records.get(e)));
        if (!stillUsed) void this.unload(dep, false);
      }
    });
  }

  // --- lookups for inference, metadata and index ---------------------------------------------------

  /** Resolves a model and version string the way core's GetModel does, or throws Triton's error. */
  lookup(name: string, version: string): { rec: ModelRecord; vr: VersionRecord; cfg: LoadedConfig } {
    if (version !== '') {
      if (!/^-?\d+$/.test(version))
        throw new EmulatorError(status.INVALID_ARGUMENT, texts.badVersionString(version));
      if (Number(version) < 0)
        throw new EmulatorError(status.INVALID_ARGUMENT, texts.negativeVersion(version));
    }
    const rec = this.records.get(name);
    if (!rec) throw new EmulatorError(status.NOT_FOUND, texts.unknownModel(name));
    if (version === '' || Number(version) === 0) {
      const ready = [...rec.versions.values()]
        .filter((v) => v.state === 'READY')
        .sort((a, b) => b.version - a.version);
      if (ready.length === 0 || !rec.config)
        throw new EmulatorError(status.NOT_FOUND, texts.noAvailableVersions(name));
      return { rec, vr: ready[0], cfg: rec.config };
    }
    const vr = rec.versions.get(Number(version));
    if (!vr) throw new EmulatorError(status.NOT_FOUND, texts.unknownVersion(name, version));
    if (vr.state !== 'READY' || !rec.config)
      throw new EmulatorError(status.UNAVAILABLE, texts.versionNotReady(name, version));
    return { rec, vr, cfg: rec.config };
  }

  /** Marks a request in flight on a version (unloads wait for it). */
  enter(vr: VersionRecord): void {
    vr.inflight++;
  }

  /**
   * Waits for a free execution instance of the version, as Triton's scheduler queues requests for a busy
   * model (an update changes the set; added instances take queued requests at once); returns it with the
   * function that frees it. An ensemble has no instances of its own: `instance` is undefined.
   */
  async execute(vr: VersionRecord, cfg: LoadedConfig): Promise<{ instance?: Instance; done: () => void }> {
    if (cfg.platform === 'ensemble') return { done: () => undefined };
    let instance = vr.instances.find((i) => !i.busy);
    if (instance) instance.busy = true;
    else instance = await new Promise<Instance>((r) => (vr.queued ??= []).push(r));
    const mine = instance;
    let freed = false;
    return {
      instance: mine,
      done: () => {
        if (freed) return;
        freed = true;
        mine.busy = false;
        ModelLifecycle.pump(vr);
      },
    };
  }

  /** Starts queued requests, oldest first, while the version has free instances. */
  private static pump(vr: VersionRecord): void {
    for (const i of vr.instances) {
      if ((vr.queued?.length ?? 0) === 0) return;
      if (i.busy) continue;
      i.busy = true;
      vr.queued?.shift()?.(i);
    }
  }

  /**
   * An instance runs a batch of `batch`: it grows to what that batch needs the first time it runs one that
   * large (PyTorch's caching allocator keeps activations and cuDNN workspaces; libtorch.cc empties the cache
   * only at unload unless ENABLE_CACHE_CLEANING). Throws the backend's out-of-memory failure when the
   * growth does not fit.
   */
  grow(cfg: LoadedConfig, instance: Instance | undefined, batch: number): void {
    if (!instance || instance.device === undefined || batch <= instance.peakBatch) return;
    const declared = Number(cfg.summary.parameters[EMULATOR_PARAMETERS.growthBytes] ?? NaN);
    const full = Number.isFinite(declared)
      ? declared
      : ModelLifecycle.isPytorch(cfg.platform)
        ? Math.ceil((cfg.perInstanceBytes ?? 0) / 4)
        : 0;
    const share = cfg.summary.maxBatchSize > 0 ? Math.min(1, batch / cfg.summary.maxBatchSize) : 1;
    const target = Math.ceil(full * share);
    const more = target - instance.grownBytes;
    if (more > 0) {
      const gpu = this.options.gpus[instance.device];
      if (!gpu.tryAllocate(instance.key, more, ModelLifecycle.isPytorch(cfg.platform))) {
        const MiB = 1024 * 1024;
        throw new EmulatorError(
          status.INTERNAL,
          ModelLifecycle.isPytorch(cfg.platform)
            ? texts.pytorchExecuteOutOfMemory(more / MiB, instance.device, gpu.totalBytes, gpu.freeBytes())
            : texts.onnxruntimeExecuteOutOfMemory(more),
        );
      }
      instance.grownBytes = target;
    }
    instance.peakBatch = batch;
  }

  /**
   * Runs the config's `model_warmup` samples on a new instance, as core does before the instance serves
   * (backend_model_instance.cc `WarmUp`): each sample's batch grows the instance like a request would, and
   * a failing sample fails the load with `failed to run warmup sample '<name>': <error>; `.
   */
  private warmUp(cfg: LoadedConfig, instance: Instance): string | undefined {
    const samples = cfg.json.model_warmup;
    if (!Array.isArray(samples)) return undefined;
    for (const sample of samples) {
      if (typeof sample !== 'object' || sample === null || Array.isArray(sample)) continue;
      const batch = Math.max(1, Number(sample.batch_size ?? 0) || 0);
      try {
        this.grow(cfg, instance, batch);
      } catch (e) {
        return `failed to run warmup sample '${String(sample.name ?? '')}': ${(e as Error).message}; `;
      }
    }
    return undefined;
  }

  leave(vr: VersionRecord): void {
    vr.inflight--;
    if (vr.inflight === 0 && vr.onDrained) {
      const d = vr.onDrained;
      vr.onDrained = undefined;
      d();
    }
  }

  /** Strict readiness: false while any model is loading, unloading or failed. */
  serverReady(): boolean {
    for (const r of this.records.values()) {
      if (r.versions.size === 0) return false;
      for (const v of r.versions.values()) if (v.state !== 'READY' && v.reason !== 'unloaded') return false;
    }
    return true;
  }

  async index(
    readyOnly: boolean,
  ): Promise<{ name: string; version: string; state: string; reason: string }[]> {
    let dirs: string[];
    try {
      dirs = (await fs.readdir(this.options.repository, { withFileTypes: true }))
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      dirs = [];
    }
    dirs.sort();
    const rows: { name: string; version: string; state: string; reason: string }[] = [];
    for (const name of dirs) {
      const rec = this.records.get(name);
      if (!rec) {
        if (!readyOnly) rows.push({ name, version: '', state: '', reason: '' });
        continue;
      }
      for (const v of [...rec.versions.values()].sort((a, b) => a.version - b.version)) {
        if (readyOnly && v.state !== 'READY') continue;
        rows.push({ name, version: String(v.version), state: v.state, reason: v.reason });
      }
    }
    return rows;
  }

  /** Names with at least one READY version. */
  loadedModels(): string[] {
    return [...this.records.values()]
      .filter((r) => this.isReady(r))
      .map((r) => r.name)
      .sort();
  }
}

export type { CodeWord };
