import fc from 'fast-check';
import {
  AdaptivePolicy,
  AgedGdsfPolicy,
  GdsfPolicy,
  IndexedMinHeap,
  LruPolicy,
  ShadowCache,
  createPolicy,
  policyFromSettings,
  policyNames,
  type EvictionPolicy,
} from '../../src/models/eviction';
import { loadConfig } from '../../src/config';

describe('IndexedMinHeap (property tests against a brute-force oracle)', () => {
  type Op = { kind: 'set'; key: number; prio: number } | { kind: 'delete'; key: number } | { kind: 'pop' };
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('set' as const),
      key: fc.integer({ min: 0, max: 30 }),
      prio: fc.integer({ min: -50, max: 50 }),
    }),
    fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }) }),
    fc.record({ kind: fc.constant('pop' as const) }),
  );

  test('pop, delete, priority changes and ascending order match a sorted list', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops: Op[]) => {
        const heap = new IndexedMinHeap();
        // Oracle: key -> [priority, insertion sequence]
        const oracle = new Map<string, [number, number]>();
        let seq = 0;
        const sorted = () =>
          [...oracle.entries()].sort((a, b) => a[1][0] - b[1][0] || a[1][1] - b[1][1]).map((e) => e[0]);
        for (const o of ops) {
          if (o.kind === 'set') {
            const k = `k${o.key}`;
            const had = oracle.get(k);
            oracle.set(k, [o.prio, had ? had[1] : seq++]);
            heap.set(k, o.prio);
          } else if (o.kind === 'delete') {
            const k = `k${o.key}`;
            expect(heap.delete(k)).toBe(oracle.delete(k));
          } else {
            const expected = sorted()[0];
            expect(heap.pop()).toBe(expected);
            if (expected !== undefined) oracle.delete(expected);
          }
          expect(heap.size).toBe(oracle.size);
        }
        expect([...heap.ascending()]).toEqual(sorted());
      }),
      { numRuns: 300 },
    );
  });
});

