/**
 * TypeScript shapes of the Triton gRPC messages the agent uses, with the protos' own snake_case field names
 * (the client loads the protos with `keepCase`). 64-bit integers are plain numbers here: the client
 * converts them on the way in and refuses values beyond 2^53 rather than silently rounding them.
 */

export interface InferParameter {
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  double_param?: number;
  uint64_param?: number;
}

export interface InferTensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: number[];
  uint_contents?: number[];
  uint64_contents?: number[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, InferParameter>;
  contents?: InferTensorContents;
}

export interface InferRequestedOutputTensor {
  name: string;
  parameters?: Record<string, InferParameter>;
}

export interface ModelInferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs?: InferRequestedOutputTensor[];
  raw_input_contents?: Buffer[];
}

export interface InferOutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters: Record<string, InferParameter>;
  contents?: InferTensorContents;
}

export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  outputs: InferOutputTensor[];
  raw_output_contents: Buffer[];
}

export interface ModelStreamInferResponse {
  error_message: string;
  infer_response?: ModelInferResponse;
}

export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** RepositoryIndex row: `state` is one of UNKNOWN, READY, UNAVAILABLE, LOADING, UNLOADING (or ''). */
export interface ModelIndexEntry {
  name: string;
  version: string;
  state: string;
  reason: string;
}

export interface StatisticDuration {
  count: number;
  ns: number;
}

export interface MemoryUsage {
  /** "CPU", "CPU_PINNED" or "GPU". */
  type: string;
  id: number;
  byte_size: number;
}

export interface ModelStatistics {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats?: Record<string, StatisticDuration>;
  memory_usage: MemoryUsage[];
}

export type ModelRepositoryParameter =
  { bool_param: boolean } | { int64_param: number } | { string_param: string } | { bytes_param: Buffer };

/** A ModelConfig in protobuf's JSON form (snake_case keys, enum names, int64 as strings). */
export type ModelConfigJson = Record<string, unknown>;
