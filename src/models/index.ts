export {
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
} from './model-registry';
