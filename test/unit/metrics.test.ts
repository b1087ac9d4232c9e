import { parseTritonMetrics } from '../../src/triton/metrics';

const TEXT = `# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-a"} 0.25
nv_gpu_utilization{gpu_uuid="GPU-b"} 0
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-a"} 16106127360
nv_gpu_memory_total_bytes{gpu_uuid="GPU-b"} 8.589934592e+09
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 1234567168
nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 0
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet",version="1"} 10
nv_inference_request_success{model="resnet-trt-3f2a",version="1"} 4
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="resnet",reason="BACKEND",version="1"} 2
nv_inference_request_failure{model="resnet",reason="REJECTED",version="1"} 1
# TYPE nv_inference_count counter
nv_inference_count{model="resnet",version="1"} 640
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{gpu_uuid="GPU-a",model="resnet",version="1"} 300
nv_inference_compute_infer_duration_us{gpu_uuid="GPU-b",model="resnet",version="1"} 200
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
# TYPE nv_inference_first_response_histogram_ms histogram
nv_inference_first_response_histogram_ms_bucket{model="resnet",version="1",le="100"} 3
nv_inference_first_response_histogram_ms_bucket{model="resnet",version="1",le="+Inf"} 3
nv_inference_first_response_histogram_ms_sum{model="resnet",version="1"} 12
nv_inference_first_response_histogram_ms_count{model="resnet",version="1"} 3
`;

describe('parseTritonMetrics', () => {
  test('GPU gauges by gpu_uuid', () => {
    const m = parseTritonMetrics(TEXT);
    expect(m.gpus).toEqual([
      { uuid: 'GPU-a', utilization: 0.25, memoryTotalBytes: 16106127360, memoryUsedBytes: 1234567168 },
      { uuid: 'GPU-b', utilization: 0, memoryTotalBytes: 8589934592, memoryUsedBytes: 0 },
    ]);
  });

  test('per-model counters, failures by reason, summed across GPUs', () => {
    const m = parseTritonMetrics(TEXT);
    const resnet = m.models.find((x) => x.model === 'resnet');
    expect(resnet).toMatchObject({
      version: '1',
      requestSuccess: 10,
      requestFailure: 3,
      requestFailureByReason: { BACKEND: 2, REJECTED: 1 },
      inferenceCount: 640,
      computeInferDurationUs: 500,
    });
    expect(m.models.find((x) => x.model === 'resnet-trt-3f2a')?.requestSuccess).toBe(4);
  });

  test('empty text', () => {
    expect(parseTritonMetrics('')).toEqual({ gpus: [], gpuSeries: false, models: [] });
  });
});
