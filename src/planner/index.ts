export {
  LOG_LIMITS,
  SKIP_REASONS,
  describeSkipped,
  plausibleTimeWindow,
  readAccessLogs,
  type ReadOptions,
  type RequestLog,
  type SkipReason,
} from './access-log-reader';
export { MAX_BYTE_SIZE, formatByteSize, parseByteSize, type ByteSizeOptions } from './byte-size';
export {
  HIT_DEFINITION,
  planCapacity,
  quantile,
  type AgentComparison,
  type CapacityPlan,
  type PlanOptions,
  type PlanRow,
} from './capacity-plan';
export { renderChart, sparkline, type ChartOptions } from './chart';
export { LineSplitter, MAX_LINE_BYTES } from './line-splitter';
export {
  MAX_GPU_SIZES,
  PLAN_USAGE,
  UsageError,
  formatPlan,
  noRoomMessage,
  runPlanCommand,
  type FormatOptions,
} from './plan-command';
export { POLICY_DESCRIPTIONS, describePolicy } from './policy-labels';
export { describeLogs, expandLogs, rotatedSet } from './rotated-logs';
export { replay, type ReplayModel, type ReplayOptions, type ReplayResult, type ReplayTrace } from './replay';
