import type { TritonMetricsReader } from '../triton';

/** One GPU's memory as the device reports it (all processes). */
export interface DeviceMemory {
  uuid: string;
  usedBytes: number;
  totalBytes: number;
  /** 0.0 to 1.0, when known. */
  utilization?: number;
}

/** Every GPU Triton sees, read at `at` (the agent's clock). */
export interface GpuSample {
  devices: DeviceMemory[];
  at: number;
}

/** Where GPU memory truth comes from: Triton's metrics in the agent, a script in tests and simulations. */
export interface GpuMemoryProbe {
  read(): Promise<DeviceMemory[]>;
}

/** Reads `nv_gpu_memory_used_bytes` / `nv_gpu_memory_total_bytes` per `gpu_uuid` from Triton's metrics. */
export class TritonGpuProbe implements GpuMemoryProbe {
  constructor(private readonly metrics: TritonMetricsReader) {}

  async read(): Promise<DeviceMemory[]> {
    const m = await this.metrics.read();
    return m.gpus
      .map((g) => ({
        uuid: g.uuid,
        usedBytes: g.memoryUsedBytes,
        totalBytes: g.memoryTotalBytes,
        utilization: g.utilization,
      }))
      .sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
  }
}
