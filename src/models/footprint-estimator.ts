/**
 * What each model takes on a GPU, and what each GPU uses before any model (its base: CUDA context, Triton's
 * memory pool, other processes), learned from every GPU sample in both directions.
 *
 * Why a filter and not a measurement per load: in production `memory_usage` is empty for PyTorch (and for
 * every backend unless Triton's memory tracker is on), and under churn no load is ever alone on a device,
 * so "used after − used before" is rarely available. But every reading of a device is an equation — used =
 * base + Σ footprints of what is resident there + what is in flight — and the resident sets differ from
 * reading to reading. Each device runs a Kalman filter over its base and the models it has held lately,
 * with their full covariance: a reading's residual is split among the unknowns by what is known of each
 * and of how they go together, so a model that comes and goes is told apart from those that stay, as least
 * squares over the readings would. A model never measured starts from a wide prior (its declared size, or
 * its file's bytes × a factor); models in use drift a little at every reading, so nothing is frozen for
 * good. A figure the backend reports (ModelStatistics.memory_usage) is a measurement as precise as a
 * reading; a model that ran out of memory gets a lower bound that holds until a few readings of it.
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
  /** What else is in flight there (loads part way, unloads, recent releases), at its expected value. */
  offsetBytes?: number;
  /** Its variance, bytes²: a reading taken during churn teaches less firmly. */
  offsetVariance?: number;
  /**
   * Some resident model has not run since it loaded (it may grow at its first request): the reading may
   * raise footprints, never lower them.
   */
  raiseOnly?: boolean;
  /**
   * Bytes that may or may not still show (memory released a while ago, by a lag not seen before): a reading
   * above the estimate by up to this much teaches nothing; below it teaches as usual.
   */
  slackBytes?: number;
}

/** Most models a device's filter keeps together with their covariance (those seen longest ago leave). */
const DEVICE_UNKNOWNS = 96;

/**
 * One device's joint belief: index 0 is its base, the others the models it has held lately; `cov` is
 * their covariance. Each unknown's mean lives in the shared belief (a model moves between devices).
 */
interface DeviceFilter {
  keys: string[];
  cov: number[][];
  /** When (in readings of this device) each model was last in an equation. */
  lastSeen: number[];
  readings: number;
}

