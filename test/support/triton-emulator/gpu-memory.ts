/**
 * The UUID NVML reports for emulated device `index` (Triton labels its `nv_gpu_*` series with it):
 * `GPU-00000000-0000-0000-0000-000000000002` for device 2. Stable and distinct per index; device 0 keeps
 * the emulator's historical single-GPU UUID.
 */
export function emulatedGpuUuid(index: number): string {
  return `GPU-00000000-0000-0000-0000-${String(index).padStart(12, '0')}`;
}

/**
 * One emulated GPU's memory: a total, a baseline used by the CUDA context and other processes, one
 * allocation per loaded model version (all its instances on this device), and freed allocations that
 * stay "used" for a lag, because real allocators (PyTorch's caching allocator, TensorRT) hand memory
 * back to the driver late. A multi-GPU emulator holds one per device, each with its own figures.
 */
export class GpuMemory {
  private readonly allocations = new Map<string, number>();
  private releasing: { bytes: number; at: number }[] = [];
  private peak = 0;

  constructor(
    public totalBytes: number,
    public baselineBytes: number,
    public releaseLagMs: number,
    private readonly now: () => number = Date.now,
    /** The device's UUID, as NVML and Triton's `gpu_uuid` metric label show it. */
    readonly uuid: string = emulatedGpuUuid(0),
  ) {
    this.peak = baselineBytes;
  }

  /** Device-wide used bytes right now (what NVML would say). */
  usedBytes(): number {
    const t = this.now();
    this.releasing = this.releasing.filter((r) => r.at > t);
    let used = this.baselineBytes;
    for (const b of this.allocations.values()) used += b;
    for (const r of this.releasing) used += r.bytes;
    return used;
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

  /** Whether `bytes` more would fit right now (what an allocation of that size would find). */
  fits(bytes: number): boolean {
    return bytes <= 0 || this.usedBytes() + bytes <= this.totalBytes;
  }

  /** Allocates `bytes` under `key` if they fit; false (nothing changed) when they do not. */
  tryAllocate(key: string, bytes: number): boolean {
    if (bytes <= 0) {
      this.allocations.set(key, 0);
      return true;
    }
    const used = this.usedBytes();
    if (used + bytes > this.totalBytes) return false;
    this.allocations.set(key, (this.allocations.get(key) ?? 0) + bytes);
    this.peak = Math.max(this.peak, used + bytes);
    return true;
  }

  /** Frees an allocation; it keeps counting as used for `releaseLagMs`. */
  release(key: string): void {
    const bytes = this.allocations.get(key);
    if (bytes === undefined) return;
    this.allocations.delete(key);
    if (bytes > 0 && this.releaseLagMs > 0)
      this.releasing.push({ bytes, at: this.now() + this.releaseLagMs });
  }

  /** A crashed process's memory is reclaimed by the driver at once. */
  releaseAll(): void {
    this.allocations.clear();
    this.releasing = [];
  }
}
