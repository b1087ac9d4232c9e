import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { AgentMetrics, OTHER_MODELS, type StateSnapshot } from '../../src/observability';

/** name -> (label text -> sample), from the exposition text, so assertions are on parsed values. */
async function scrape(m: AgentMetrics) {
  const text = await m.text();
  const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const value = (name: string, labels: Record<string, string> = {}): number | undefined => {
    const f = families.get(name);
    const s = f?.metrics.find((x) => JSON.stringify(x.labels ?? {}) === JSON.stringify(labels));
    return s?.value === undefined ? undefined : Number(s.value);
  };
  // Histograms are read from the sample lines directly (the parser package groups labelled ones wrongly).
  const samples = text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`unparsable line ${l}`);
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[k] = v;
      return { name: m[1], labels, value: Number(m[3]) };
    });
  const same = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  const histogram = (name: string, labels: Record<string, string> = {}) => {
    const pick = (suffix: string) =>
      samples.find((x) => x.name === name + suffix && same(x.labels, labels))?.value;
    const buckets: Record<string, number> = {};
    for (const x of samples) {
      if (x.name !== `${name}_bucket`) continue;
      const { le, ...rest } = x.labels;
      if (same(rest, labels)) buckets[le] = x.value;
    }
    return { count: pick('_count') ?? NaN, sum: pick('_sum') ?? NaN, buckets };
  };
  // Series counted on the text itself: one sample line per counter or gauge series, one _count per histogram.
  const series = (name: string) =>
    text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_count{`)).length;
  return { families, value, histogram, series };
}

describe('AgentMetrics', () => {
  test('a cold then two warm invocations and a failure: counts, cache hits, waits and latencies', async () => {
    const m = new AgentMetrics();
    m.invocation({ model: 'a', status: 200, cold: true, waitedMs: 1500, tritonMs: 4, overheadMs: 0.5 });
    m.invocation({ model: 'a', status: 200, cold: false, waitedMs: 0, tritonMs: 2, overheadMs: 0.25 });
    m.invocation({ model: 'a', status: 200, cold: false, waitedMs: 0, tritonMs: 6, overheadMs: 0.25 });
    m.invocation({ model: 'b', status: 404, cold: false, waitedMs: 0, tritonMs: undefined, overheadMs: 0.1 });
    m.invocation({
      model: 'b',
      status: 503,
      cold: true,
      waitedMs: 60000,
      tritonMs: undefined,
      overheadMs: 1,
    });
    const s = await scrape(m);
    expect(s.value('sagemaker_invocations_total', { model: 'a' })).toBe(3);
    expect(s.value('sagemaker_invocations_total', { model: 'b' })).toBe(2);
    expect(s.value('sagemaker_model_cache_hit_total', { model: 'a' })).toBe(2);
    // A request that never reached Triton is no hit; one that waited for a load and failed did wait.
    expect(s.value('sagemaker_model_cache_hit_total', { model: 'b' }) ?? 0).toBe(0);
    expect(s.value('sagemaker_invocation_4xx_errors_total', { model: 'b' })).toBe(1);
    expect(s.value('sagemaker_invocation_5xx_errors_total', { model: 'b' })).toBe(1);
    expect(s.value('sagemaker_invocation_4xx_errors_total', { model: 'a' }) ?? 0).toBe(0);
    const wait = s.histogram('sagemaker_model_loading_wait_time_seconds');
    expect(wait.count).toBe(2);
    expect(wait.sum).toBeCloseTo(61.5, 9);
    const latency = s.histogram('sagemaker_model_latency_seconds', { model: 'a' });
    expect(latency.count).toBe(3);
    expect(latency.sum).toBeCloseTo(0.012, 9);
    expect(latency.buckets['0.005']).toBe(2);
    expect(latency.buckets['+Inf']).toBe(3);
    const overhead = s.histogram('sagemaker_overhead_latency_seconds');
    expect(overhead.count).toBe(5);
    expect(overhead.sum).toBeCloseTo(0.0021, 9);
  });

  test('lifecycle events: loading, unloading, downloading times and bytes, evictions', async () => {
    const m = new AgentMetrics();
    m.loaded('a', 2000);
    m.loaded('b', 500);
    m.unloaded('a', 250);
    m.downloaded('a', 3000, 1024);
    m.downloaded('b', 1000, 2048);
    m.evicted('a');
    m.evicted('b');
    m.evicted('c');
    const s = await scrape(m);
    expect(s.histogram('sagemaker_model_loading_time_seconds')).toMatchObject({ count: 2, sum: 2.5 });
    expect(s.histogram('sagemaker_model_unloading_time_seconds')).toMatchObject({ count: 1, sum: 0.25 });
    expect(s.histogram('sagemaker_model_downloading_time_seconds')).toMatchObject({ count: 2, sum: 4 });
    expect(s.value('sagemaker_model_downloaded_bytes_total')).toBe(3072);
    expect(s.value('sagemaker_model_evictions_total')).toBe(3);
  });

  test('gauges come from the state source at scrape time; the leader and GPUs are replaced, not added', async () => {
    const m = new AgentMetrics();
    let state: StateSnapshot = {
      loadedModels: 3,
      capacityUsedBytes: 6e9,
      capacityTotalBytes: 15e9,
      leader: 'lru',
      diskCacheBytes: 123456,
      disk: { usedBytes: 25, totalBytes: 100 },
      gpus: [
        { uuid: 'GPU-0', usedBytes: 4e9, totalBytes: 16e9, utilization: 0.5 },
        { uuid: 'GPU-1', usedBytes: 8e9, totalBytes: 16e9, utilization: 0 },
      ],
    };
    let reads = 0;
    m.setStateSource(async () => {
      reads++;
      return state;
    });
    let s = await scrape(m);
    expect(reads).toBe(1);
    expect(s.value('sagemaker_loaded_model_count')).toBe(3);
    expect(s.value('sagemaker_gpu_capacity_used_bytes')).toBe(6e9);
    expect(s.value('sagemaker_gpu_capacity_total_bytes')).toBe(15e9);
    expect(s.value('sagemaker_eviction_policy_leader', { policy: 'lru' })).toBe(1);
    expect(s.value('sagemaker_disk_cache_bytes')).toBe(123456);
    expect(s.value('sagemaker_disk_utilization_ratio')).toBe(0.25);
    expect(s.value('sagemaker_gpu_memory_utilization_ratio', { gpu_uuid: 'GPU-0' })).toBe(0.25);
    expect(s.value('sagemaker_gpu_memory_utilization_ratio', { gpu_uuid: 'GPU-1' })).toBe(0.5);
    expect(s.value('sagemaker_gpu_utilization_ratio', { gpu_uuid: 'GPU-0' })).toBe(0.5);

    state = {
      loadedModels: 1,
      leader: 'gdsf-aged',
      gpus: [{ uuid: 'GPU-0', usedBytes: 0, totalBytes: 16e9, utilization: 0 }],
    };
    s = await scrape(m);
    expect(s.value('sagemaker_loaded_model_count')).toBe(1);
    expect(s.series('sagemaker_eviction_policy_leader')).toBe(1);
    expect(s.value('sagemaker_eviction_policy_leader', { policy: 'gdsf-aged' })).toBe(1);
    expect(s.series('sagemaker_gpu_memory_utilization_ratio')).toBe(1);
  });

  test('a failing state source still serves the request-level metrics', async () => {
    const m = new AgentMetrics();
    m.setStateSource(() => {
      throw new Error('metrics endpoint down');
    });
    m.invocation({ model: 'a', status: 200, cold: false, waitedMs: 0, tritonMs: 1, overheadMs: 0.1 });
    const s = await scrape(m);
    expect(s.value('sagemaker_invocations_total', { model: 'a' })).toBe(1);
  });

  test('thousands of models cannot explode the series count: beyond the bound they share __other__', async () => {
    const m = new AgentMetrics({ maxModelLabels: 5 });
    for (let i = 0; i < 3000; i++) {
      m.invocation({ model: `m${i}`, status: 200, cold: false, waitedMs: 0, tritonMs: 1, overheadMs: 0.1 });
    }
    // The first five keep their label, also on later requests.
    m.invocation({ model: 'm0', status: 500, cold: false, waitedMs: 0, tritonMs: 1, overheadMs: 0.1 });
    const s = await scrape(m);
    expect(s.series('sagemaker_invocations_total')).toBe(6);
    expect(s.value('sagemaker_invocations_total', { model: 'm0' })).toBe(2);
    expect(s.value('sagemaker_invocations_total', { model: 'm4' })).toBe(1);
    expect(s.value('sagemaker_invocations_total', { model: OTHER_MODELS })).toBe(2995);
    expect(s.value('sagemaker_invocation_5xx_errors_total', { model: 'm0' })).toBe(1);
    expect(s.series('sagemaker_model_latency_seconds')).toBe(6);
  });

  test('every SageMaker MME metric has its Prometheus family', async () => {
    const m = new AgentMetrics();
    m.setStateSource(() => ({ loadedModels: 0 }));
    const text = await m.text();
    for (const name of [
      'sagemaker_loaded_model_count',
      'sagemaker_model_loading_wait_time_seconds',
      'sagemaker_model_loading_time_seconds',
      'sagemaker_model_unloading_time_seconds',
      'sagemaker_model_downloading_time_seconds',
      'sagemaker_model_cache_hit_total',
      'sagemaker_model_latency_seconds',
      'sagemaker_overhead_latency_seconds',
      'sagemaker_invocations_total',
      'sagemaker_invocation_4xx_errors_total',
      'sagemaker_invocation_5xx_errors_total',
      'sagemaker_gpu_memory_utilization_ratio',
      'sagemaker_gpu_utilization_ratio',
      'sagemaker_disk_utilization_ratio',
      'sagemaker_model_evictions_total',
      'sagemaker_gpu_capacity_used_bytes',
      'sagemaker_gpu_capacity_total_bytes',
      'sagemaker_eviction_policy_leader',
      'sagemaker_disk_cache_bytes',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });
});
