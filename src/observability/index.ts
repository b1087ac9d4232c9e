export {
  createLogger,
  droppedLogLines,
  isLogLevel,
  silentLogger,
  type DroppedLines,
  type LineSink,
  type LogFields,
  type LogLevel,
  type Logger,
} from './logger';
export {
  AgentMetrics,
  OTHER_MODELS,
  type AgentMetricsOptions,
  type GpuState,
  type InvocationRecord,
  type LifecycleMetrics,
  type StateSnapshot,
  type StateSource,
} from './metrics';
export * from './access-log';
export { EmfPublisher, type EmfOptions } from './emf-publisher';
