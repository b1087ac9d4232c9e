import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { TritonMetricsReader } from '../triton';

/** GPU memory as the device reports it (all processes), summed over the GPUs Triton sees. */
export interface GpuSample {
  usedBytes: number;
  totalBytes: number;
  /** When the sample was read (ms, the capacity model's clock). */
  at: number;
}

/** Where GPU memory truth comes from: Triton's metrics in the agent, a script in tests and simulations. */
export interface GpuMemoryProbe {
  read(): Promise<{ usedBytes: number; totalBytes: number }>;
}

/** Reads `nv_gpu_memory_used_bytes` / `nv_gpu_memory_total_bytes` from Triton's Prometheus endpoint. */
export class TritonGpuProbe implements GpuMemoryProbe {
  constructor(private readonly metrics: TritonMetricsReader) {}

  async read(): Promise<{ usedBytes: number; totalBytes: number }> {
    const m = await this.metrics.read();
    let usedBytes = 0;
    let totalBytes = 0;
    for (const g of m.gpus) {
      usedBytes += g.memoryUsedBytes;
      totalBytes += g.memoryTotalBytes;
    }
    return { usedBytes, totalBytes };
  }
}

export interface CapacityOptions {
  /** GPU bytes always left free for activations, workspaces and allocator caches. */
  headroomBytes: number;
  /** Most models resident at once (0: no limit). */
  maxResident: number;
  /** Estimated GPU bytes = artifact bytes × this, until a load has been measured. */
  footprintFactor: number;
  /**
   * How old a metrics sample may be (Triton's --metrics-interval-ms): after a load or unload the agent waits
   * this long before it trusts a new sample to include it.
   */
  metricsIntervalMs: number;
  /** Where learned footprints are kept across restarts. */
  footprintsFile: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The capacity model: GPU memory truth from the device (re-read, never inferred from what an unload
 * should have freed), a learned footprint per artifact (persisted), estimates before the first load,
 * headroom, a resident-count limit, and reservations so concurrent loads cannot together overshoot.
 */
export class CapacityModel {
  private readonly footprints = new Map<string, number>();
  /** Bytes reserved per loading model, and when its load finished (once it has). */
  private readonly reservations = new Map<string, { bytes: number; loadedAt?: number }>();
  /** Loads and unloads in flight: a footprint is measured only across a load with nothing else moving. */
  private moving = 0;
  private movedSince = 0;
  /** When a load or unload last started or ended. */
  private lastMoveAt = -Infinity;
  private persisting: Promise<void> = Promise.resolve();

  constructor(
    private readonly probe: GpuMemoryProbe,
    readonly options: CapacityOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Loads learned footprints from disk (a missing or unreadable file means none yet). */
  async open(): Promise<void> {
    try {
      const data = JSON.parse(await fsp.readFile(this.options.footprintsFile, 'utf8')) as Record<
        string,
        number
      >;
      for (const [k, v] of Object.entries(data)) if (Number.isFinite(v) && v >= 0) this.footprints.set(k, v);
    } catch {
      // none yet
    }
  }

  /** A sample taken now (no staleness guarantee). */
  async sample(): Promise<GpuSample> {
    const s = await this.probe.read();
    return { ...s, at: this.now() };
  }

  /** A sample guaranteed to postdate `since` by a full metrics interval (Triton refreshes on that interval). */
  async freshSample(since: number): Promise<GpuSample> {
    const wait = since + this.options.metricsIntervalMs - this.now();
    if (wait > 0) await sleep(wait);
    return this.sample();
  }

  learned(key: string): number | undefined {
    return this.footprints.get(key);
  }

  /**
   * The GPU bytes a model will need: measured, else what a load that first ran out of memory finally
   * succeeded with (if larger than the estimate), else declared in its config, else artifact bytes × factor.
   */
  estimate(key: string, declaredBytes: number | undefined, artifactBytes: number): number {
    const measured = this.footprints.get(key);
    if (measured !== undefined) return measured;
    const base = declaredBytes ?? Math.ceil(Math.max(1, artifactBytes) * this.options.footprintFactor);
    return Math.max(base, this.provisional.get(key) ?? 0);
  }

  /** A load of `key` succeeded with `bytes` reserved after running out of memory with less. */
  succeededWith(key: string, bytes: number): void {
    this.provisional.set(key, Math.max(this.provisional.get(key) ?? 0, bytes));
  }

  private readonly provisional = new Map<string, number>();

  /** Records a measured footprint and persists the table (atomically, in the background). */
  learn(key: string, bytes: number): void {
    this.footprints.set(key, Math.max(0, Math.round(bytes)));
    const snapshot = JSON.stringify(Object.fromEntries(this.footprints));
    const file = this.options.footprintsFile;
    this.persisting = this.persisting
      .then(async () => {
        await fsp.mkdir(path.dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        await fsp.writeFile(tmp, snapshot);
        await fsp.rename(tmp, file);
      })
      .catch(() => undefined);
  }

  /** Resolves when learned footprints are on disk. */
  flushed(): Promise<void> {
    return this.persisting;
  }

  /** Reserved bytes not yet visible in a sample taken at `at` (all of them when `at` is omitted). */
  reservedBytes(at?: number): number {
    let total = 0;
    for (const r of this.reservations.values()) {
      // A sample taken a full metrics interval after a load finished already includes that load.
      if (at !== undefined && r.loadedAt !== undefined && at >= r.loadedAt + this.options.metricsIntervalMs)
        continue;
      total += r.bytes;
    }
    return total;
  }

  /**
   * Bytes a new load may use given `sample`: total minus used minus headroom minus the reservations the
   * sample cannot show yet (loads in flight count in full even if part of them already shows: conservative).
   */
  free(sample: GpuSample): number {
    return sample.totalBytes - sample.usedBytes - this.options.headroomBytes - this.reservedBytes(sample.at);
  }

  reserve(model: string, bytes: number): void {
    this.reservations.set(model, { bytes });
  }

  /**
   * When a sample taken at `at` would surely include every finished load (undefined: it already does).
   * Loads still in flight are not waited for: their reservations count in full.
   */
  unsettledUntil(at: number): number | undefined {
    let until: number | undefined;
    for (const r of this.reservations.values()) {
      if (r.loadedAt === undefined) continue;
      const visible = r.loadedAt + this.options.metricsIntervalMs;
      if (at < visible) until = Math.max(until ?? 0, visible);
    }
    return until;
  }

  /** The model's load finished: samples taken a metrics interval from now include it. */

  loaded(model: string): void {
    const r = this.reservations.get(model);
    if (r) r.loadedAt = this.now();
  }

  release(model: string): void {
    this.reservations.delete(model);
  }

  /** Marks a load or unload as started; returns a function marking it done. */
  begin(): () => void {
    this.moving++;
    this.movedSince++;
    this.lastMoveAt = this.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.moving--;
      this.movedSince++;
      this.lastMoveAt = this.now();
    };
  }

  /**
   * A token that tells later whether any load or unload started or ended in between; -1 (never quiet) when
   * something moved too recently for `before` to show it.
   */
  quietToken(before: GpuSample | undefined): number {
    if (!before || this.moving > 0) return -1;
    if (this.lastMoveAt > before.at - this.options.metricsIntervalMs) return -1;
    return this.movedSince;
  }

  stillQuiet(token: number): boolean {
    // The load being measured itself begins and ends once (two moves).
    return token >= 0 && this.movedSince === token + 2 && this.moving === 0;
  }
}
