export {
  CapacityModel,
  TritonGpuProbe,
  type CapacityOptions,
  type GpuMemoryProbe,
  type GpuSample,
} from './capacity';
export * from './eviction';
export {
  DECLARED_GPU_BYTES_PARAMETER,
  ModelRegistry,
  systemClock,
  type Clock,
  type Lease,
  type ModelRecord,
  type ModelState,
  type ModelStatus,
  type LoadPhase,
  lazyUrl,
  type RegistryOptions,
  type RegistryParts,
} from './model-registry';
export { checkModelName, MAX_MODEL_NAME_LENGTH } from './model-name';
export { TritonNameBook } from './triton-names';