export class FootprintEstimator {
  private readonly models = new Map<string, ModelUnknown>();
  private readonly bases = new Map<string, Unknown>();
  private readonly filters = new Map<string, DeviceFilter>();

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
    this.resetCovariance(key);
  }

  /**
   * A model's belief changed from outside the readings (measured, bounded, loosened): in every device's
   * filter its variance is the belief's and it no longer goes together with the others.
   */
  private resetCovariance(key: string): void {
    const m = this.models.get(key);
    if (!m) return;
    for (const f of this.filters.values()) {
      const i = f.keys.indexOf(key);
      if (i < 0) continue;
      for (let j = 0; j < f.keys.length; j++) {
        f.cov[i][j] = 0;
        f.cov[j][i] = 0;
      }
      f.cov[i][i] = m.variance;
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
    // What it was believed to take was wrong: believe less firmly.
    m.variance = Math.max(m.variance, (m.bound - Math.min(m.mean, m.bound)) ** 2, (0.5 * m.bound) ** 2);
    this.resetCovariance(key);
  }

  /**
   * The model is about to use more than it did (a larger batch than it has run before): its figure is
   * loosened by `share` of itself, so the next samples can move it.
   */
  loosen(key: string, share: number): void {
    const m = this.models.get(key);
    if (!m) return;
    m.variance += (share * Math.max(m.mean, this.options.measuredSdBytes)) ** 2;
    this.resetCovariance(key);
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
   * One reading of a device. The first reading of a device with nothing on it fixes its base; every other
   * one corrects the base and the resident models' footprints by the residual, through the device's filter.
   */
  observe(eq: DeviceEquation): void {
    const { readingSdBytes, driftPerSample } = this.options;
    const noise = readingSdBytes * readingSdBytes + (eq.offsetVariance ?? 0);
    const used = eq.usedBytes - (eq.offsetBytes ?? 0);
    const models = eq.keys.map((k) => this.models.get(k));
    if (models.some((m) => m === undefined)) return; // a resident model nothing is known of: no equation
    let base = this.bases.get(eq.uuid);
    if (!base) {
      const rest = models.reduce((sum, m) => sum + (m as ModelUnknown).mean, 0);
      // Nothing resident: the reading is the base. Otherwise a rough start the residuals will correct.
      const quiet = models.length === 0 && (eq.offsetVariance ?? 0) === 0;
      base = {
        mean: Math.max(0, used - rest),
        variance: quiet ? noise : Math.max(noise, (0.1 * eq.usedBytes) ** 2),
      };
      this.bases.set(eq.uuid, base);
      if (quiet) return;
    }
    const f = this.filterOf(eq.uuid, base);
    f.readings++;
    // The unknowns of this reading in the filter (a model resident twice counts twice).
    for (const k of eq.keys) f.lastSeen[this.slot(f, k)] = f.readings;
    const h = new Array<number>(f.keys.length).fill(0);
    h[0] = 1;
    for (const k of eq.keys) h[f.keys.indexOf(k)] += 1;
    const n = f.keys.length;
    const unknown = (i: number) => (i === 0 ? base : (this.models.get(f.keys[i]) as ModelUnknown));
    // Models in use drift a little at each reading (allocator caches, workspaces): never frozen for good.
    for (let i = 1; i < n; i++)
      if (h[i] > 0) {
        f.cov[i][i] += (driftPerSample * unknown(i).mean) ** 2;
        unknown(i).variance = f.cov[i][i];
      }
    let predicted = 0;
    for (let i = 0; i < n; i++) predicted += h[i] * unknown(i).mean;
    const slack = eq.slackBytes ?? 0;
    const raw = used - predicted;
    const residual = raw > 0 ? Math.max(0, raw - slack) : raw;
    if (raw > 0 && residual === 0) return;
    // P hᵀ and h P hᵀ.
    const ph = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (h[j] !== 0) ph[i] += f.cov[i][j] * h[j];
    let hph = 0;
    for (let i = 0; i < n; i++) hph += h[i] * ph[i];
    const s = hph + noise;
    // With nothing resident, a reading far from the base is memory on its way somewhere (a failed load's
    // cache, a release not yet shown), not the GPU's own: the ledger counts it as unexplained instead.
    if (eq.keys.length === 0 && Math.abs(residual) > 4 * Math.sqrt(s)) return;
    // A reading taken while loads and unloads are in flight rests on a guess about them (how far a load
    // has got, whether a release shows yet). It may raise footprints that are too small — the safe way to
    // be wrong — but never lower them: a guess that ran high would make one too small, and the next load
    // would run out of memory. Quiet readings move footprints both ways.
    if (((eq.offsetVariance ?? 0) > 0 || eq.raiseOnly === true) && residual < 0) return;
    for (let i = 0; i < n; i++) {
      const u = unknown(i);
      u.mean = Math.max(0, u.mean + (ph[i] / s) * residual);
    }
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) f.cov[i][j] -= (ph[i] * ph[j]) / s;
    for (let i = 0; i < n; i++) {
      f.cov[i][i] = Math.max(1, f.cov[i][i]);
      unknown(i).variance = f.cov[i][i];
    }
    for (const k of eq.keys) {
      const m = this.models.get(k) as ModelUnknown;
      if (m.boundReadings > 0) m.boundReadings--;
    }
  }

  private filterOf(uuid: string, base: Unknown): DeviceFilter {
    let f = this.filters.get(uuid);
    if (!f) {
      f = { keys: [''], cov: [[base.variance]], lastSeen: [0], readings: 0 };
      this.filters.set(uuid, f);
    }
    return f;
  }

  /** The index of model `key` in the device's filter, adding it (uncorrelated) and making room if needed. */
  private slot(f: DeviceFilter, key: string): number {
    const at = f.keys.indexOf(key);
    if (at >= 0) return at;
    if (f.keys.length > DEVICE_UNKNOWNS) {
      // The model seen longest ago leaves: its own belief stays, its ties to the others go.
      let oldest = 1;
      for (let i = 2; i < f.keys.length; i++) if (f.lastSeen[i] < f.lastSeen[oldest]) oldest = i;
      f.keys.splice(oldest, 1);
      f.lastSeen.splice(oldest, 1);
      f.cov.splice(oldest, 1);
      for (const row of f.cov) row.splice(oldest, 1);
    }
    const m = this.models.get(key) as ModelUnknown;
    for (const row of f.cov) row.push(0);
    f.cov.push([...new Array<number>(f.keys.length).fill(0), m.variance]);
    f.keys.push(key);
    f.lastSeen.push(f.readings);
    return f.keys.length - 1;
  }

  /** Every footprint known well enough to keep across restarts. */
  measuredFigures(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, m] of this.models) if (this.measured(k)) out.set(k, Math.round(m.mean));
    return out;
  }
}
