import type { GpuMap, TritonMetricsReader } from '../triton';
import { AgentError, ErrorCode } from '../errors';

/** One GPU's memory as the device reports it (all processes). */
export interface DeviceMemory {
  uuid: string;
  /**
   * CUDA's device ordinal (what `instance_group.gpus` and `memory_usage.id` mean), when known. A sample of
   * several devices any of which lacks it is one pool: the agent cannot tell which device is which.
   */
  ordinal?: number;
  usedBytes: number;
  /** 0 with `usedBytes` 0: the device could not be read this time (DCGM reports a failed read so). */
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
  /** Rejects with `TritonUnavailable` when no figures can be had ("metrics unavailable", not "no GPUs"). */
  read(): Promise<DeviceMemory[]>;
  /** Why the devices carry no CUDA ordinal, when they do not (said once in the log). */
  identityProblem?(): string | undefined;
}

/**
 * Reads `nv_gpu_memory_used_bytes` / `nv_gpu_memory_total_bytes` per `gpu_uuid` from Triton's metrics and
 * gives each device its CUDA ordinal from the GPU map (nvidia-smi). The metrics carry no ordinal, and real
 * UUIDs are random: their order means nothing.
 */
export class TritonGpuProbe implements GpuMemoryProbe {
  constructor(
    private readonly metrics: TritonMetricsReader,
    private readonly gpuMap: () => GpuMap | undefined,
  ) {}

  identityProblem(): string | undefined {
    const map = this.gpuMap();
    if (!map) return 'the GPU map has not been read';
    return map.kind === 'unknown' ? map.reason : undefined;
  }

  async read(): Promise<DeviceMemory[]> {
    const m = await this.metrics.read();
    // Triton without GPU metrics (off, DCGM missing, an error) exports no nv_gpu_* series at all.
    if (!m.gpuSeries)
      throw new AgentError(
        ErrorCode.TritonUnavailable,
        `Triton's metrics at ${this.metrics.url} have no nv_gpu_memory_* series (GPU metrics off or unavailable)`,
      );
    const map = this.gpuMap();
    const devices = m.gpus.map((g) => ({
      uuid: g.uuid,
      ordinal: map?.kind === 'known' ? map.ordinals.get(g.uuid) : undefined,
      usedBytes: g.memoryUsedBytes,
      totalBytes: g.memoryTotalBytes,
      utilization: g.utilization,
    }));
    // By ordinal when known; otherwise in the page's order, which is all there is.
    if (devices.every((d) => d.ordinal !== undefined))
      devices.sort((a, b) => (a.ordinal ?? 0) - (b.ordinal ?? 0));
    return devices;
  }
}
