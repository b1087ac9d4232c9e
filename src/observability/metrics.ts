import * as prom from 'prom-client';
import { droppedLogLines } from './logger';

/**
 * The agent's Prometheus metrics, named after SageMaker's multi-model endpoint CloudWatch metrics (snake
 * case, units in the name, histograms for times): `ModelLatency` is `sagemaker_model_latency_seconds`,
 * `Invocation4XXErrors` is `sagemaker_invocation_4xx_errors_total`, and so on (the README lists them all).
 *
 * Request-level metrics are recorded by `http/` through `invocation()`. The model lifecycle reports through
 * the `LifecycleMetrics` sink, and the gauges are read from one `StateSource` callback when `/metrics` is
 * scraped, so nothing is sampled between scrapes.
 *
 * Series count stays bounded whatever the number of models: only invocation counters and the model-latency
 * histogram carry a `model` label, and only for the first `maxModelLabels` model names seen in this process;
 * every other model is counted under `model="__other__"`.
 */

/** Events of the model lifecycle, called by the registry where they happen. */
export interface LifecycleMetrics {
  /** A model finished loading into Triton; `ms` is the Triton load (staging included). */
  loaded(model: string, ms: number): void;
  /** A model finished unloading (Triton reported it gone); `ms` from the unload request. */
  unloaded(model: string, ms: number): void;
  /** An artifact finished downloading and unpacking into the disk cache. */
  downloaded(model: string, ms: number, bytes: number): void;
  /** A resident model was evicted from the GPU to make room (or idled out). */
  evicted(model: string): void;
}

/** One GPU as the state source reports it. */
export interface GpuState {
  uuid: string;
  usedBytes: number;
  totalBytes: number;
  /** 0.0 to 1.0. */
  utilization: number;
}

/** One GPU as the capacity model sees it. */
export interface GpuCapacity {
  uuid: string;
  /** Bytes models may use there: total less the GPU's own base and the headroom. */
  totalBytes: number;
  /** Bytes counted as used there: resident footprints, reservations, memory not yet explained. */
  usedBytes: number;
}

/** The lifecycle's state, read when `/metrics` is scraped. */
export interface StateSnapshot {
  /** Models resident in Triton. */
  loadedModels: number;
  /** GPU bytes the capacity model counts as used, every GPU summed. */
  capacityUsedBytes?: number;
  /** GPU bytes the capacity model may use in all, every GPU summed. */
  capacityTotalBytes?: number;
  /** The same, per GPU. */
  capacityByGpu?: GpuCapacity[];
  /** Whether Triton's GPU figures can be read (undefined: capacity is off). */
  gpuMetricsAvailable?: boolean;
  /** The eviction policy the adaptive policy currently follows (or the configured policy). */
  leader?: string;
  /** Bytes held by the artifact disk cache. */
  diskCacheBytes?: number;
  /** The filesystem holding the disk cache. */
  disk?: { usedBytes: number; totalBytes: number };
  gpus?: GpuState[];
}

export type StateSource = () => StateSnapshot | Promise<StateSnapshot>;

/** One finished invocation, as `http/` saw it. */
export interface InvocationRecord {
  /** MME model name; undefined when the request failed before a model was named. */
  model: string | undefined;
  status: number;
  /** False when the model was resident (SageMaker's ModelCacheHit). */
  cold: boolean;
  /** Time spent waiting for the model to download or load. */
  waitedMs: number;
  /** Time Triton took (ModelLatency); undefined when Triton was not called. */
  tritonMs: number | undefined;
  /** Everything else: total minus waiting minus Triton (OverheadLatency). */
  overheadMs: number;
}

export interface AgentMetricsOptions {
  /** Distinct model names given their own `model` label; the rest share `__other__`. */
  maxModelLabels?: number;
}

export const OTHER_MODELS = '__other__';

/** Buckets in seconds: sub-millisecond overheads up to SageMaker's 60 s invocation limit. */
const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
/** Buckets in seconds for downloads, loads and unloads (large engines take minutes). */
const LIFECYCLE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