/** Brute force: LRU victims are the least recently used evictable residents, oldest first. */
describe('policies', () => {
  const GB = 1e9;

  test('LRU evicts in recency order and skips pinned models', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 100 }),
        fc.integer({ min: 0, max: 9 }),
        (seq, pinned) => {
          const p = new LruPolicy();
          const last = new Map<string, number>();
          seq.forEach((m, t) => {
            p.onAccess(`m${m}`, GB, 1, t);
            p.onAdmit(`m${m}`, t);
            last.set(`m${m}`, t);
          });
          const evictable = (m: string) => m !== `m${pinned}`;
          const expected = [...last.entries()]
            .filter(([m]) => evictable(m))
            .sort((a, b) => a[1] - b[1])
            .map(([m]) => m);
          expect(p.chooseVictims(expected.length * GB, seq.length, evictable)).toEqual(expected);
          expect(p.chooseVictims(1, seq.length, evictable)).toEqual(expected.slice(0, 1));
        },
      ),
    );
  });

  test('aged GDSF ranks by frequency decayed per request × cost ÷ size (brute force over the same requests)', () => {
    const halfLife = 20;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 5000 })), {
          minLength: 1,
          maxLength: 120,
        }),
        (reqs) => {
          const p = new AgedGdsfPolicy({ churnGuard: 0, halfLife });
          const size = (m: number) => (m + 1) * 1e8;
          const cost = (m: number) => 100 + m * 37;
          // Oracle: the request numbers at which each model was used; wall time must not matter.
          const ticks = new Map<number, number[]>();
          let t = 0;
          reqs.forEach(([m, dt], i) => {
            t += dt;
            p.onAccess(`m${m}`, size(m), cost(m), t);
            p.onAdmit(`m${m}`, t);
            ticks.set(m, [...(ticks.get(m) ?? []), i + 1]);
          });
          const T = reqs.length;
          const value = (m: number) =>
            ((ticks.get(m) as number[]).reduce((a, k) => a + 2 ** (-(T - k) / halfLife), 0) * cost(m)) /
            size(m);
          const victims = p.chooseVictims(Number.MAX_SAFE_INTEGER, t, () => true);
          const values = victims.map((v) => value(Number(v.slice(1))));
          for (let i = 1; i < values.length; i++)
            expect(values[i]).toBeGreaterThanOrEqual(values[i - 1] * (1 - 1e-9));
          expect(new Set(victims)).toEqual(new Set([...ticks.keys()].map((m) => `m${m}`)));
        },
      ),
    );
  });

  test.each(['adaptive', 'gdsf-aged'] as const)(
    'the default %s policy is rate independent: the same requests at 1 and at 1,000 per second choose the same victims',
    (policyName) => {
      const settings = { ...loadConfig({ TRITON_MODEL_REPOSITORY: '/models' }), evictionPolicy: policyName };
      fc.assert(
        fc.property(
          // Skewed popularity, or a stable hot set among one-off models: frequency experts lead at times.
          fc.oneof(
            fc.array(
              fc.integer({ min: 0, max: 999 }).map((k) => Math.floor(40 * (k / 1000) ** 3)),
              { minLength: 1, maxLength: 600 },
            ),
            fc
              .array(fc.integer({ min: -6, max: 5 }), { minLength: 1, maxLength: 600 })
              .map((xs) => xs.map((x, i) => (x >= 0 ? x : 100 + i))),
          ),
          fc.integer({ min: 8, max: 40 }),
          (seq, slots) => {
            const run = (msBetween: number) => {
              const p = policyFromSettings(settings) as EvictionPolicy;
              const resident = new Set<string>();
              const choices: string[][] = [];
              const size = (m: number) => (1 + (m % 5)) * 1e9;
              seq.forEach((m, i) => {
                const now = 1e12 + i * msBetween;
                const name = `m${m}`;
                p.onAccess(name, size(m), 500 + size(m) / 1e6, now);
                if (resident.has(name)) return;
                p.setCapacity?.(slots * 1e9);
                let used = [...resident].reduce((a, r) => a + size(Number(r.slice(1))), 0);
                if (used + size(m) > slots * 1e9) {
                  const victims = p.chooseVictims(used + size(m) - slots * 1e9, now, (v) => v !== name);
                  choices.push(victims);
                  for (const v of victims) {
                    resident.delete(v);
                    used -= size(Number(v.slice(1)));
                    p.onEvict(v, now);
                  }
                }
                resident.add(name);
                p.onAdmit(name, now);
              });
              return choices;
            };
            expect(run(1)).toEqual(run(1000));
          },
        ),
        { numRuns: 60 },
      );
    },
  );

  test('the churn guard is off by default (in-flight requests pin their model instead)', () => {
    expect(loadConfig({ TRITON_MODEL_REPOSITORY: '/models' }).churnGuardMs).toBe(0);
  });

  test('the agent and the simulator build the same default policy from settings; none turns eviction off', () => {
    const defaults = loadConfig({ TRITON_MODEL_REPOSITORY: '/models' });
    expect(policyFromSettings(defaults)?.name).toBe('adaptive');
    expect(policyFromSettings({ ...defaults, evictionPolicy: 'lru' })?.name).toBe('lru');
    expect(policyFromSettings({ ...defaults, evictionPolicy: 'none' })).toBeUndefined();
  });

  test('a half-life must be positive', () => {
    expect(() => new AgedGdsfPolicy({ churnGuard: 0, halfLife: 0 })).toThrow(/half-life must be positive/);
  });

  test('GDSF prefers to keep frequently used, costly, small models', () => {
    const p = new GdsfPolicy();
    const add = (m: string, size: number, cost: number, times: number) => {
      for (let i = 0; i < times; i++) p.onAccess(m, size, cost, i);
      p.onAdmit(m, 0);
    };
    add('hot-small', 1e8, 1000, 10);
    add('cold-big', 5e9, 1000, 1);
    add('hot-big', 5e9, 1000, 10);
    expect(p.chooseVictims(1, 0, () => true)).toEqual(['cold-big']);
    p.onEvict('cold-big', 1);
    expect(p.chooseVictims(1, 1, () => true)).toEqual(['hot-big']);
  });

  test('the churn guard holds back recently used models until nothing else will do', () => {
    const p = new LruPolicy({ churnGuard: 1000 });
    p.onAccess('old', 1e9, 1, 0);
    p.onAdmit('old', 0);
    p.onAccess('fresh', 1e9, 1, 5000);
    p.onAdmit('fresh', 5000);
    p.onAccess('older-but-hot', 1e9, 1, 5500);
    expect(p.chooseVictims(1e9, 5600, () => true)).toEqual(['old']);
    expect(p.chooseVictims(2e9, 5600, () => true)).toEqual(['old', 'fresh']);
  });

  test('a shadow cache counts the load cost of its misses', () => {
    const s = new ShadowCache(new LruPolicy(), 2e9);
    for (const [m, t] of [
      ['a', 1],
      ['b', 2],
      ['a', 3],
      ['c', 4],
      ['b', 5],
    ] as [string, number][])
      s.access(m, 1e9, 10, t, 1);
    // a, b miss; a hits; c misses (evicts b); b misses.
    expect(s.score).toBe(40);
  });

  test('the adaptive policy follows the expert whose shadow loses least', () => {
    const experts = (): EvictionPolicy[] => [
      new LruPolicy(),
      new AgedGdsfPolicy({ churnGuard: 0, halfLife: Infinity }),
    ];
    const p = new AdaptivePolicy({ capacityBytes: 3e9, experts, window: 50 });
    // A stable hot pair plus a scan of one-off models: frequency beats recency.
    let t = 0;
    for (let round = 0; round < 200; round++) {
      for (const m of ['hot1', 'hot2', `scan${round}a`, `scan${round}b`]) p.onAccess(m, 1e9, 100, t++);
    }
    expect(p.leaderName).toBe('gdsf-history');
  });

  test('every registered policy is created by name', () => {
    expect(policyNames()).toEqual(expect.arrayContaining(['lru', 'gdsf', 'gdsf-aged', 'adaptive']));
    for (const n of policyNames())
      expect(createPolicy(n, { churnGuard: 0, capacityBytes: 1e9 }).name).toBeTruthy();
    expect(() => createPolicy('fifo', { churnGuard: 0 })).toThrow(/unknown eviction policy 'fifo'/);
  });
});
