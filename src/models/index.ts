export {
  ModelRegistry,
  systemClock,
  type Clock,
  type Lease,
  type ModelRecord,
  type ModelState,
  type RegistryOptions,
} from './model-registry';
