/**
 * Triton's own error texts, character for character, for the cases the emulator reproduces.
 * Each names where Triton produces it (core/server/backend source file).
 */

/** Code words Triton puts in front of a stored failure reason (common `Error::AsString`). */
export type CodeWord =
  | 'Internal'
  | 'Not found'
  | 'Invalid argument'
  | 'Unavailable'
  | 'Unsupported'
  | 'Already exists'
  | 'Unknown';

export const texts = {
  // core model_repository_manager.cc LoadUnloadModel: any poll-stage failure.
  pollFailed: (model: string) => `failed to load '${model}', failed to poll from model repository`,
  // server log lines for poll failures (the emulator records them in its log).
  pollNotFound: (model: string) =>
    `failed to poll model '${model}': model not found in any model repository.`,
  pollNameMismatch: (dir: string, configName: string) =>
    `Poll failed for model directory '${dir}': unexpected directory name '${dir}' for model '${configName}', directory name must equal model name`,
  pollBadProto: (dir: string, file: string) =>
    `Poll failed for model directory '${dir}': failed to read text proto from ${file}`,
  pollMissingConfig: (dir: string, file: string) =>
    `Poll failed for model directory '${dir}': failed to open text file for read ${file}: No such file or directory`,
  pollBadOverride: (dir: string, detail: string) =>
    `Poll failed for model directory '${dir}': Invalid config override: ${detail}`,
  pollOverrideWithoutConfig: (dir: string) =>
    `Poll failed for model directory '${dir}': Load parameter 'config' must be specified for model file override`,
  // core ValidateModelName (r26.03+).
  emptyName: () => 'Model name cannot be empty. Please enter a valid name to deploy.',
  traversalName: (model: string) =>
    `invalid model name '${model}', model name must not contain path traversal characters`,
  // core model_lifecycle.cc AsyncLoad.
  noVersions: (model: string) =>
    `load failed for model '${model}': at least one version must be available under the version policy of model '${model}'\n`,
  // core ModelRepositoryManager::LoadUnloadModels wraps per-version failures.
  versionUnavailable: (version: number, reason: string) =>
    `version ${version} is at UNAVAILABLE state: ${reason};`,
  // core model_lifecycle.cc: a failed in-place update leaves the version serving, READY.
  versionReady: (version: number, reason: string) => `version ${version} is at READY state: ${reason};`,
  loadFailed: (model: string, perVersion: string) => `load failed for model '${model}': ${perVersion}\n`,
  // pytorch_backend model_state.cc LoadModel (quoted name is the model).
  pytorchMissingFile: (modelDir: string, version: number, file: string, model: string) =>
    `Unavailable: unable to find '${modelDir}/${version}/${file}' for model instance '${model}'`,
  // tensorrt_backend model_state.cc AutoCompleteConfig (auto-complete on, Triton's default): *any* failure
  // to deserialise the plan, a missing file or out of memory alike, becomes this text; the reason is only
  // in the server's log.
  tensorrtPlanNotLoaded: (modelDir: string, version: number, file: string) =>
    `Internal: unable to load plan file to auto complete config: ${modelDir}/${version}/${file}`,
  // pytorch_backend libtorch.cc LoadModel: `failed to load model '<m>': <ex.what()>` around
  // torch::jit::load, with c10's out-of-memory text (PyTorch 2.1 and later); `gpu` is the CUDA ordinal.
  pytorchOutOfMemory: (model: string, tryMiB: number, totalGiB: number, freeMiB: number, gpu = 0) =>
    `Internal: failed to load model '${model}': ${torchOutOfMemory(tryMiB, gpu, totalGiB, freeMiB)}`,
  // pytorch_backend libtorch.cc Execute: `PyTorch execute failure: <ex.what()>`, TRITONSERVER_ERROR_INTERNAL.
  pytorchExecuteOutOfMemory: (tryMiB: number, gpu: number, totalBytes: number, freeBytes: number) =>
    `PyTorch execute failure: ${torchOutOfMemory(tryMiB, gpu, totalBytes / 1024 ** 3, freeBytes / 1024 ** 2)}`,
  // onnxruntime_backend onnxruntime_utils.h: `onnx runtime error <code>: <msg>` (BFCArena growth at Run).
  onnxruntimeExecuteOutOfMemory: (bytes: number) =>
    `onnx runtime error 6: Non-zero status code returned while running Conv node. Name:'Conv_0' Status Message: ` +
    `/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size ${bytes}`,
  // tensorrt_backend loader.cc LoadPlan, with TensorRT's allocator error line.
  tensorrtEngineOutOfMemory: () =>
    'Internal: unable to create TensorRT engine: 1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory)',
  // tensorrt_backend instance_state.cc: the execution context of an instance.
  tensorrtContextOutOfMemory: () =>
    'Internal: unable to create TensorRT context: 1: [defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory)',
  // python_backend stub_launcher.cc: the instance's stub process died (host OOM kill, CUDA crash).
  pythonStubUnhealthy: (instance: string) => `Internal: Stub process '${instance}' is not healthy.`,
  // core model_config_utils.cc ValidateInstanceGroup (run by TritonModel::Create when a version loads,
  // after NormalizeInstanceGroup has named unnamed groups `<model>_<index>`). `supported` lists the
  // GPUs that meet the minimum compute capability (`--min-supported-compute-capability`, 6.0 by
  // default, printed by std::to_string).
  invalidGpuId: (group: string, model: string, gpu: number, supported: readonly number[]) =>
    `Invalid argument: instance group ${group} of model ${model} specifies invalid or unsupported gpu id ${gpu}. ` +
    `GPUs with at least the minimum required CUDA compute compatibility of 6.000000 are: ${supported.join(', ')}`,
  kindCpuWithGpus: (group: string, model: string) =>
    `Invalid argument: instance group ${group} of model ${model} has kind KIND_CPU but specifies one or more GPUs`,
  kindModelWithGpus: (group: string, model: string) =>
    `Invalid argument: instance group ${group} of model ${model} has kind KIND_MODEL but specifies one or more GPUs`,
  // Ensemble whose composing model cannot be loaded (core ensemble dependency check; wording approximated).
  ensembleDependency: (ensemble: string, dep: string, error: string) =>
    `Invalid argument: ensemble '${ensemble}' depends on '${dep}' which has no loaded version. Model '${dep}' loading failed with error: ${error}`,
  // core ModelLifeCycle::GetModel, prefixed by ModelRepositoryManager::GetModel.
  unknownModel: (model: string) => `Request for unknown model: '${model}' is not found`,
  noAvailableVersions: (model: string) => `Request for unknown model: '${model}' has no available versions`,
  unknownVersion: (model: string, v: string) =>
    `Request for unknown model: '${model}' version ${v} is not found`,
  versionNotReady: (model: string, v: string) =>
    `Request for unknown model: '${model}' version ${v} is not at ready state`,
  badVersionString: (s: string) =>
    `failed to get model version from specified version string '${s}' (details: stol), version should be an integral value > 0`,
  negativeVersion: (s: string) =>
    `invalid model version specified '${s}' , version should be an integral value > 0`,
  // core TRITONSERVER_ServerModelStatistics.
  statsNotAvailable: (model: string) => `requested model '${model}' is not available`,
  // server grpc_server.cc RegisterRepositoryModelLoad / Unload / Index.
  repositoryNameUnsupported: () => `'repository_name' specification is not supported`,
  unrecognizedLoadParameter: (key: string) => `unrecognized load parameter '${key}'.`,
  configNotString: () => `invalid value type for load parameter 'config', expected string_param.`,
  fileNotBytes: (key: string) => `invalid value type for load parameter '${key}', expected bytes_param.`,
  unloadDependentsNotBool: () => `invalid value type for 'unload_dependents' parameter, expected bool_param.`,
  // core infer_request.cc / model.cc / server infer_handler.cc (section 7 of the reference).
  unexpectedInput: (name: string, model: string) =>
    `unexpected inference input '${name}' for model '${model}'`,
  unexpectedOutput: (name: string, model: string) =>
    `unexpected inference output '${name}' for model '${model}'`,
  inputCount: (n: number, m: number, model: string, got: string, missing: string) =>
    `expected ${n} inputs but got ${m} inputs for model '${model}'. Got input(s) ${got}, but missing required input(s) ${missing}. Please provide all required input(s).`,
  inputCountOptional: (r: number, n: number, m: number, model: string, got: string, missing: string) =>
    `expected number of inputs between ${r} and ${n} but got ${m} inputs for model '${model}'. Got input(s) ${got}, but missing required input(s) ${missing}. Please provide all required input(s).`,
  datatypeMismatch: (name: string, req: string, model: string, cfg: string) =>
    `inference input '${name}' data-type is '${req}', but model '${model}' expects '${cfg}'`,
  contentsTypeMismatch: (name: string, model: string, contentsType: string, declared: string) =>
    `unexpected explicit tensor data for input tensor '${name}' for model '${model}' of type '${contentsType}', expected datatype '${declared}'`,
  shapeMismatch: (name: string, model: string, dims: string, shape: string, batching: boolean) =>
    `unexpected shape for input '${name}' for model '${model}'. Expected ${dims}, got ${shape}. ${batching ? BATCH_NOTE : ''}`,
  unspecifiedDims: (name: string, model: string, shape: string) =>
    `All input dimensions should be specified for input '${name}' for model '${model}', got ${shape}`,
  noBatchShape: (name: string, model: string) =>
    `input '${name}' has no shape but model requires batch dimension for '${model}'`,
  batchMismatch: (name: string, model: string) =>
    `input '${name}' batch size does not match other inputs for '${model}'`,
  batchTooLarge: (max: number, model: string) =>
    `inference request batch-size must be <= ${max} for '${model}'`,
  byteSizeMismatch: (name: string, model: string, expected: number, actual: number) =>
    `input byte size mismatch for input '${name}' for model '${model}'. Expected ${expected}, got ${actual}`,
  missingData: (name: string, model: string) =>
    `unable to find data for input tensor '${name}' for model '${model}' in request.`,
  contentsWithRaw: (name: string, model: string) =>
    `contents field must not be specified when using raw_input_contents for '${name}' for model '${model}'`,
  duplicateOutput: (name: string) => `output '${name}' already exists in request`,
  duplicateInput: (name: string) => `input '${name}' already exists in request`,
  serverNotReady: () => 'Server not ready',
} as const;

