import type { LocalArtifact, StagedModel } from '../artifacts';
import type { AgentError } from '../errors';
import type { ModelIO } from '../inference';
import type { PbMessage } from '../model-config';
import { ChangeSignal } from './change-signal';
import type { Devices } from './gpu-ledger';
import type { Placement } from './placement';

/**
 * `loading` (fetch, stage, make room, Triton load), `ready` (resident on the GPU), `unloading` (leaving
 * the GPU), `evicted` (registered and on disk, not on the GPU: the next invocation loads it again).
 */
/** `registered`: known, never loaded yet (or loaded by an earlier run and not adopted); `evicted`: loaded once, off the GPU now. */
export type ModelState = 'registered' | 'loading' | 'ready' | 'unloading' | 'evicted';

/** What a loading model is doing, for the status route and logs. */
export type LoadPhase = 'fetching' | 'staging' | 'waiting-for-capacity' | 'loading';

/** One MME model name and everything the agent knows about it. Only models/ changes it. */
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
  /** Requests in flight; a pinned model is never evicted, and an unload waits (bounded) for them. */
  pins: number;
  /** Notified whenever `pins` drops to zero. */
  readonly drained: ChangeSignal;
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
  /** Settles (never rejects) when the current load or unload finishes: the single flight. */
  transition: Promise<void> | undefined;
  /** Why the last load failed, for everyone who waited on it. */
  lastFailure: AgentError | undefined;
  /** The artifact version the last load saw ('' before it was looked up). */
  versionSeen: string;
  /** False once the record has been forgotten (DELETE, or a first load that failed). */
  registered: boolean;
  /** Models evicted to make room for the current (or last) load. */
  victims: string[];
  /** Whether a request's access-log line already named `victims` (only the first cold waiter does). */
  victimsReported: boolean;
  /** Its config's platform (or backend), e.g. `pytorch_libtorch`, `tensorrt_plan`. */
  platform: string;
  /** Its artifact's top config as the artifact has it (before the agent placed it). */
  artifactConfig: PbMessage | undefined;
  /** Its top config as staged in the repository now (what Triton was last given). */
  stagedConfig: PbMessage | undefined;
  /** Where its instances may go (from its config and the placement setting). */
  placement: Placement;
  /** The devices it was loaded on ('all': every GPU). */
  devices: Devices;
  /** The largest batch it has run since it loaded (memory grows with it). */
  peakBatch: number;
  /** When a request as large as any its artifact has run finished since it loaded: its memory has grown. */
  warmSince: number | undefined;
  /** Time its requests spent in Triton since the scaler last looked, ms (how busy its instances are). */
  busyMs: number;
  /** Scaler periods in a row its traffic would fit on one GPU fewer. */
  coolPeriods: number;
  /** `invocations` when the scaler last looked (its request rate since). */
  invocationsSeen: number;
  /** Requests per scaler period, smoothed over periods (a quiet period does not make it look unused). */
  requestsPerPeriod: number;
  /** Moves between GPUs that failed in a row, and when the scaler may try again (clock time). */
  scaleFailures: number;
  scaleRetryAt: number;
}

/** What http/ may read of a record. */
export type ModelView = Readonly<
  Pick<
    ModelRecord,
    'name' | 'url' | 'tritonName' | 'targetModel' | 'state' | 'io' | 'loads' | 'evictions' | 'invocations'
  >
>;

/** A pinned model, released exactly once when the request is done. */
export interface Lease {
  readonly record: ModelView;
  /** How long `acquire` waited for the model to load (0 for a model that was resident). */
  readonly waitedMs: number;
  /** True when the model had to be loaded (or reloaded) for this request. */
  readonly cold: boolean;
  release(): void;
}

export interface ModelStatus {
  modelName: string;
  modelUrl: string;
  state: LoadPhase | 'registered' | 'resident' | 'unloading' | 'evicted' | 'failed';
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

/** A new record, not yet loaded. */
export function newRecord(fields: {
  name: string;
  url: string;
  tritonName: string;
  targetModel: string | undefined;
  lazy: boolean;
  now: number;
}): ModelRecord {
  return {
    ...fields,
    state: 'registered',
    phase: undefined,
    progress: undefined,
    pins: 0,
    drained: new ChangeSignal(),
    artifact: undefined,
    staged: undefined,
    io: undefined,
    footprintKey: undefined,
    declaredBytes: undefined,
    artifactBytes: 0,
    loadMs: undefined,
    fetchMs: 0,
    loadedAt: undefined,
    lastUsedAt: fields.now,
    invocations: 0,
    loads: 0,
    evictions: 0,
    transition: undefined,
    lastFailure: undefined,
    versionSeen: '',
    registered: true,
    victims: [],
    victimsReported: false,
    platform: '',
    artifactConfig: undefined,
    stagedConfig: undefined,
    placement: { kind: 'all' },
    devices: 'all',
    peakBatch: 0,
    warmSince: undefined,
    busyMs: 0,
    coolPeriods: 0,
    invocationsSeen: 0,
    requestsPerPeriod: 0,
    scaleFailures: 0,
    scaleRetryAt: 0,
  };
}

/** TensorRT: every instance is rebuilt by an update, and its engines stay until the model unloads. */
export function isTensorrt(platform: string): boolean {
  return platform === 'tensorrt_plan' || platform === 'tensorrt';
}
