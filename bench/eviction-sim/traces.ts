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

function shuffled(n: number, r: () => number): Int32Array {
  const a = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Samples ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^alpha (inverse CDF by binary search). */
function zipfSampler(n: number, alpha: number, r: () => number): () => number {
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

/** Stationary Zipf popularity; popularity is independent of size. */
export function zipfTrace(n: number, alpha: number, count: number, seed: number): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, alpha, r);
  return build(`zipf α=${alpha}`, count, 20, () => perm[sample()]);
}

/** Zipf 1.0 whose popular set slides over a day: ranks shift by `shiftPerHour` every hour. */
export function driftTrace(n: number, count: number, seed: number, shiftPerHour = 60): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, 1.0, r);
  const rate = count / 86_400;
  return build('drift over a day', count, rate, (_i, t) => {
    const hour = Math.floor(t / 3_600_000);
    return perm[(sample() + hour * shiftPerHour) % n];
  });
}

/** A hot set that is replaced every few minutes: recency should beat frequency here. */
export function churnTrace(n: number, count: number, seed: number, phaseRequests = 3000): Trace {
  const r = rng(seed);
  const sample = zipfSampler(n, 1.0, r);
  let perm = shuffled(n, r);
  return build('fast-changing hot set', count, 20, (i) => {
    if (i % phaseRequests === 0) perm = shuffled(n, r);
    return perm[sample()];
  });
}

/** Zipf 1.0 traffic with periodic scans that touch hundreds of cold models once each. */
export function scanTrace(n: number, count: number, seed: number): Trace {
  const r = rng(seed);
  const perm = shuffled(n, r);
  const sample = zipfSampler(n, 1.0, r);
  let scanPos = -1;
  let scanStart = 0;
  return build('scan-heavy', count, 20, (i) => {
    if (scanPos < 0 && i % 5000 === 0) {
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
