import type { CallOptions, LoadOptions, UnloadOptions } from './client';
import type {
  ModelConfigJson,
  ModelIndexEntry,
  ModelInferRequest,
  ModelInferResponse,
  ModelMetadata,
  ModelStatistics,
} from './types';

/**
 * The agent's seam onto Triton: control plane plus inference. `TritonClient` implements it over gRPC;
 * tests may substitute their own. Every method rejects with `TritonError` on a Triton failure.
 */
export interface TritonControl {
  /** ServerLive: the process is up and answering. */
  serverLive(opts?: CallOptions): Promise<boolean>;
  /** ServerReady: with strict readiness, false while any model is loading or failed. */
  serverReady(opts?: CallOptions): Promise<boolean>;
  /** ModelReady: false (not an error) for unknown, loading or unloaded models. */
  modelReady(name: string, version?: string, opts?: CallOptions): Promise<boolean>;
  /** ModelMetadata of a ready model. */
  modelMetadata(name: string, version?: string, opts?: CallOptions): Promise<ModelMetadata>;
  /** ModelConfig of a ready model, in protobuf JSON form. */
  modelConfig(name: string, version?: string, opts?: CallOptions): Promise<ModelConfigJson>;
  /** ModelStatistics; empty name = every ready model. */
  modelStatistics(name?: string, version?: string, opts?: CallOptions): Promise<ModelStatistics[]>;
  /** RepositoryIndex: every model directory and each tracked version's state. */
  repositoryIndex(opts?: CallOptions & { ready?: boolean }): Promise<ModelIndexEntry[]>;
  /** RepositoryModelLoad: resolves once loaded (a loaded model is reloaded). */
  load(name: string, opts?: LoadOptions): Promise<void>;
  /** RepositoryModelUnload: resolves once the unload has started. */
  unload(name: string, opts?: UnloadOptions): Promise<void>;
  /** ModelInfer. */
  infer(request: ModelInferRequest, opts?: CallOptions): Promise<ModelInferResponse>;
  /** Releases the connection. */
  close(): void;
}

export { TritonClient, DEFAULT_DEADLINES, DEFAULT_RETRY, toSafeNumber } from './client';
export type {
  CallOptions,
  LoadOptions,
  UnloadOptions,
  TritonClientOptions,
  TritonDeadlines,
  RetryPolicy,
  InferStream,
} from './client';
export {
  TritonError,
  isOutOfMemoryText,
  isUnhealthyStub,
  maskedPlanPath,
  triedToAllocate,
  classifyTritonFailure,
  OUT_OF_MEMORY_TEXTS,
  type TritonErrorKind,
} from './triton-error';
export {
  TritonMetricsReader,
  parseTritonMetrics,
  type TritonMetrics,
  type GpuMetrics,
  type ModelCounters,
} from './metrics';
export type * from './types';
export {
  readGpuMap,
  cudaOrdinals,
  parseNvidiaSmi,
  NVIDIA_SMI_ARGS,
  type GpuMap,
  type GpuIdentity,
  type GpuMapOptions,
} from './gpu-identity';
export {
  ManagedTriton,
  LineSplitter,
  tritonServerArgs,
  type ManagedTritonOptions,
  type ManagedTritonState,
  type ManagedTritonLogger,
  type TritonServerArgsInput,
} from './managed-triton';
export { allocateInferTail, serializeInferRequest, rawInputFieldLength } from './infer-wire';