/** c10's CUDA out-of-memory text (CUDACachingAllocator.cpp, PyTorch 2.1 and later). */
function torchOutOfMemory(tryMiB: number, gpu: number, totalGiB: number, freeMiB: number): string {
  return (
    `CUDA out of memory. Tried to allocate ${tryMiB.toFixed(2)} MiB. GPU ${gpu} has a total capacity of ` +
    `${totalGiB.toFixed(2)} GiB of which ${freeMiB.toFixed(2)} MiB is free. Of the allocated memory ` +
    `${(totalGiB * 0.9).toFixed(2)} GiB is allocated by PyTorch, and 0 bytes is reserved by PyTorch but unallocated. ` +
    `If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.`
  );
}

const BATCH_NOTE =
  'NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to each input shape. If you want to specify the full shape including the batch dim in your input dims config, try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size.';

/** `[request id: X] ` as core's LogRequest() prints it. */
export function requestIdPrefix(id: string): string {
  return `[request id: ${id === '' ? '<id_unknown>' : id}] `;
}

/** `[d0,d1,...]` as common DimsListToString prints it. */
export function dimsList(dims: readonly number[]): string {
  return `[${dims.join(',')}]`;
}

/** `['A','B']` as the input-count message prints name lists. */
export function nameList(names: readonly string[]): string {
  return `[${names.map((n) => `'${n}'`).join(',')}]`;
}