interface ModelSeries {
  invocations: prom.Counter.Internal;
  errors4xx: prom.Counter.Internal;
  errors5xx: prom.Counter.Internal;
  cacheHits: prom.Counter.Internal;
  latency: prom.Histogram.Internal<'model'>;
}

export class AgentMetrics implements LifecycleMetrics {
  readonly registry = new prom.Registry();
  private readonly maxModelLabels: number;
  private readonly series = new Map<string, ModelSeries>();
  private source: StateSource | undefined;
  private named = 0;

  private readonly invocations: prom.Counter<'model'>;
  private readonly errors4xx: prom.Counter<'model'>;
  private readonly errors5xx: prom.Counter<'model'>;
  private readonly cacheHits: prom.Counter<'model'>;
  private readonly modelLatency: prom.Histogram<'model'>;
  private readonly overhead: prom.Histogram;
  private readonly loadingWait: prom.Histogram;
  private readonly loading: prom.Histogram;
  private readonly unloading: prom.Histogram;
  private readonly downloading: prom.Histogram;
  private readonly downloadedBytes: prom.Counter;
  private readonly evictions: prom.Counter;
  private readonly loadedCount: prom.Gauge;
  private readonly capacityUsed: prom.Gauge;
  private readonly capacityTotal: prom.Gauge;
  private readonly gpuCapacityUsed: prom.Gauge;
  private readonly gpuCapacityTotal: prom.Gauge;
  private readonly gpuMetricsAvailable: prom.Gauge;
  private readonly leader: prom.Gauge<'policy'>;
  private readonly diskCache: prom.Gauge;
  private readonly diskUtilization: prom.Gauge;
  private readonly gpuMemory: prom.Gauge<'gpu_uuid'>;
  private readonly gpuUtilization: prom.Gauge<'gpu_uuid'>;

