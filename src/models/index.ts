export { systemClock, waitForChange, type Clock } from '../time';
export { TritonGpuProbe, type DeviceMemory, type GpuMemoryProbe, type GpuSample } from './gpu-probe';
export {
  GpuLedger,
  type ChargeState,
  type DeviceAccount,
  type Devices,
  type LedgerOptions,
} from './gpu-ledger';
export { placementOf, type ArtifactGpus, type Placement, type PlacementMode } from './placement';
export { Footprints, type FootprintOptions } from './footprints';
export { Admission, type AdmissionSeam, type AdmissionOptions } from './admission';
export { Catalogue } from './catalogue';
export { FailureMemory, type RememberedFailure } from './failure-memory';
export {
  DECLARED_GPU_BYTES_PARAMETER,
  Lifecycle,
  userText,
  type LifecycleEvents,
  type LifecycleOptions,
  type LifecycleParts,
} from './lifecycle';
export type { Lease, LoadPhase, ModelRecord, ModelState, ModelStatus, ModelView } from './model-record';
export * from './eviction';
export {
  ModelRegistry,
  lazyUrl,
  type CapacitySettings,
  type RegistryOptions,
  type RegistryParts,
} from './model-registry';
export { checkModelName, MAX_MODEL_NAME_LENGTH } from './model-name';
export { TritonNameBook } from './triton-names';
export { checkModelUrl } from './model-url';
export {
  SCALE_PERIOD_MS,
  decideScaling,
  type ScaleDecision,
  type ScaleMove,
  type ScalerGpus,
  type ScalerModel,
} from './scaler';
