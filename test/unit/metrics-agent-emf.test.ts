import { AgentMetrics, EmfPublisher } from '../../src/observability';

describe('EmfPublisher (CloudWatch Embedded Metric Format)', () => {
  test('one line per interval: counter increases, average times, gauges; SageMaker names and units', async () => {
    const m = new AgentMetrics();
    m.setStateSource(() => ({
      loadedModels: 4,
      gpus: [
        { uuid: 'GPU-0', usedBytes: 4, totalBytes: 16, utilization: 0.5 },
        { uuid: 'GPU-1', usedBytes: 12, totalBytes: 16, utilization: 0.1 },
      ],
    }));
    const lines: string[] = [];
    const emf = new EmfPublisher(m, {
      namespace: 'SageMaker/MME',
      intervalMs: 60_000,
      sink: { write: (s: string) => lines.push(s) },
      now: () => 1_700_000_000_000,
    });
    // Traffic before the first interval starts is not counted in it.
    m.invocation({ model: 'a', status: 200, cold: false, waitedMs: 0, tritonMs: 100, overheadMs: 1 });
    await emf.publish({ write: false });
    m.invocation({ model: 'a', status: 200, cold: true, waitedMs: 2000, tritonMs: 4, overheadMs: 1 });
    m.invocation({ model: 'b', status: 200, cold: false, waitedMs: 0, tritonMs: 8, overheadMs: 3 });
    m.invocation({ model: 'b', status: 503, cold: false, waitedMs: 0, tritonMs: undefined, overheadMs: 2 });
    m.evicted('a');
    await emf.publish();
    expect(lines).toHaveLength(1);
    const first = JSON.parse(lines[0]) as Record<string, unknown> & {
      _aws: {
        Timestamp: number;
        CloudWatchMetrics: {
          Namespace: string;
          Dimensions: string[][];
          Metrics: { Name: string; Unit: string }[];
        }[];
      };
    };
    expect(first._aws.Timestamp).toBe(1_700_000_000_000);
    expect(first._aws.CloudWatchMetrics[0].Namespace).toBe('SageMaker/MME');
    expect(first).toMatchObject({
      Invocations: 3,
      Invocation4XXErrors: 0,
      Invocation5XXErrors: 1,
      ModelCacheHit: 1,
      ModelEvictions: 1,
      LoadedModelCount: 4,
      GPUMemoryUtilization: 50,
      GPUUtilization: 30,
    });
    expect(first.ModelLatency as number).toBeCloseTo(6, 9);
    expect(first.OverheadLatency as number).toBeCloseTo(2, 9);
    expect(first.ModelLoadingWaitTime as number).toBeCloseTo(2000, 9);
    const units = Object.fromEntries(first._aws.CloudWatchMetrics[0].Metrics.map((x) => [x.Name, x.Unit]));
    expect(units).toMatchObject({
      Invocations: 'Count',
      ModelLatency: 'Milliseconds',
      GPUUtilization: 'Percent',
    });
    // Every metric named in the directive has its value in the line.
    for (const name of Object.keys(units)) expect(first[name]).toEqual(expect.any(Number));

    // A quiet interval: zero counts, no averages of nothing.
    await emf.publish();
    const second = JSON.parse(lines[1]) as Record<string, unknown>;
    expect(second.Invocations).toBe(0);
    expect(second).not.toHaveProperty('ModelLatency');
    expect(second.LoadedModelCount).toBe(4);
  });

  test('start and stop: stop writes the last partial interval; the timer never holds the process', async () => {
    const m = new AgentMetrics();
    const lines: string[] = [];
    const emf = new EmfPublisher(m, {
      namespace: 'N',
      intervalMs: 3_600_000,
      sink: { write: (s: string) => lines.push(s) },
    });
    emf.start();
    await new Promise<void>((resolve) => setImmediate(resolve));
    m.invocation({ model: 'a', status: 200, cold: false, waitedMs: 0, tritonMs: 1, overheadMs: 1 });
    await emf.stop();
    expect(lines).toHaveLength(1);
    expect((JSON.parse(lines[0]) as { Invocations: number }).Invocations).toBe(1);
  });
});
