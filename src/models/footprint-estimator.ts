/**
 * What each model takes on a GPU, and what each GPU uses before any model (its base: CUDA context, Triton's
 * memory pool, other processes), learned from every GPU sample in both directions.
 *
 * Why a filter and not a measurement per load: in production `memory_usage` is empty for PyTorch (and for
 * every backend unless Triton's memory tracker is on), and under churn no load is ever alone on a device,
 * so "used after − used before" is rarely available. But every sample of a device whose resident set is
 * settled is an equation — used = base + Σ footprints of what is resident there — and the resident sets
 * differ from sample to sample. This solves those equations as they come with a Kalman filter whose
 * covariance is kept diagonal: each unknown has a mean and a variance; a sample's residual is split among
 * the unknowns of its equation in proportion to their variances, and each variance shrinks by what the
 * sample told about it. A model never measured has a wide prior (its declared size, or its file's bytes ×
 * a factor), so a residual goes mostly to it; a well-known base or model barely moves. Estimates move down
 * as well as up, and models in use drift a little every sample, so nothing is frozen for good. A figure
 * the backend reports (ModelStatistics.memory_usage) is a measurement as precise as a reading; a model
 * that ran out of memory gets a lower bound that holds until a few settled readings of it have been seen.
 *
 * Pure: no I/O, no clock. Keys are the agent's footprint keys (an artifact version); devices are UUIDs.
 */
export interface EstimatorOptions {
  /** Standard deviation of one reading: DCGM's figures are whole MiB. */
  readingSdBytes: number;
  /** Relative drift allowed per sample of a model in use (growth after load, allocator caches). */
  driftPerSample: number;
  /** A model is measured once its standard deviation is below this share of its mean ... */
  measuredShare: number;
  /** ... or below this many bytes. */
  measuredSdBytes: number;
}

export const DEFAULT_ESTIMATOR_OPTIONS: EstimatorOptions = {
  readingSdBytes: 0.5 * 1024 * 1024,
  driftPerSample: 0.002,
  measuredShare: 0.05,
  measuredSdBytes: 1024 * 1024,
};

interface Unknown {
  mean: number;
  variance: number;
}

interface ModelUnknown extends Unknown {
  /** It ran out of memory with this much: it needs more (until measured). */
  bound: number;
  /** Settled readings still to see before the bound gives way to what they say. */
  boundReadings: number;
}

/** Settled readings of a model that must follow an out-of-memory before its bound stops counting. */
const BOUND_READINGS = 3;

/** One device's equation: what it used, and the models resident on it (a key per instance set). */
export interface DeviceEquation {
  uuid: string;
  usedBytes: number;
  /** Footprint keys of the models resident on the device (each charged once per device). */
  keys: readonly string[];
}

/** Settled readings of one device kept for sweeps (the diagonal filter alone couples unknowns slowly). */
const WINDOW = 32;
/** Mean-only passes over a device's window after each reading, and how far each moves toward it. */
const SWEEPS = 2;
const RELAXATION = 0.5;

export class FootprintEstimator {
  private readonly models = new Map<string, ModelUnknown>();
  private readonly bases = new Map<string, Unknown>();
  /** Recent readings per device, replayed (means only) so coupled unknowns settle as least squares would. */
  private readonly windows = new Map<string, DeviceEquation[]>();

  constructor(readonly options: EstimatorOptions = DEFAULT_ESTIMATOR_OPTIONS) {}

  /**
   * What is believed of a model before it has been measured: `bytes`, give or take `sdBytes`. Ignored once
   * the model is known (a prior never overrides what samples taught).
   */
  prior(key: string, bytes: number, sdBytes: number): void {
    if (this.models.has(key)) return;
    this.models.set(key, {
      mean: Math.max(0, bytes),
      variance: sdBytes * sdBytes,
      bound: 0,
      boundReadings: 0,
    });
  }

  /** True when the model has a belief (a prior or more). */
  has(key: string): boolean {
    return this.models.has(key);
  }

  /**
   * A figure measured as precisely as a reading (reported by the backend, or learned on an earlier run):
   * it replaces what was believed, lower bound included; later samples still refine it.
   */
  measure(key: string, bytes: number): void {
    const sd = this.options.readingSdBytes;
    this.models.set(key, { mean: Math.max(0, bytes), variance: sd * sd, bound: 0, boundReadings: 0 });
    this.forgetReadingsOf(key);
  }

  /** Readings taken before a model changed (it grew, it was re-measured) no longer describe it. */
  private forgetReadingsOf(key: string): void {
    for (const [uuid, w] of this.windows) {
      const kept = w.filter((eq) => !eq.keys.includes(key));
      if (kept.length !== w.length) this.windows.set(uuid, kept);
    }
  }

