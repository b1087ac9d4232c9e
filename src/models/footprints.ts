import * as fsp from 'node:fs/promises';
import { readSmallFile } from '../files';
import * as path from 'node:path';
import { DEFAULT_ESTIMATOR_OPTIONS, FootprintEstimator, type DeviceEquation } from './footprint-estimator';

export interface FootprintOptions {
  /** Estimated GPU bytes = artifact bytes × this, until the model has been measured. */
  factor: number;
  /** Where measured footprints are kept across restarts. */
  file: string;
  /** How finely the GPU figures are reported (DCGM: whole MiB): the noise of one reading. */
  readingStepBytes?: number;
}

const MiB = 1024 * 1024;
/** How uncertain a footprint declared in the config is, as a share of it. */
const DECLARED_SD_SHARE = 0.25;
/** Measured models it takes before their footprint-to-file ratios replace the configured factor. */
const LEARNED_FACTOR_AFTER = 5;
/** The least uncertainty of a footprint guessed from the artifact's bytes (a file is not a footprint). */
const GUESSED_SD_FLOOR_BYTES = 64 * MiB;

/**
 * What each artifact version takes on the GPU, and what each GPU uses before any model: the beliefs of a
 * `FootprintEstimator`, started from a prior (declared in the config, else the artifact's bytes × a
 * factor), corrected by every settled GPU sample, set outright by a figure the backend reports, floored
 * by what an out-of-memory failure taught until measured. Measured figures are kept on disk (atomically,
 * in the background) and start the next run as measurements.
 */
export class Footprints {
  readonly estimator: FootprintEstimator;
  private persisting: Promise<void> = Promise.resolve();
  private written = '';

  constructor(readonly options: FootprintOptions) {
    const step = options.readingStepBytes ?? MiB;
    this.estimator = new FootprintEstimator({
      ...DEFAULT_ESTIMATOR_OPTIONS,
      readingSdBytes: step / 2,
      measuredSdBytes: step,
    });
  }

  /** Loads measured footprints from disk (a missing or unreadable file means none yet). */
  async open(): Promise<void> {
    try {
      // Only a regular file of sane size is read: a FIFO or a link to /dev/zero there would hang the start.
      const text = await readSmallFile(this.options.file, 64 * 1024 * 1024);
      if (text === undefined) throw new Error('not a regular file of at most 64 MiB');
      const data = JSON.parse(text) as Record<string, unknown>;
      for (const [k, v] of Object.entries(data))
        if (typeof v === 'number' && Number.isFinite(v) && v >= 0) this.estimator.measure(k, v);
      this.lastWritten = this.estimator.measuredFigures();
      this.written = JSON.stringify(Object.fromEntries(this.lastWritten));
    } catch {
      // none yet
    }
  }

  /** True once the footprint is known closely enough to stand on its own. */
  learned(key: string): boolean {
    return this.estimator.measured(key);
  }

  /**
   * The GPU bytes to charge for a model (on each device it occupies): what is believed of it, or the
   * lower bound an out-of-memory taught while it is unmeasured. Starts its belief on first use.
   */
  estimate(key: string, declaredBytes: number | undefined, artifactBytes: number): number {
    if (!this.estimator.has(key)) {
      if (declaredBytes !== undefined)
        this.estimator.prior(key, declaredBytes, DECLARED_SD_SHARE * declaredBytes + MiB);
      else {
        const guess = Math.ceil(Math.max(1, artifactBytes) * this.guessFactor());
        this.estimator.prior(key, guess, Math.max(guess, GUESSED_SD_FLOOR_BYTES));
      }
    }
    if (declaredBytes === undefined && artifactBytes > 0) this.artifactBytes.set(key, artifactBytes);
    return this.estimator.charge(key) ?? 0;
  }

  /**
   * What a model's file size says of its footprint before it is measured: the configured factor until a
   * few models have been measured, then what those measured say — the ratio of footprint to file bytes
   * that three in four of them stay under (a guess that errs large: a load that does not fit costs more
   * than a model kept out a little longer). Learned from the population, for the next model.
   */
  private guessFactor(): number {
    const ratios: number[] = [];
    for (const [key, bytes] of this.artifactBytes) {
      if (!this.estimator.measured(key)) continue;
      const b = this.estimator.belief(key);
      if (b && bytes > 0) ratios.push(b.bytes / bytes);
    }
    if (ratios.length < LEARNED_FACTOR_AFTER) return this.options.factor;
    ratios.sort((a, b) => a - b);
    return Math.max(this.options.factor / 4, ratios[Math.floor(0.75 * (ratios.length - 1))]);
  }

  /** A load ran out of memory having `bytes`: it needs more (until measured). */
  needsMoreThan(key: string, bytes: number): void {
    this.estimator.needsMoreThan(key, bytes);
  }

  /** A figure the backend reported (ModelStatistics.memory_usage): as good as a reading. */
  measure(key: string, bytes: number): void {
    this.estimator.measure(key, Math.round(bytes));
    this.persist();
  }

  /** The model will use more than before (a larger batch than it has run): let samples move it. */
  loosen(key: string, share: number): void {
    this.estimator.loosen(key, share);
  }

  /**
   * A request of `batch` ran on the model: returns true when no earlier request of this artifact version
   * was that large (its memory grows: PyTorch keeps what the largest batch needed).
   */
  noteBatch(key: string, batch: number): boolean {
    if (batch <= (this.largestBatch.get(key) ?? 0)) return false;
    this.largestBatch.set(key, batch);
    return true;
  }

  /** The largest batch any load of this artifact version has run (0: none yet). */
  largestBatchOf(key: string): number {
    return this.largestBatch.get(key) ?? 0;
  }

  /** Settled device readings: each corrects the bases and the resident footprints. */
  observe(equations: readonly DeviceEquation[]): void {
    for (const eq of equations) this.estimator.observe(eq);
    if (equations.length > 0) this.persist();
  }

  /** A device's base (what it uses with no model), when known. */
  base(uuid: string): number | undefined {
    return this.estimator.base(uuid);
  }

  /** Writes the measured figures when they changed by more than a percent or a MiB. */
  private persist(): void {
    const figures = this.estimator.measuredFigures();
    const last = this.lastWritten;
    let changed = figures.size !== last.size;
    if (!changed)
      for (const [k, v] of figures) {
        const was = last.get(k);
        if (was === undefined || Math.abs(v - was) > Math.max(MiB, 0.01 * was)) {
          changed = true;
          break;
        }
      }
    if (!changed) return;
    this.lastWritten = figures;
    const snapshot = JSON.stringify(Object.fromEntries(figures));
    if (snapshot === this.written) return;
    this.written = snapshot;
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

  private lastWritten = new Map<string, number>();
  private readonly largestBatch = new Map<string, number>();
  /** Artifact bytes of the models guessed from their size (for the learned factor). */
  private readonly artifactBytes = new Map<string, number>();

  /** Resolves when measured footprints are on disk. */
  flushed(): Promise<void> {
    return this.persisting;
  }
}
