import {
  decideScaling,
  loadMsPerByte,
  SCALE_IN_PERIODS,
  type ScalerGpus,
  type ScalerModel,
} from '../../src/models/scaler';

const MiB = 1024 * 1024;
const PERIOD = 2000;

/** A model for one period: `busy` is the busy fraction of the period, summed over its instances. */
function model(name: string, devices: number[], busy: number, extra: Partial<ScalerModel> = {}): ScalerModel {
  return {
    name,
    busyMs: busy * PERIOD,
    requests: 0,
    // In steady state unless told otherwise: its history matches this period.
    smoothedRequests: extra.requests ?? 0,
    devices,
    movable: true,
    tensorrt: false,
    loadMs: 1000,
    coolPeriods: 0,
    ...extra,
  };
}

/** GPUs with `free[d]` bytes free, each model charged `charge`, and admission's victims per device. */
function gpus(
  free: number[],
  charge = 100 * MiB,
  victimsOn: Record<number, string[] | undefined> = {},
): ScalerGpus & { asked: [string, number, number][] } {
  const asked: [string, number, number][] = [];
  return {
    asked,
    count: free.length,
    chargeOf: () => charge,
    freeOn: (d) => free[d],
    roomOn: (name, d, bytes) => {
      asked.push([name, d, bytes]);
      return victimsOn[d];
    },
  };
}

describe('decideScaling (the adaptive multi-GPU decision)', () => {
  test('a busy model takes free room first: the GPU with the most', () => {
    const g = gpus([0, 50 * MiB, 300 * MiB, 200 * MiB]);
    const { moves } = decideScaling([model('hot', [0], 0.9)], g, PERIOD);
    expect(moves).toEqual([{ name: 'hot', devices: [0, 2], victims: [] }]);
    expect(g.asked).toEqual([]);
  });

  test('on full GPUs it sends victims away only when they cost less than the busy model gains', () => {
    // Gain: 0.95 - 0.7 = 0.25 of a period's time per ms. A victim asked for once per period with a 1 s
    // load costs 1/2000 * 1000 = 0.5: too dear. One nobody asked for costs nothing.
    const busy = model('hot', [0], 0.95);
    const dear = model('dear', [1], 0, { requests: 1, movable: false });
    const idle = model('idle', [1], 0, { movable: false });
    expect(decideScaling([busy, dear], gpus([0, 0], 100 * MiB, { 1: ['dear'] }), PERIOD).moves).toEqual([]);
    expect(decideScaling([busy, idle], gpus([0, 0], 100 * MiB, { 1: ['idle'] }), PERIOD).moves).toEqual([
      { name: 'hot', devices: [0, 1], victims: ['idle'] },
    ]);
  });

  test('a model in steady use that got no request in one period (its client stalled) still costs its reload', () => {
    const idle = gpus([1e12, 1e12]);
    let smoothed = 0;
    // Steady: 4 requests a period for ten periods, then one quiet period.
    for (let p = 0; p < 10; p++) {
      const d = decideScaling(
        [model('warm', [1], 0, { requests: 4, smoothedRequests: smoothed })],
        idle,
        PERIOD,
      );
      smoothed = d.smoothedRequests.get('warm') as number;
    }
    const warm = model('warm', [1], 0, { requests: 0, smoothedRequests: smoothed, movable: false });
    const busy = model('hot', [0], 0.95);
    // Its reload (1 s) at the smoothed rate costs more than the busy model gains: it stays.
    expect(decideScaling([busy, warm], gpus([0, 0], 100 * MiB, { 1: ['warm'] }), PERIOD).moves).toEqual([]);
    // Without its history the quiet period alone would have made it look free to evict.
    const fresh = { ...warm, smoothedRequests: 0 };
    expect(decideScaling([busy, fresh], gpus([0, 0], 100 * MiB, { 1: ['warm'] }), PERIOD).moves).toHaveLength(
      1,
    );
  });

  test('among GPUs it picks the one whose victims cost least', () => {
    const busy = model('hot', [0], 2.5); // far above 0.7: a large gain
    const ms = [
      model('a', [1], 0, { requests: 10, loadMs: 500, movable: false }),
      model('b', [2], 0, { requests: 1, loadMs: 500, movable: false }),
    ];
    const { moves } = decideScaling([busy, ...ms], gpus([0, 0, 0], MiB, { 1: ['a'], 2: ['b'] }), PERIOD);
    expect(moves).toEqual([{ name: 'hot', devices: [0, 2], victims: ['b'] }]);
  });

  test('a victim with no measured load time is costed at the median ms per byte of those measured', () => {
    const charge = 100 * MiB;
    const measured = [model('m1', [1], 0, { loadMs: 100 }), model('m2', [1], 0, { loadMs: 300 })];
    const g = gpus([0, 0], charge, { 1: ['unmeasured'] });
    expect(loadMsPerByte(measured, g)).toBe(300 / charge);
    // 1 request per period × (100 MiB × 300 ms / 100 MiB) / 2000 ms = 0.15 < gain 0.25: it goes.
    const unmeasured = model('unmeasured', [1], 0, { requests: 1, loadMs: undefined, movable: false });
    const { moves } = decideScaling([model('hot', [0], 0.95), ...measured, unmeasured], g, PERIOD);
    expect(moves).toEqual([{ name: 'hot', devices: [0, 1], victims: ['unmeasured'] }]);
  });

  test('a cool model gives a GPU back after SCALE_IN_PERIODS periods in a row, and the count resets', () => {
    const g = gpus([0, 0]);
    let cool = 0;
    const moved: number[] = [];
    for (let period = 1; period <= SCALE_IN_PERIODS * 2; period++) {
      const d = decideScaling([model('m', [0, 1], 0.1, { coolPeriods: cool })], g, PERIOD);
      cool = d.coolPeriods.get('m') ?? -1;
      if (d.moves.length > 0) {
        expect(d.moves).toEqual([{ name: 'm', devices: [0], victims: [] }]);
        moved.push(period);
      }
    }
    expect(moved).toEqual([SCALE_IN_PERIODS, SCALE_IN_PERIODS * 2]);
    // A busy period in between starts the count again.
    const busyAgain = decideScaling([model('m', [0, 1], 0.5, { coolPeriods: 1 })], g, PERIOD);
    expect(busyAgain.coolPeriods.get('m')).toBe(0);
    expect(busyAgain.moves).toEqual([]);
  });

  test('never: a TensorRT model shrinks, a model moves while not movable, anything moves on one GPU', () => {
    const trt = model('trt', [0, 1], 0, { tensorrt: true, coolPeriods: SCALE_IN_PERIODS });
    expect(decideScaling([trt], gpus([0, 0]), PERIOD).moves).toEqual([]);
    const pinned = model('pinned', [0], 5, { movable: false });
    expect(decideScaling([pinned], gpus([1e12, 1e12]), PERIOD).moves).toEqual([]);
    const everywhere = model('all', [0], 5, { devices: 'all' });
    expect(decideScaling([everywhere], gpus([1e12, 1e12]), PERIOD).moves).toEqual([]);
    expect(decideScaling([model('one', [0], 5)], gpus([1e12]), PERIOD).moves).toEqual([]);
    // On every GPU already: nothing more to take.
    expect(decideScaling([model('full', [0, 1], 5)], gpus([1e12, 1e12]), PERIOD).moves).toEqual([]);
  });
});