  constructor(options: AgentMetricsOptions = {}) {
    this.maxModelLabels = options.maxModelLabels ?? 20;
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new prom.Counter<L>({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new prom.Histogram({ name, help, buckets, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new prom.Gauge<L>({ name, help, labelNames, registers });

    this.invocations = counter(
      'sagemaker_invocations_total',
      'Invocations (Invocations): requests to the invoke routes',
      ['model'],
    );
    this.errors4xx = counter(
      'sagemaker_invocation_4xx_errors_total',
      'Invocations answered with a 4xx status (Invocation4XXErrors)',
      ['model'],
    );
    this.errors5xx = counter(
      'sagemaker_invocation_5xx_errors_total',
      'Invocations answered with a 5xx status (Invocation5XXErrors)',
      ['model'],
    );
    this.cacheHits = counter(
      'sagemaker_model_cache_hit_total',
      'Invocations whose model was already loaded (ModelCacheHit)',
      ['model'],
    );
    this.modelLatency = new prom.Histogram<'model'>({
      name: 'sagemaker_model_latency_seconds',
      help: 'Time Triton took to answer an invocation (ModelLatency)',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.overhead = histogram(
      'sagemaker_overhead_latency_seconds',
      "The agent's own time on an invocation: total minus model latency minus loading wait (OverheadLatency)",
      LATENCY_BUCKETS,
    );
    this.loadingWait = histogram(
      'sagemaker_model_loading_wait_time_seconds',
      'Time an invocation waited for its model to download or load (ModelLoadingWaitTime)',
      LIFECYCLE_BUCKETS,
    );
    this.loading = histogram(
      'sagemaker_model_loading_time_seconds',
      'Time to load a model into Triton (ModelLoadingTime)',
      LIFECYCLE_BUCKETS,
    );
    this.unloading = histogram(
      'sagemaker_model_unloading_time_seconds',
      'Time to unload a model from Triton (ModelUnloadingTime)',
      LIFECYCLE_BUCKETS,
    );
    this.downloading = histogram(
      'sagemaker_model_downloading_time_seconds',
      'Time to download and unpack an artifact (ModelDownloadingTime)',
      LIFECYCLE_BUCKETS,
    );
    this.downloadedBytes = counter(
      'sagemaker_model_downloaded_bytes_total',
      'Bytes of artifacts downloaded',
      [],
    );
    this.evictions = counter(
      'sagemaker_model_evictions_total',
      'Models evicted from the GPU to make room',
      [],
    );
    this.loadedCount = gauge(
      'sagemaker_loaded_model_count',
      'Models loaded in Triton (LoadedModelCount)',
      [],
    );
    this.capacityUsed = gauge(
      'sagemaker_gpu_capacity_used_bytes',
      'GPU bytes the capacity model counts as used, every GPU summed',
      [],
    );
    this.capacityTotal = gauge(
      'sagemaker_gpu_capacity_total_bytes',
      "GPU bytes models may use, every GPU summed (total less each GPU's own use and the headroom)",
      [],
    );
    this.gpuCapacityUsed = gauge(
      'sagemaker_gpu_device_capacity_used_bytes',
      'GPU bytes the capacity model counts as used, per GPU',
      ['gpu_uuid'],
    );
    this.gpuCapacityTotal = gauge(
      'sagemaker_gpu_device_capacity_total_bytes',
      "GPU bytes models may use, per GPU (total less the GPU's own use and the headroom)",
      ['gpu_uuid'],
    );
    this.gpuMetricsAvailable = gauge(
      'sagemaker_gpu_metrics_available',
      "1 while Triton's GPU memory figures can be read; 0 while they cannot (capacity then follows the accounting alone)",
      [],
    );
    this.leader = gauge(
      'sagemaker_eviction_policy_leader',
      'The eviction policy currently followed (1 for the leader)',
      ['policy'],
    );
    this.diskCache = gauge('sagemaker_disk_cache_bytes', 'Bytes held by the artifact disk cache', []);
    this.diskUtilization = gauge(
      'sagemaker_disk_utilization_ratio',
      'Used fraction of the filesystem holding the disk cache (DiskUtilization)',
      [],
    );
    this.gpuMemory = gauge(
      'sagemaker_gpu_memory_utilization_ratio',
      'Used fraction of GPU memory, per GPU (GPUMemoryUtilization)',
      ['gpu_uuid'],
    );
    // Read at scrape time from the logger, which counts what it dropped while stdout was slow.
    const told = { relayed: 0, own: 0 };
    new prom.Counter<'source'>({
      name: 'agent_log_lines_dropped_total',
      help: "Log lines dropped because stdout was not keeping up (source: tritonserver's relayed lines, or the agent's own)",
      labelNames: ['source'],
      registers,
      collect() {
        const now = droppedLogLines();
        this.inc({ source: 'tritonserver' }, now.relayed - told.relayed);
        this.inc({ source: 'agent' }, now.own - told.own);
        Object.assign(told, now);
      },
    });
    this.gpuUtilization = gauge(
      'sagemaker_gpu_utilization_ratio',
      'GPU utilization, per GPU (GPUUtilization)',
      ['gpu_uuid'],
    );
  }

  /** The callback read on every scrape for the gauges (set once by the wiring). */
  setStateSource(source: StateSource): void {
    this.source = source;
  }

  /** The `model` label for a name: its own for the first `maxModelLabels` names, else `__other__`. */
  private seriesFor(model: string | undefined): ModelSeries {
    const known = model === undefined ? undefined : this.series.get(model);
    if (known) return known;
    const label =
      model !== undefined && model !== OTHER_MODELS && this.named < this.maxModelLabels
        ? model
        : OTHER_MODELS;
    let s = this.series.get(label);
    if (s) return s;
    if (label !== OTHER_MODELS) this.named++;
    const labels = { model: label };
    s = {
      invocations: this.invocations.labels(labels),
      errors4xx: this.errors4xx.labels(labels),
      errors5xx: this.errors5xx.labels(labels),
      cacheHits: this.cacheHits.labels(labels),
      latency: this.modelLatency.labels(labels),
    };
    this.series.set(label, s);
    return s;
  }

  /** Records one finished invocation (called by `http/`). */
  invocation(r: InvocationRecord): void {
    const s = this.seriesFor(r.model);
    s.invocations.inc();
    if (r.status >= 500) s.errors5xx.inc();
    else if (r.status >= 400) s.errors4xx.inc();
    // A request that waited for a load waited, whether or not it then reached Triton.
    if (r.cold) this.loadingWait.observe(r.waitedMs / 1000);
    if (r.tritonMs !== undefined) {
      s.latency.observe(r.tritonMs / 1000);
      if (!r.cold) s.cacheHits.inc();
    }
    this.overhead.observe(Math.max(0, r.overheadMs) / 1000);
  }

  loaded(_model: string, ms: number): void {
    this.loading.observe(ms / 1000);
  }

  unloaded(_model: string, ms: number): void {
    this.unloading.observe(ms / 1000);
  }

  downloaded(_model: string, ms: number, bytes: number): void {
    this.downloading.observe(ms / 1000);
    this.downloadedBytes.inc(bytes);
  }

  evicted(_model?: string): void {
    this.evictions.inc();
  }

  private async refresh(): Promise<void> {
    if (!this.source) return;
    let s: StateSnapshot;
    try {
      s = await this.source();
    } catch {
      // The request-level metrics are still worth serving; the gauges keep their last values.
      return;
    }
    this.loadedCount.set(s.loadedModels);
    if (s.capacityUsedBytes !== undefined) this.capacityUsed.set(s.capacityUsedBytes);
    if (s.capacityTotalBytes !== undefined) this.capacityTotal.set(s.capacityTotalBytes);
    this.gpuCapacityUsed.reset();
    this.gpuCapacityTotal.reset();
    for (const g of s.capacityByGpu ?? []) {
      this.gpuCapacityUsed.set({ gpu_uuid: g.uuid }, g.usedBytes);
      this.gpuCapacityTotal.set({ gpu_uuid: g.uuid }, g.totalBytes);
    }
    if (s.gpuMetricsAvailable !== undefined) this.gpuMetricsAvailable.set(s.gpuMetricsAvailable ? 1 : 0);
    this.leader.reset();
    if (s.leader !== undefined) this.leader.set({ policy: s.leader }, 1);
    if (s.diskCacheBytes !== undefined) this.diskCache.set(s.diskCacheBytes);
    if (s.disk && s.disk.totalBytes > 0) this.diskUtilization.set(s.disk.usedBytes / s.disk.totalBytes);
    this.gpuMemory.reset();
    this.gpuUtilization.reset();
    for (const g of s.gpus ?? []) {
      if (g.totalBytes > 0) this.gpuMemory.set({ gpu_uuid: g.uuid }, g.usedBytes / g.totalBytes);
      this.gpuUtilization.set({ gpu_uuid: g.uuid }, g.utilization);
    }
  }

  /**
   * Every metric summed over its labels (histograms as `<name>_sum` and `<name>_count`; gauges averaged,
   * as over GPUs), gauges read from the state source first. For the CloudWatch EMF publisher.
   */
  async totals(): Promise<Map<string, number>> {
    await this.refresh();
    const out = new Map<string, number>();
    for (const m of await this.registry.getMetricsAsJSON()) {
      const values = m.values as { value: number; metricName?: string }[];
      // The runtime type is a string ('counter', 'gauge', 'histogram'), whatever the typings' enum says.
      const type = String(m.type as unknown);
      if (type === 'histogram') {
        for (const v of values) {
          const key = v.metricName;
          if (key === `${m.name}_sum` || key === `${m.name}_count`)
            out.set(key, (out.get(key) ?? 0) + v.value);
        }
      } else if (type === 'gauge') {
        if (values.length > 0) out.set(m.name, values.reduce((a, v) => a + v.value, 0) / values.length);
      } else {
        out.set(
          m.name,
          values.reduce((a, v) => a + v.value, 0),
        );
      }
    }
    return out;
  }

  /** The Prometheus text exposition, gauges read from the state source first. */
  async text(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
