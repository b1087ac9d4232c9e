import { randomUUID } from 'node:crypto';

const MiB = 1024 * 1024;

/**
 * A UUID as NVML prints one: `GPU-` and a random RFC 4122 UUID. Real UUIDs are random, so their order says
 * nothing about CUDA's device ordinals (core metrics.cc labels `nv_gpu_*` with `gpu_uuid` only).
 */
export function randomGpuUuid(): string {
  return `GPU-${randomUUID()}`;
}

/**
 * The PCI bus id nvidia-smi prints for emulated device `ordinal`. Devices are laid out in PCI order, which
 * is CUDA's order under `CUDA_DEVICE_ORDER=PCI_BUS_ID` (the agent sets it for tritonserver).
 */
export function emulatedPciBusId(ordinal: number): string {
  return `00000000:${(0x17 + 0x10 * ordinal).toString(16).toUpperCase().padStart(2, '0')}:00.0`;
}

/** What DCGM reports for one device at one refresh (core metrics.cc). */
export interface DeviceReading {
  usedBytes: number;
  totalBytes: number;
}

/**
 * One emulated GPU's memory, as NVML sees it: a base taken at start (the CUDA context and Triton's CUDA
 * memory pool, `--cuda-memory-pool-byte-size`, 64 MiB by default), one allocation per key (an instance, an
 * engine, growth after load), PyTorch's caching allocator's reserved-but-free blocks, and freed memory that
 * stays "used" for a lag because allocators hand memory back to the driver late. A multi-GPU emulator holds
 * one per device, each with its own figures.
 */
export class GpuMemory {
  private readonly allocations = new Map<string, number>();
  private releasing: { bytes: number; at: number }[] = [];
  private peak = 0;
  /**
   * Blocks PyTorch's caching allocator holds but no tensor uses: free to later PyTorch allocations on
   * this device, "used" to NVML and to everyone else, until `emptyCache` (pytorch_backend libtorch.cc runs
   * it in ~ModelInstanceState, and it is process-wide).
   */
  private torchCacheBytes = 0;

  constructor(
    public totalBytes: number,
    public baselineBytes: number,
    public releaseLagMs: number,
    private readonly now: () => number = Date.now,
    /** The device's UUID, as NVML and Triton's `gpu_uuid` metric label show it. */
    readonly uuid: string = randomGpuUuid(),
    /** As nvidia-smi prints it; PCI order is CUDA's order here. */
    readonly pciBusId: string = emulatedPciBusId(0),
  ) {
    this.peak = baselineBytes;
  }

  /** Device-wide used bytes right now (what NVML would say, to the byte). */
  usedBytes(): number {
    const t = this.now();
    this.releasing = this.releasing.filter((r) => r.at > t);
    let used = this.baselineBytes + this.torchCacheBytes;
    for (const b of this.allocations.values()) used += b;
    for (const r of this.releasing) used += r.bytes;
    return used;
  }

  /** Bytes held now, memory freed but still in its release lag left out. */
  heldBytes(): number {
    let held = this.baselineBytes + this.torchCacheBytes;
    for (const b of this.allocations.values()) held += b;
    return held;
  }

  /**
   * What Triton's metrics show: DCGM's FB_USED and FB_TOTAL are whole MiB, exported times 1024 × 1024
   * (core metrics.cc), so figures move in 1 MiB steps.
   */
  reading(): DeviceReading {
    return {
      usedBytes: Math.floor(this.usedBytes() / MiB) * MiB,
      totalBytes: Math.floor(this.totalBytes / MiB) * MiB,
    };
  }

  freeBytes(): number {
    return Math.max(0, this.totalBytes - this.usedBytes());
  }

  /** Highest used figure ever reached (tests check it never passes the total). */
  peakBytes(): number {
    return this.peak;
  }

  /** Bytes currently allocated under `key` on this device (0 when it holds nothing there). */
  allocatedBytes(key: string): number {
    return this.allocations.get(key) ?? 0;
  }

  /** PyTorch's cached, unused blocks on this device. */
  get torchCache(): number {
    return this.torchCacheBytes;
  }

  /**
   * Whether `bytes` more would fit right now; for PyTorch (`torch`) its own cached blocks count as free.
   */
  fits(bytes: number, torch = false): boolean {
    const cached = torch ? this.torchCacheBytes : 0;
    return bytes <= 0 || this.usedBytes() - cached + bytes <= this.totalBytes;
  }

  /**
   * Allocates `bytes` more under `key` if they fit; false (nothing changed) when they do not. PyTorch
   * (`torch`) takes its own cached blocks first.
   */
  tryAllocate(key: string, bytes: number, torch = false): boolean {
    if (bytes <= 0) {
      if (!this.allocations.has(key)) this.allocations.set(key, 0);
      return true;
    }
    if (!this.fits(bytes, torch)) return false;
    const fromCache = torch ? Math.min(this.torchCacheBytes, bytes) : 0;
    this.torchCacheBytes -= fromCache;
    const used = this.usedBytes();
    this.allocations.set(key, (this.allocations.get(key) ?? 0) + bytes);
    this.peak = Math.max(this.peak, used + bytes);
    return true;
  }

  /**
   * PyTorch ran out of memory part way through an allocation of `bytes`: what it did allocate stays in its
   * cache (the tensors are freed to the caching allocator, not to the driver). Returns the bytes kept.
   */
  keepPartialInTorchCache(bytes: number): number {
    const kept = Math.min(bytes, this.freeBytes());
    this.torchCacheBytes += kept;
    this.peak = Math.max(this.peak, this.usedBytes());
    return kept;
  }

  /** Frees an allocation; it keeps counting as used for `releaseLagMs`. */
  release(key: string): void {
    const bytes = this.allocations.get(key);
    if (bytes === undefined) return;
    this.allocations.delete(key);
    this.lag(bytes);
  }

  /** `emptyCache`: PyTorch's cached blocks go back to the driver (late, like any release). */
  emptyTorchCache(): void {
    const bytes = this.torchCacheBytes;
    this.torchCacheBytes = 0;
    this.lag(bytes);
  }

  private lag(bytes: number): void {
    if (bytes > 0 && this.releaseLagMs > 0)
      this.releasing.push({ bytes, at: this.now() + this.releaseLagMs });
  }

  /** A crashed process's memory is reclaimed by the driver at once (its CUDA context stays: a new one). */
  releaseAll(): void {
    this.allocations.clear();
    this.releasing = [];
    this.torchCacheBytes = 0;
  }
}
