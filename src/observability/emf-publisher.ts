import { systemClock, type Clock } from '../time';
import type { AgentMetrics } from './metrics';
import type { LineSink } from './logger';

/**
 * CloudWatch Embedded Metric Format: once per interval, one JSON line on stdout that CloudWatch Logs turns
 * into metrics with SageMaker's names (Invocations, ModelLatency, ...), so a SageMaker user gets them in
 * CloudWatch with no exporter. Off by default (AGENT_CLOUDWATCH_EMF).
 *
 * Counters are written as their increase over the interval, times as the interval's average in
 * milliseconds (only when something was observed), gauges as their value at the end of the interval
 * (ratios as percent, as CloudWatch shows SageMaker's).
 */

interface Counter {
  /** Prometheus name. */
  from: string;
  /** CloudWatch name. */
  name: string;
}

const COUNTERS: Counter[] = [
  { from: 'sagemaker_invocations_total', name: 'Invocations' },
  { from: 'sagemaker_invocation_4xx_errors_total', name: 'Invocation4XXErrors' },
  { from: 'sagemaker_invocation_5xx_errors_total', name: 'Invocation5XXErrors' },
  { from: 'sagemaker_model_cache_hit_total', name: 'ModelCacheHit' },
  { from: 'sagemaker_model_evictions_total', name: 'ModelEvictions' },
];

const TIMES: Counter[] = [
  { from: 'sagemaker_model_latency_seconds', name: 'ModelLatency' },
  { from: 'sagemaker_overhead_latency_seconds', name: 'OverheadLatency' },
  { from: 'sagemaker_model_loading_wait_time_seconds', name: 'ModelLoadingWaitTime' },
  { from: 'sagemaker_model_loading_time_seconds', name: 'ModelLoadingTime' },
  { from: 'sagemaker_model_unloading_time_seconds', name: 'ModelUnloadingTime' },
  { from: 'sagemaker_model_downloading_time_seconds', name: 'ModelDownloadingTime' },
];

const GAUGES: (Counter & { percent?: boolean })[] = [
  { from: 'sagemaker_loaded_model_count', name: 'LoadedModelCount' },
  { from: 'sagemaker_gpu_memory_utilization_ratio', name: 'GPUMemoryUtilization', percent: true },
  { from: 'sagemaker_gpu_utilization_ratio', name: 'GPUUtilization', percent: true },
  { from: 'sagemaker_disk_utilization_ratio', name: 'DiskUtilization', percent: true },
];

export interface EmfOptions {
  namespace: string;
  intervalMs: number;
  /** Where lines go (stdout by default). */
  sink?: LineSink;
  now?: () => number;
  /** Time for the publishing interval and the lines' timestamps (default: the system's). */
  clock?: Clock;
}

export class EmfPublisher {
  private last = new Map<string, number>();
  private stopTimer: (() => void) | undefined;
  private readonly sink: LineSink;
  private readonly now: () => number;

  constructor(
    private readonly metrics: AgentMetrics,
    private readonly options: EmfOptions,
  ) {
    this.sink = options.sink ?? process.stdout;
    const clock = options.clock ?? systemClock;
    this.now = options.now ?? (() => clock.now());
  }

  /** Publishes every interval until stop() (the timer never keeps the process alive). */
  start(): void {
    if (this.stopTimer) return;
    // The first interval's counters count from here.
    void this.publish({ write: false });
    this.stopTimer = (this.options.clock ?? systemClock).every(
      this.options.intervalMs,
      () => void this.publish(),
    );
  }

  /** Stops, writing the last partial interval. */
  async stop(): Promise<void> {
    if (!this.stopTimer) return;
    this.stopTimer();
    this.stopTimer = undefined;
    await this.publish();
  }

  /** Reads the metrics and writes one EMF line (with `write: false`, only remembers the totals). */
  async publish({ write = true }: { write?: boolean } = {}): Promise<void> {
    const totals = await this.metrics.totals();
    const values: Record<string, number> = {};
    const units: { Name: string; Unit: string }[] = [];
    const delta = (key: string) => (totals.get(key) ?? 0) - (this.last.get(key) ?? 0);
    for (const c of COUNTERS) {
      values[c.name] = Math.max(0, delta(c.from));
      units.push({ Name: c.name, Unit: 'Count' });
    }
    for (const t of TIMES) {
      const count = delta(`${t.from}_count`);
      if (count <= 0) continue;
      values[t.name] = (1000 * delta(`${t.from}_sum`)) / count;
      units.push({ Name: t.name, Unit: 'Milliseconds' });
    }
    for (const g of GAUGES) {
      const v = totals.get(g.from);
      if (v === undefined) continue;
      values[g.name] = g.percent ? v * 100 : v;
      units.push({ Name: g.name, Unit: g.percent ? 'Percent' : 'Count' });
    }
    this.last = totals;
    if (!write) return;
    const line = {
      _aws: {
        Timestamp: this.now(),
        CloudWatchMetrics: [{ Namespace: this.options.namespace, Dimensions: [[]], Metrics: units }],
      },
      ...values,
    };
    this.sink.write(`${JSON.stringify(line)}\n`);
  }
}