  /** The model ran out of memory having `bytes`: it needs more, at least until it has been measured. */
  needsMoreThan(key: string, bytes: number): void {
    const m = this.models.get(key);
    if (!m) {
      this.models.set(key, {
        mean: bytes + 1,
        variance: (bytes + 1) ** 2,
        bound: bytes + 1,
        boundReadings: BOUND_READINGS,
      });
      return;
    }
    m.bound = Math.max(m.bound, bytes + 1);
    m.boundReadings = BOUND_READINGS;
    this.forgetReadingsOf(key);
    // What it was believed to take was wrong: believe less firmly.
    m.variance = Math.max(m.variance, (m.bound - Math.min(m.mean, m.bound)) ** 2, (0.5 * m.bound) ** 2);
  }

  /**
   * The model is about to use more than it did (a larger batch than it has run before): its figure is
   * loosened by `share` of itself, so the next samples can move it.
   */
  loosen(key: string, share: number): void {
    const m = this.models.get(key);
    if (!m) return;
    m.variance += (share * Math.max(m.mean, this.options.measuredSdBytes)) ** 2;
    this.forgetReadingsOf(key);
  }

  /** What to charge for a model: its estimate, or the lower bound an out-of-memory taught while unmeasured. */
  charge(key: string): number | undefined {
    const m = this.models.get(key);
    if (!m) return undefined;
    return Math.ceil(m.boundReadings > 0 ? Math.max(m.mean, m.bound) : m.mean);
  }

  /** Mean and standard deviation of a model's footprint, if known. */
  belief(key: string): { bytes: number; sdBytes: number; bound: number } | undefined {
    const m = this.models.get(key);
    return m && { bytes: m.mean, sdBytes: Math.sqrt(m.variance), bound: m.bound };
  }

  /** True once the model's footprint is known closely enough to stand on its own. */
  measured(key: string): boolean {
    const m = this.models.get(key);
    if (!m) return false;
    if (m.boundReadings > 0) return false;
    const sd = Math.sqrt(m.variance);
    return sd <= this.options.measuredSdBytes || sd <= this.options.measuredShare * m.mean;
  }

  /** A device's base (what it uses with no model), when known. */
  base(uuid: string): number | undefined {
    return this.bases.get(uuid)?.mean;
  }

  /**
   * One settled device reading. The first reading of a device with nothing resident fixes its base;
   * every other one corrects the base and the resident models' footprints by the residual.
   */
  observe(eq: DeviceEquation): void {
    const { readingSdBytes, driftPerSample } = this.options;
    const r2 = readingSdBytes * readingSdBytes;
    let base = this.bases.get(eq.uuid);
    const models = eq.keys.map((k) => this.models.get(k)).filter((m): m is ModelUnknown => m !== undefined);
    if (models.length !== eq.keys.length) return; // a resident model nothing is known of: no equation
    if (!base) {
      const rest = models.reduce((s, m) => s + m.mean, 0);
      // Nothing resident: the reading is the base. Otherwise a rough start the residuals will correct.
      base = {
        mean: Math.max(0, eq.usedBytes - rest),
        variance: models.length === 0 ? r2 : Math.max(r2, (0.1 * eq.usedBytes) ** 2),
      };
      this.bases.set(eq.uuid, base);
      if (models.length === 0) return;
    }
    // Models in use drift a little each sample (allocator caches, workspaces): never frozen for good.
    for (const m of models) m.variance += (driftPerSample * m.mean) ** 2;
    const predicted = base.mean + models.reduce((s, m) => s + m.mean, 0);
    const residual = eq.usedBytes - predicted;
    const s = base.variance + models.reduce((acc, m) => acc + m.variance, 0) + r2;
    // With nothing resident, a reading far from the base is memory on its way somewhere (a failed load's
    // cache, a release not yet shown), not the GPU's own: the ledger counts it as unexplained instead.
    if (models.length === 0 && Math.abs(residual) > 4 * Math.sqrt(s)) return;
    const step = (u: Unknown) => {
      const gain = u.variance / s;
      u.mean = Math.max(0, u.mean + gain * residual);
      u.variance = Math.max(1, u.variance - gain * u.variance);
    };
    step(base);
    for (const m of models) {
      step(m);
      if (m.boundReadings > 0) m.boundReadings--;
    }
    // Replay the device's recent readings (means only, the variances already counted them): the
    // diagonal filter alone moves unknowns that always appear together too slowly toward their split.
    const window = this.windows.get(eq.uuid) ?? [];
    window.push(eq);
    if (window.length > WINDOW) window.shift();
    this.windows.set(eq.uuid, window);
    for (let pass = 0; pass < SWEEPS; pass++)
      for (const past of window) {
        const ms = past.keys.map((k) => this.models.get(k)).filter((m): m is ModelUnknown => m !== undefined);
        if (ms.length !== past.keys.length) continue;
        const res = past.usedBytes - base.mean - ms.reduce((acc, m) => acc + m.mean, 0);
        const sum = base.variance + ms.reduce((acc, m) => acc + m.variance, 0) + r2;
        base.mean = Math.max(0, base.mean + (RELAXATION * base.variance * res) / sum);
        for (const m of ms) m.mean = Math.max(0, m.mean + (RELAXATION * m.variance * res) / sum);
      }
  }

  /** Every footprint known well enough to keep across restarts. */
  measuredFigures(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, m] of this.models) if (this.measured(k)) out.set(k, Math.round(m.mean));
    return out;
  }
}
