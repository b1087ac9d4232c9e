/** Seeded request traces for the eviction simulator. Time is in milliseconds. */

export interface SimModel {
  name: string;
  sizeBytes: number;
  /** Load time in ms: grows with size (fixed start-up cost plus reading and copying the weights). */
  loadCostMs: number;
}

export interface Trace {
  name: string;
  /** Model index per request. */
  requests: Int32Array;
  /** Arrival time per request (ms). */
  times: Float64Array;
}

const MB = 1e6;

/** mulberry32: a small, fast, seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(r: () => number): number {
  const u = 1 - r();
  const v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** 1,000 models with log-normal footprints between 50 MB and 5 GB and load costs that grow with size. */
export function makeModels(n: number, seed: number): SimModel[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const size = Math.min(5000 * MB, Math.max(50 * MB, Math.exp(Math.log(400 * MB) + 1.1 * gaussian(r))));
    // ~0.5 s to start a backend instance, ~1.5 s per GB to read and place the weights, ±20%.
    const cost = (500 + (1.5 * size) / MB) * (0.8 + 0.4 * r());
    return { name: `m${i}`, sizeBytes: Math.round(size), loadCostMs: cost };
  });
}

export function shuffled(n: number, r: () => number): Int32Array {
  const a = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Samples ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^alpha (inverse CDF by binary search). */
export function zipfSampler(n: number, alpha: number, r: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / (k + 1) ** alpha;
    cdf[k] = sum;
  }
  return () => {
    const x = r() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/**
 * Requests arrive `ratePerSec` apart in time; what a trace does over time (popularity drifting by the
 * hour, sessions of minutes, a deploy) is written in wall time, so the same trace at 1 and at 1,000
 * requests per second puts very different numbers of requests between its changes. That is what tests a
 * policy's memory for rate independence.
 */
function build(
  name: string,
  count: number,
  ratePerSec: number,
  pick: (i: number, t: number) => number,
): Trace {
  const requests = new Int32Array(count);
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    times[i] = (i * 1000) / ratePerSec;
    requests[i] = pick(i, times[i]);
  }
  return { name, requests, times };
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Stationary Zipf popularity; popularity is independent of size. */
export function zipfTrace(n: number, alpha: number, count: number, rate: number, seed: number): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, alpha, r);
  return build(`zipf α=${alpha}`, count, rate, () => perm[sample()]);
}

/** Zipf 1.0 whose popular set slides by `shiftPerHour` ranks every hour. */
export function driftTrace(n: number, count: number, rate: number, seed: number, shiftPerHour = 60): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, 1.0, r);
  return build('drifting popularity', count, rate, (_i, t) => {
    const hour = Math.floor(t / HOUR);
    return perm[(sample() + hour * shiftPerHour) % n];
  });
}

/** Zipf 1.0 over a hot set that is replaced every `phaseMs`: recency should beat frequency here. */
export function churnTrace(
  n: number,
  count: number,
  rate: number,
  seed: number,
  phaseMs = 5 * MINUTE,
): Trace {
  const r = rng(seed);
  const sample = zipfSampler(n, 1.0, r);
  let perm = shuffled(n, r);
  let phase = 0;
  return build('fast-changing hot set', count, rate, (_i, t) => {
    if (Math.floor(t / phaseMs) !== phase) {
      phase = Math.floor(t / phaseMs);
      perm = shuffled(n, r);
    }
    return perm[sample()];
  });
}

/** Zipf 1.0 traffic; every `everyMs` a batch job touches 400 cold models once each (every other request). */
export function scanTrace(n: number, count: number, rate: number, seed: number, everyMs = HOUR): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, 1.0, r);
  let scanPos = -1;
  let scanStart = 0;
  let lastScan = -1;
  return build('scan-heavy', count, rate, (i, t) => {
    if (scanPos < 0 && Math.floor(t / everyMs) !== lastScan) {
      lastScan = Math.floor(t / everyMs);
      scanPos = 0;
      scanStart = Math.floor(r() * n);
    }
    if (scanPos >= 0 && i % 2 === 0) {
      const m = (scanStart + scanPos++) % n;
      if (scanPos >= 400) scanPos = -1;
      return m;
    }
    return perm[sample()];
  });
}

/**
 * Concurrently active sessions that come and go: a session starts on average every `meanMs ÷ concurrent`,
 * lasts an exponentially distributed `meanMs`, and works with one model picked uniformly among all of
 * them (a user, a notebook, a batch job). 85% of requests come from a random open session, 15% are
 * background Zipf 1.0 traffic. A model's past says little about its future here; recency wins.
 */
export function sessionsTrace(
  n: number,
  count: number,
  rate: number,
  seed: number,
  concurrent = 8,
  meanMs = 5 * MINUTE,
): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, 1.0, r);
  const exp = (mean: number) => -Math.log(1 - r()) * mean;
  const open: { model: number; until: number }[] = [];
  let nextStart = 0;
  return build('sessions come and go', count, rate, (_i, t) => {
    while (nextStart <= t) {
      open.push({ model: Math.floor(r() * n), until: nextStart + exp(meanMs) });
      nextStart += exp(meanMs / concurrent);
    }
    for (let k = open.length - 1; k >= 0; k--) if (open[k].until <= t) open.splice(k, 1);
    if (open.length > 0 && r() < 0.85) return open[Math.floor(r() * open.length)].model;
    return perm[sample()];
  });
}

/**
 * A burst of new models after a deploy: Zipf 1.0 traffic over 900 models; at a third and at two thirds of
 * the trace a deploy replaces the 50 most popular models with new versions (models never requested
 * before), which take over their popularity at once. Long frequency memories cling to the old versions.
 */
export function deployTrace(n: number, count: number, rate: number, seed: number, replaced = 50): Trace {
  const r = rng(seed);
  const base = n - 2 * replaced;
  const perm = shuffled(base, r);
  const sample = zipfSampler(base, 1.0, r);
  const duration = (count * 1000) / rate;
  return build('deploy of new models', count, rate, (_i, t) => {
    const k = sample();
    const deploys = Math.min(2, Math.floor((3 * t) / duration));
    if (k < replaced && deploys > 0) return base + (deploys - 1) * replaced + k;
    return perm[k];
  });
}
