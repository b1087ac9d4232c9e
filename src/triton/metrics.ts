import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { AgentError, ErrorCode, messageOf } from '../errors';

/** One GPU as Triton's metrics endpoint reports it (device-wide figures, refreshed every interval). */
export interface GpuMetrics {
  uuid: string;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
  /** 0.0 to 1.0. */
  utilization: number;
}

/** Triton's per-model counters (cumulative since the model was loaded). */
export interface ModelCounters {
  model: string;
  version: string;
  requestSuccess: number;
  requestFailure: number;
  /** Failures by `reason` label (REJECTED, CANCELED, BACKEND, OTHER). */
  requestFailureByReason: Record<string, number>;
  inferenceCount: number;
  executionCount: number;
  requestDurationUs: number;
  queueDurationUs: number;
  computeInferDurationUs: number;
  pendingRequests: number;
  loadDurationSecs?: number;
}

export interface TritonMetrics {
  gpus: GpuMetrics[];
  /**
   * True when the page has GPU memory series. Triton exports none when GPU metrics are off or DCGM is
   * unavailable: that means "figures unavailable", not "no GPUs".
   */
  gpuSeries: boolean;
  models: ModelCounters[];
}

function num(v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  return Number.isNaN(n) ? 0 : n;
}

const MODEL_FIELDS: Record<string, keyof ModelCounters> = {
  nv_inference_request_success: 'requestSuccess',
  nv_inference_count: 'inferenceCount',
  nv_inference_exec_count: 'executionCount',
  nv_inference_request_duration_us: 'requestDurationUs',
  nv_inference_queue_duration_us: 'queueDurationUs',
  nv_inference_compute_infer_duration_us: 'computeInferDurationUs',
  nv_inference_pending_request_count: 'pendingRequests',
  nv_model_load_duration_secs: 'loadDurationSecs',
};

/** Reads Triton's Prometheus text into typed GPU and per-model values. Unknown families are ignored. */
export function parseTritonMetrics(text: string): TritonMetrics {
  const gpus = new Map<string, GpuMetrics>();
  let gpuSeries = false;
  const models = new Map<string, ModelCounters>();
  const gpu = (uuid: string): GpuMetrics => {
    let g = gpus.get(uuid);
    if (!g) {
      g = { uuid, memoryUsedBytes: 0, memoryTotalBytes: 0, utilization: 0 };
      gpus.set(uuid, g);
    }
    return g;
  };
  const model = (labels: Record<string, string>): ModelCounters => {
    const key = `${labels.model}\u0000${labels.version ?? ''}`;
    let m = models.get(key);
    if (!m) {
      m = {
        model: labels.model,
        version: labels.version ?? '',
        requestSuccess: 0,
        requestFailure: 0,
        requestFailureByReason: {},
        inferenceCount: 0,
        executionCount: 0,
        requestDurationUs: 0,
        queueDurationUs: 0,
        computeInferDurationUs: 0,
        pendingRequests: 0,
      };
      models.set(key, m);
    }
    return m;
  };
  for (const family of parsePrometheusTextFormat(text)) {
    for (const sample of family.metrics) {
      const labels = sample.labels ?? {};
      const value = num(sample.value);
      switch (family.name) {
        case 'nv_gpu_memory_used_bytes':
          if (labels.gpu_uuid) gpu(labels.gpu_uuid).memoryUsedBytes = value;
          break;
        case 'nv_gpu_memory_total_bytes':
          gpuSeries = true;
          if (labels.gpu_uuid) gpu(labels.gpu_uuid).memoryTotalBytes = value;
          break;
        case 'nv_gpu_utilization':
          if (labels.gpu_uuid) gpu(labels.gpu_uuid).utilization = value;
          break;
        case 'nv_inference_request_failure': {
          if (!labels.model) break;
          const m = model(labels);
          m.requestFailure += value;
          const reason = labels.reason ?? 'OTHER';
          m.requestFailureByReason[reason] = (m.requestFailureByReason[reason] ?? 0) + value;
          break;
        }
        default: {
          const field = MODEL_FIELDS[family.name];
          if (field && labels.model) {
            // GPU-instance reporters add a gpu_uuid label: sum across devices.
            const m = model(labels) as unknown as Record<string, number | undefined>;
            m[field] = (m[field] ?? 0) + value;
          }
        }
      }
    }
  }
  return { gpus: [...gpus.values()], gpuSeries, models: [...models.values()] };
}

/** Fetches and parses Triton's `/metrics` endpoint. */
export class TritonMetricsReader {
  constructor(
    readonly url: string,
    private readonly timeoutMs = 2_000,
  ) {}

  async read(): Promise<TritonMetrics> {
    let text: string;
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(this.timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (err) {
      throw new AgentError(
        ErrorCode.TritonUnavailable,
        `cannot read Triton metrics at ${this.url}: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
    }
    return parseTritonMetrics(text);
  }
}
