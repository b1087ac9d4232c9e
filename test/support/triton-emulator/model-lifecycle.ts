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
} from '../../../src/triton/pbtxt';
import {
  modelConfigFromJson,
  modelConfigToJson,
  type JsonObject,
} from '../../../src/triton/model-config-schema';
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

export interface VersionRecord {
  version: number;
  state: VersionStateName;
  reason: string;
  allocKey?: string;
  inflight: number;
  onDrained?: () => void;
  /** Requests executing now: at most one per instance, as Triton's default scheduler runs them. */
  executing?: number;
  /** Requests queued for a free instance, oldest first. */
  queued?: (() => void)[];
  /** How many instances it has now. */
  instances?: () => number;
}

/** Names of the `parameters` keys the emulator reads from a config.pbtxt. */
export const EMULATOR_PARAMETERS = {
  /** GPU bytes one instance of the model takes (else derived from the model file's size). */
  gpuBytes: 'emulator_gpu_bytes',
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

export interface LoadedConfig {
  summary: ModelConfigSummary;
  json: JsonObject;
  platform: string;
  modelDir: string;
  /**
   * GPU bytes per loaded version, per device index (all the version's instances on that device); a
   * device the version has no instance on is absent.
   */
  deviceBytes: Map<number, Map<number, number>>;
  loadMs: number;
  inferMs: number;
  /** Execution instances (GPU and CPU): how many requests the model runs at once. */
  instances: number;
  /** GPU bytes one instance takes, once a version has loaded. */
  perInstanceBytes?: number;
  /** The model directory's files but config.pbtxt, as `lstat` sees them: what tells an update from a reload. */
  files?: string;
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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
      deviceBytes: new Map(),
      loadMs: param(EMULATOR_PARAMETERS.loadMs),
      inferMs: param(EMULATOR_PARAMETERS.inferMs),
      instances: 1,
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

  /**
   * How many instances of the model each GPU gets, as Triton places them (model configuration docs,
   * "Instance Groups"; core NormalizeInstanceGroup then ValidateInstanceGroup): a config without
   * `instance_group` gets one KIND_AUTO group; KIND_AUTO becomes KIND_GPU when the server has GPUs; a
   * KIND_GPU group without `gpus` lists every available GPU; `count` (at least 1) instances go on each
   * listed GPU, so a GPU listed twice gets two sets; groups add up. KIND_CPU instances take no GPU memory,
   * nor do KIND_MODEL ones (the backend places those itself; the emulator charges them nothing). Returns
   * Triton's failure reason for a GPU id the server does not have, or GPUs on a non-GPU kind.
   */
  private instancesPerDevice(name: string, cfg: LoadedConfig): Map<number, number> | { reason: string } {
    type Group = { name?: string; kind?: string; count?: number; gpus?: number[] };
    const declared = (cfg.json.instance_group as Group[] | undefined) ?? [];
    const groups: Group[] = declared.length > 0 ? declared : [{ kind: 'KIND_AUTO' }];
    const all = this.options.gpus.map((_, i) => i);
    const perDevice = new Map<number, number>();
    for (const [i, g] of groups.entries()) {
      const group = g.name || `${name}_${i}`;
      const gpus = g.gpus ?? [];
      const kind = g.kind ?? 'KIND_AUTO';
      if (kind === 'KIND_CPU' || kind === 'KIND_MODEL') {
        if (gpus.length > 0) {
          return {
            reason:
              kind === 'KIND_CPU' ? texts.kindCpuWithGpus(group, name) : texts.kindModelWithGpus(group, name),
          };
        }
        continue;
      }
      const count = Math.max(1, g.count ?? 1);
      for (const gpu of gpus.length > 0 ? gpus : all) {
        if (!all.includes(gpu)) return { reason: texts.invalidGpuId(group, name, gpu, all) };
        perDevice.set(gpu, (perDevice.get(gpu) ?? 0) + count);
      }
    }
    return perDevice;
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

  /**
   * Every execution instance of the model: its GPU instances, plus `count` per CPU group (core's
   * SetDefaultInstanceCount: 2 for onnxruntime and tensorflow, else 1), a model with no GPU group on a
   * server without GPUs getting one CPU group. At least 1.
   */
  private instanceCount(name: string, cfg: LoadedConfig): number {
    // An ensemble has no instances of its own: its steps run on the composing models'.
    if (cfg.platform === 'ensemble') return Number.POSITIVE_INFINITY;
    type Group = { kind?: string; count?: number };
    const declared = (cfg.json.instance_group as Group[] | undefined) ?? [];
    const perDevice = this.instancesPerDevice(name, cfg);
    let total = perDevice instanceof Map ? [...perDevice.values()].reduce((a, b) => a + b, 0) : 0;
    const cpuDefault = /^(onnxruntime|tensorflow)/.test(cfg.platform) ? 2 : 1;
    const noGpus = this.options.gpus.length === 0;
    const groups: Group[] = declared.length > 0 ? declared : [{ kind: 'KIND_AUTO' }];
    for (const g of groups) {
      const kind = g.kind ?? 'KIND_AUTO';
      if (kind === 'KIND_CPU' || (noGpus && kind !== 'KIND_MODEL'))
        total += g.count !== undefined && g.count > 0 ? g.count : cpuDefault;
      else if (kind === 'KIND_MODEL') total += Math.max(1, g.count ?? 1);
    }
    return Math.max(1, total);
  }

  /** Whether the backend creates a model's instances at once (backend docs: only python and onnxruntime). */
  private static parallelInstanceLoading(platform: string): boolean {
    return platform === 'python' || platform.startsWith('onnxruntime');
  }

  /**
   * Bytes `model` holds on each device right now, by device index (0 where it holds none): every
   * version's live allocation, including a version still UNLOADING. Memory already freed but not yet
   * returned to the driver (the release lag) is the device's, not the model's.
   */
  placement(name: string): number[] {
    const keys = [...(this.records.get(name)?.versions.values() ?? [])]
      .map((v) => v.allocKey)
      .filter((k): k is string => k !== undefined);
    return this.options.gpus.map((gpu) => keys.reduce((sum, k) => sum + gpu.allocatedBytes(k), 0));
  }

  private release(key: string | undefined): void {
    if (key) for (const gpu of this.options.gpus) gpu.release(key);
  }

  /** Checks one version's files and allocates its memory; returns the allocation or the failure reason. */
  private async loadVersion(
    name: string,
    cfg: LoadedConfig,
    version: number,
  ): Promise<{ allocKey?: string; reason?: string }> {
    const injected = this.faults.get(name)?.failLoad?.shift();
    if (injected !== undefined) return { reason: injected };
    if (cfg.platform === 'ensemble') {
      cfg.deviceBytes.set(version, new Map());
      return {};
    }
    const fileName = cfg.summary.defaultModelFilename || DEFAULT_FILE[cfg.platform];
    if (fileName === undefined)
      return { reason: `Invalid argument: unexpected platform type '${cfg.platform}' for ${name}` };
    const file = path.join(cfg.modelDir, String(version), fileName);
    if (!(await exists(file))) {
      return {
        reason:
          cfg.platform === 'tensorrt_plan'
            ? texts.tensorrtMissingPlan(cfg.modelDir, version, fileName)
            : texts.pytorchMissingFile(cfg.modelDir, version, fileName, name),
      };
    }
    const declared = Number(cfg.summary.parameters[EMULATOR_PARAMETERS.gpuBytes] ?? NaN);
    const perInstance = Number.isFinite(declared)
      ? declared
      : Math.ceil((await pathSize(file)) * this.options.footprintFactor);
    const instances = this.instancesPerDevice(name, cfg);
    if (!(instances instanceof Map)) return instances;
    const wanted = new Map([...instances].map(([d, n]) => [d, perInstance * n]));
    // All or nothing across devices: Triton creates the instances one by one and, when one fails (out
    // of memory on its GPU), destroys those already created, so a failed load leaves nothing behind.
    // The first device without room is the one named, as the failing instance's error names it.
    cfg.perInstanceBytes = perInstance;
    for (const [d, bytes] of [...wanted].sort((a, b) => a[0] - b[0])) {
      if (!this.options.gpus[d].fits(bytes)) return { reason: this.outOfMemory(name, cfg, bytes, d) };
    }
    const key = `${name}/${version}/${++this.allocSeq}`;
    for (const [d, bytes] of wanted) this.options.gpus[d].tryAllocate(key, bytes);
    cfg.deviceBytes.set(version, wanted);
    return { allocKey: key };
  }

  /** The backend's error for an instance that does not fit on device `d`. */
  private outOfMemory(name: string, cfg: LoadedConfig, bytes: number, d: number): string {
    const gpu = this.options.gpus[d];
    const MiB = 1024 * 1024;
    const GiB = 1024 * MiB;
    return cfg.platform === 'tensorrt_plan'
      ? texts.tensorrtOutOfMemory()
      : texts.pytorchOutOfMemory(
          name,
          bytes / MiB,
          gpu.totalBytes / GiB,
          gpu.usedBytes() / GiB,
          gpu.freeBytes() / MiB,
          d,
        );
  }

  /** What `lstat` sees of a model directory's files but its config.pbtxt, in a stable order. */
  private static async fileSignature(dir: string): Promise<string> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      const entries = await fs.readdir(path.join(dir, rel)).catch(() => [] as string[]);
      for (const e of entries.sort()) {
        const r = path.join(rel, e);
        if (r === 'config.pbtxt') continue;
        const st = await fs.lstat(path.join(dir, r)).catch(() => undefined);
        if (!st) continue;
        out.push(`${r}:${st.mtimeMs}:${st.size}:${st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'f'}`);
        if (st.isDirectory()) await walk(r);
      }
    };
    await walk('');
    return out.join('\n');
  }

  /**
   * Triton's model update (model management docs): a load of a loaded model whose files are unchanged
   * and whose config differs only in `instance_group` adds and removes instances in place. The old
   * instances keep serving; only added ones take load time and memory; a failure leaves the model as it was.
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
    if (injected !== undefined) {
      this.counter(name).loadFailures++;
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, injected));
    }
    const before = this.instancesPerDevice(name, prev);
    const after = this.instancesPerDevice(name, cfg);
    if (!(after instanceof Map)) {
      this.counter(name).loadFailures++;
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, after.reason));
    }
    const had = before instanceof Map ? before : new Map<number, number>();
    let added = 0;
    for (const [d, n] of after) added += Math.max(0, n - (had.get(d) ?? 0));
    cfg.instances = this.instanceCount(name, cfg);
    cfg.perInstanceBytes = prev.perInstanceBytes;
    const serial = ModelLifecycle.parallelInstanceLoading(cfg.platform) ? Math.min(1, added) : added;
    const latency = this.options.loadLatencyMs + cfg.loadMs * serial;
    const thread = await this.loadThread();
    try {
      if (latency > 0) await sleep(latency);
    } finally {
      thread();
    }
    if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
    const per = prev.perInstanceBytes ?? 0;
    const ready = [...rec.versions.values()].filter((v) => v.state === 'READY');
    const devices = new Set([...had.keys(), ...after.keys()]);
    // Room first, for every version, so a failure changes nothing.
    for (const d of [...devices].sort((a, b) => a - b)) {
      const grow = ((after.get(d) ?? 0) - (had.get(d) ?? 0)) * per * ready.length;
      if (grow > 0 && !this.options.gpus[d].fits(grow)) {
        this.counter(name).loadFailures++;
        const reason = this.outOfMemory(name, cfg, grow, d);
        const perVersion = ready.map((v) => texts.versionUnavailable(v.version, reason)).join('');
        throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, perVersion));
      }
    }
    for (const v of ready) {
      const wanted = new Map([...after].map(([d, n]) => [d, per * n]));
      for (const d of devices) {
        const gpu = this.options.gpus[d];
        const have = v.allocKey ? gpu.allocatedBytes(v.allocKey) : 0;
        const want = wanted.get(d) ?? 0;
        if (!v.allocKey || want === have) continue;
        if (want > have) gpu.tryAllocate(v.allocKey, want - have);
        else {
          gpu.release(v.allocKey);
          if (want > 0) gpu.tryAllocate(v.allocKey, want);
        }
      }
      cfg.deviceBytes.set(v.version, wanted);
    }
    for (const [v, bytes] of prev.deviceBytes) if (!cfg.deviceBytes.has(v)) cfg.deviceBytes.set(v, bytes);
    rec.config = cfg;
    rec.loadDurationSecs = (Date.now() - started) / 1000;
    // Added instances take queued requests at once.
    for (const v of ready) ModelLifecycle.pump(v);
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
    return this.serialise(name, () => this.doLoad(name, configOverride, files, asDependency));
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
    cfg.files = await ModelLifecycle.fileSignature(cfg.modelDir);
    if (existing?.config && this.isReady(existing) && !isEnsemble(cfg.summary)) {
      const sansInstances = (c: LoadedConfig) => JSON.stringify({ ...c.json, instance_group: undefined });
      if (existing.config.files === cfg.files && sansInstances(existing.config) === sansInstances(cfg))
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
          rec.versions.set(1, { version: 1, state: 'UNAVAILABLE', reason, inflight: 0 });
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
        rec.versions.set(v, { version: v, state: 'LOADING', reason: '', inflight: 0 });
    }

    const hang = this.faults.get(name)?.hangLoad?.shift();
    if (hang) await hang.wait;
    cfg.instances = this.instanceCount(name, cfg);
    // Instances are created one after another unless the backend loads them in parallel.
    const serial = ModelLifecycle.parallelInstanceLoading(cfg.platform) ? 1 : cfg.instances;
    const latency = this.options.loadLatencyMs + cfg.loadMs * serial;
    const failures: [number, string][] = [];
    const allocated: [number, string | undefined][] = [];
    const thread = await this.loadThread();
    try {
      if (latency > 0) await sleep(latency);
      if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());
      for (const v of versions) {
        const result = await this.loadVersion(name, cfg, v);
        if (result.reason !== undefined) failures.push([v, result.reason]);
        else allocated.push([v, result.allocKey]);
      }
    } finally {
      thread();
    }
    if (gen !== this.generation) throw new EmulatorError(status.UNAVAILABLE, texts.serverNotReady());

    if (failures.length > 0) {
      counter.loadFailures++;
      // Versions that did load are released again; READY versions of an earlier load keep serving.
      for (const [v, key] of allocated) {
        this.release(key);
        const cur = rec.versions.get(v);
        if (cur && cur.state !== 'READY')
          rec.versions.set(v, { version: v, state: 'UNAVAILABLE', reason: 'unloaded', inflight: 0 });
      }
      for (const [v, reason] of failures) {
        const cur = rec.versions.get(v);
        if (!cur || cur.state !== 'READY')
          rec.versions.set(v, { version: v, state: 'UNAVAILABLE', reason, inflight: 0 });
      }
      const perVersion = failures.map(([v, reason]) => texts.versionUnavailable(v, reason)).join('');
      throw new EmulatorError(status.INVALID_ARGUMENT, texts.loadFailed(name, perVersion));
    }

    for (const [v, key] of allocated) {
      const old = rec.versions.get(v);
      this.release(old?.allocKey);
      const ready: VersionRecord = { version: v, state: 'READY', reason: '', inflight: 0 };
      if (key) ready.allocKey = key;
      rec.versions.set(v, ready);
    }
    // Versions the policy no longer selects are unloaded.
    for (const [v, vr] of rec.versions) {
      if (!versions.includes(v) && vr.state === 'READY') this.startUnloadVersion(vr);
    }
    rec.config = cfg;
    rec.loadDurationSecs = (Date.now() - started) / 1000;
  }

  // --- unload -------------------------------------------------------------------------------------

  private startUnloadVersion(vr: VersionRecord): void {
    vr.state = 'UNLOADING';
    vr.reason = '';
    const gen = this.generation;
    const done = (async () => {
      // Triton finishes in-flight requests before it releases the model.
      if (vr.inflight > 0) await new Promise<void>((r) => (vr.onDrained = r));
      if (this.options.unloadLatencyMs > 0) await sleep(this.options.unloadLatencyMs);
      if (gen !== this.generation || vr.state !== 'UNLOADING') return;
      this.release(vr.allocKey);
      vr.allocKey = undefined;
      vr.state = 'UNAVAILABLE';
      vr.reason = 'unloaded';
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
      for (const vr of ready) this.startUnloadVersion(vr);
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
   * Waits for a free execution instance of the version (`instances()` of them, read each time: an update
   * changes it), as Triton's scheduler queues requests for a busy model; returns the function that frees it.
   */
  async execute(vr: VersionRecord, instances: () => number): Promise<() => void> {
    vr.executing ??= 0;
    vr.instances = instances;
    if (vr.executing >= instances()) await new Promise<void>((r) => (vr.queued ??= []).push(r));
    else vr.executing++;
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      vr.executing = (vr.executing ?? 1) - 1;
      ModelLifecycle.pump(vr);
    };
  }

  /** Starts queued requests, oldest first, while the version has free instances. */
  private static pump(vr: VersionRecord): void {
    const limit = vr.instances?.() ?? 1;
    while ((vr.queued?.length ?? 0) > 0 && (vr.executing ?? 0) < limit) {
      vr.executing = (vr.executing ?? 0) + 1;
      vr.queued?.shift()?.();
    }
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
