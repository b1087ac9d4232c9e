import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { GpuSample } from './gpu-probe';

export interface FootprintOptions {
  /** Estimated GPU bytes = artifact bytes × this, until a load has been measured. */
  factor: number;
  /** Where learned footprints are kept across restarts. */
  file: string;
  /** How stale Triton's metrics may be: a sample shows a load only this long after it finished. */
  metricsIntervalMs: number;
}

/** A load waiting for a sample that shows it, to be measured by the change in used memory. */
interface PendingMeasurement {
  key: string;
  before: GpuSample;
  token: number;
  loadedAt: number;
  onLearned: (bytes: number) => void;
}

/**
 * What each artifact version takes on the GPU: learned (from `ModelStatistics.memory_usage`, or from the
 * change in used memory across a load nothing else overlapped), else a lower bound learned from an
 * out-of-memory failure, else declared in its config, else its bytes × a factor. Learned figures are
 * persisted. Measuring never holds a request: a load's delta is attributed when a later sample shows it.
 */
export class Footprints {
  private readonly learnedBytes = new Map<string, number>();
  private readonly lowerBounds = new Map<string, number>();
  private readonly pending: PendingMeasurement[] = [];
  private persisting: Promise<void> = Promise.resolve();

  constructor(readonly options: FootprintOptions) {}

  /** Loads learned footprints from disk (a missing or unreadable file means none yet). */
  async open(): Promise<void> {
    try {
      const data = JSON.parse(await fsp.readFile(this.options.file, 'utf8')) as Record<string, unknown>;
      for (const [k, v] of Object.entries(data))
        if (typeof v === 'number' && Number.isFinite(v) && v >= 0) this.learnedBytes.set(k, v);
    } catch {
      // none yet
    }
  }

  learned(key: string): number | undefined {
    return this.learnedBytes.get(key);
  }

  /** The GPU bytes a model will need. */
  estimate(key: string, declaredBytes: number | undefined, artifactBytes: number): number {
    // A lower bound from an out-of-memory failure wins over a measurement that was too small.
    const bound = this.lowerBounds.get(key) ?? 0;
    const measured = this.learnedBytes.get(key);
    if (measured !== undefined) return Math.max(measured, bound);
    const base = declaredBytes ?? Math.ceil(Math.max(1, artifactBytes) * this.options.factor);
    return Math.max(base, bound);
  }

  /** A load ran out of memory with `bytes` reserved: it needs more than that (until measured). */
  needsMoreThan(key: string, bytes: number): void {
    this.lowerBounds.set(key, Math.max(this.lowerBounds.get(key) ?? 0, bytes + 1));
  }

  /** Records a measured footprint and persists the table (atomically, in the background). */
  learn(key: string, bytes: number): void {
    this.learnedBytes.set(key, Math.max(0, Math.round(bytes)));
    const snapshot = JSON.stringify(Object.fromEntries(this.learnedBytes));
    const file = this.options.file;
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

  /** A load finished after a quiet start: measure it once a sample shows it (if nothing else moved). */
  expect(m: PendingMeasurement): void {
    this.pending.push(m);
  }

  /**
   * A new sample: attribute the change in used memory to a pending load when the sample surely shows it
   * and nothing else started or ended meanwhile (`quiet(token)`). Either way the load stops waiting.
   */
  observe(sample: GpuSample, quiet: (token: number) => boolean): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i];
      if (sample.at < p.loadedAt + this.options.metricsIntervalMs) continue;
      this.pending.splice(i, 1);
      if (!quiet(p.token)) continue;
      // Every device holds an instance: the largest change is the model's.
      let delta = 0;
      for (const d of sample.devices) {
        const was = p.before.devices.find((b) => b.uuid === d.uuid);
        if (was) delta = Math.max(delta, d.usedBytes - was.usedBytes);
      }
      if (delta > 0) {
        this.learn(p.key, delta);
        p.onLearned(delta);
      }
    }
  }

  /** Drops measurements that can no longer happen (Triton restarted, the agent stops). */
  forgetPending(): void {
    this.pending.length = 0;
  }
}
