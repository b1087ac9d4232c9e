export { readAccessLogs, type RequestLog } from './access-log-reader';
export { formatByteSize, parseByteSize } from './byte-size';
export { planCapacity, quantile, type CapacityPlan, type PlanOptions, type PlanRow } from './capacity-plan';
export { renderChart, sparkline } from './chart';
export { PLAN_USAGE, UsageError, formatPlan, runPlanCommand } from './plan-command';
export { replay, type ReplayModel, type ReplayOptions, type ReplayResult, type ReplayTrace } from './replay';
