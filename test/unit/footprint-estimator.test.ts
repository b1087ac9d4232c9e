import fc from 'fast-check';
import { FootprintEstimator } from '../../src/models/footprint-estimator';

const MiB = 1024 * 1024;

/** DCGM's reading of a device: whole MiB. */
const reading = (bytes: number) => Math.floor(bytes / MiB) * MiB;

/**
 * The oracle: ordinary least squares over every equation seen (base and footprints as unknowns), by the
 * normal equations and Gaussian elimination. Undefined when the system does not pin every unknown down.
 */
function leastSquares(rows: number[][], rhs: number[]): number[] | undefined {
  const n = rows[0].length;
  const a = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
  rows.forEach((row, k) => {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) a[i][j] += row[i] * row[j];
      a[i][n] += row[i] * rhs[k];
    }
  });
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    if (Math.abs(a[p][c]) < 1e-9) return undefined;
    [a[c], a[p]] = [a[p], a[c]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r][c] / a[c][c];
      for (let j = c; j <= n; j++) a[r][j] -= f * a[c][j];
    }
  }
  return a.map((row, i) => row[n] / row[i]);
}

describe('FootprintEstimator', () => {
  test('the first reading with nothing resident is the base; each later one corrects the model it holds', () => {
    const e = new FootprintEstimator();
    e.observe({ uuid: 'g', usedBytes: 512 * MiB, keys: [] });
    expect(e.base('g')).toBe(512 * MiB);
    e.prior('m', 10 * MiB, 64 * MiB);
    expect(e.measured('m')).toBe(false);
    e.observe({ uuid: 'g', usedBytes: 512 * MiB + 40 * MiB, keys: ['m'] });
    expect(Math.abs((e.charge('m') ?? 0) - 40 * MiB)).toBeLessThan(MiB);
    expect(e.measured('m')).toBe(true);
    // The base stays where the empty reading put it.
    expect(Math.abs((e.base('g') ?? 0) - 512 * MiB)).toBeLessThan(MiB / 4);
  });

  test('over-estimates come down: a 1.25 × guess of a 1 MiB model converges to 1 MiB', () => {
    const e = new FootprintEstimator();
    e.observe({ uuid: 'g', usedBytes: 100 * MiB, keys: [] });
    const models = ['a', 'b', 'c'];
    for (const m of models) e.prior(m, 1.25 * MiB, 64 * MiB);
    // Churn: the resident pair changes every sample.
    for (let i = 0; i < 30; i++) {
      const resident = [models[i % 3], models[(i + 1) % 3]];
      e.observe({ uuid: 'g', usedBytes: 100 * MiB + resident.length * MiB, keys: resident });
    }
    for (const m of models) expect(Math.abs((e.charge(m) ?? 0) - MiB)).toBeLessThan(0.05 * MiB);
  });

  test('an out-of-memory lower bound holds until the model is measured, then the measurement wins', () => {
    const e = new FootprintEstimator();
    e.observe({ uuid: 'g', usedBytes: 0, keys: [] });
    e.prior('m', 5 * MiB, 2 * MiB);
    e.needsMoreThan('m', 12 * MiB);
    expect(e.charge('m')).toBe(12 * MiB + 1);
    for (let i = 0; i < 6; i++) e.observe({ uuid: 'g', usedBytes: 9 * MiB, keys: ['m'] });
    expect(e.measured('m')).toBe(true);
    expect(Math.abs((e.charge('m') ?? 0) - 9 * MiB)).toBeLessThan(MiB);
  });

  test('growth after load: loosening lets the next readings raise a measured footprint', () => {
    const e = new FootprintEstimator();
    e.observe({ uuid: 'g', usedBytes: 0, keys: [] });
    e.measure('m', 20 * MiB);
    e.loosen('m', 0.25);
    for (let i = 0; i < 4; i++) e.observe({ uuid: 'g', usedBytes: 26 * MiB, keys: ['m'] });
    expect(Math.abs((e.charge('m') ?? 0) - 26 * MiB)).toBeLessThan(MiB);
  });

  test('property: under random churn it agrees with least squares over every reading (within 5 %)', () => {
    fc.assert(
      fc.property(
        fc.record({
          base: fc.integer({ min: 100, max: 900 }),
          sizes: fc.array(fc.double({ min: 8, max: 600, noNaN: true }), { minLength: 2, maxLength: 6 }),
          factors: fc.array(fc.double({ min: 0.3, max: 3, noNaN: true }), { minLength: 6, maxLength: 6 }),
          seed: fc.integer({ min: 1, max: 2 ** 30 }),
        }),
        ({ base, sizes, factors, seed }) => {
          let rnd = seed;
          const next = () => (rnd = (rnd * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
          const truth = sizes.map((s) => Math.round(s * MiB));
          const e = new FootprintEstimator();
          e.observe({ uuid: 'g', usedBytes: reading(base * MiB), keys: [] });
          // Priors off by the factors (0.3 to 3 × the truth), as file sizes and declarations are.
          truth.forEach((t, i) => e.prior(`m${i}`, t * factors[i], Math.max(t * factors[i], 64 * MiB)));
          const rows: number[][] = [[1, ...truth.map(() => 0)]];
          const rhs: number[] = [reading(base * MiB)];
          for (let k = 0; k < 60; k++) {
            const resident = truth.map(() => next() < 0.5);
            const keys = truth.map((_, i) => `m${i}`).filter((_, i) => resident[i]);
            const used = reading(base * MiB + truth.reduce((s, t, i) => s + (resident[i] ? t : 0), 0));
            e.observe({ uuid: 'g', usedBytes: used, keys });
            rows.push([1, ...resident.map((r) => (r ? 1 : 0))]);
            rhs.push(used);
          }
          const oracle = leastSquares(rows, rhs);
          if (!oracle) return; // the readings do not pin every unknown down
          oracle.slice(1).forEach((want, i) => {
            const got = e.charge(`m${i}`) ?? 0;
            // Readings move in whole MiB, and the filter forgets a little (models drift): a MiB or two of noise.
            expect(Math.abs(got - want)).toBeLessThanOrEqual(Math.max(0.05 * want, 2 * MiB));
          });
        },
      ),
      { numRuns: 200, seed: 42 },
    );
  });
});
