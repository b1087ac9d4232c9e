import { AdaptivePolicy } from './policy-adaptive';
import { AgedGdsfPolicy, GdsfPolicy } from './policy-gdsf';
import { LruPolicy } from './policy-lru';
import { registerPolicy, type EvictionPolicy, type PolicyOptions } from './policy';

export { IndexedMinHeap } from './min-heap';
export { AdaptivePolicy, ShadowCache, type AdaptiveOptions } from './policy-adaptive';
export { AgedGdsfPolicy, GdsfPolicy, type AgedGdsfOptions } from './policy-gdsf';
export { LruPolicy } from './policy-lru';
export {
  createPolicy,
  policyNames,
  registerPolicy,
  takeVictims,
  type EvictionPolicy,
  type ModelFacts,
  type PolicyOptions,
} from './policy';
export { policyFromSettings, type EvictionSettings } from './policy-settings';

/**
 * Memory of the default policies, counted in requests (never in wall time, so the policies behave the
 * same at any request rate): the half-lives of the aged-frequency experts, and the window over which the
 * adaptive policy compares its experts' shadow caches.
 */
export const DEFAULT_HALF_LIVES = [1_000, 10_000, Infinity] as const;
export const DEFAULT_GDSF_AGED_HALF_LIFE = 10_000;
export const DEFAULT_ADAPTIVE_WINDOW = 2_000;

/** The experts the adaptive policy chooses between: LRU and aged GDSF at each default half-life. */
export function defaultExperts(options: PolicyOptions): () => EvictionPolicy[] {
  return () => [
    new LruPolicy(options),
    ...DEFAULT_HALF_LIVES.map((halfLife) => new AgedGdsfPolicy({ ...options, halfLife })),
  ];
}

registerPolicy('lru', (o) => new LruPolicy(o));
registerPolicy('gdsf', (o) => new GdsfPolicy(o));
registerPolicy('gdsf-aged', (o) => new AgedGdsfPolicy({ ...o, halfLife: DEFAULT_GDSF_AGED_HALF_LIFE }));
registerPolicy(
  'adaptive',
  (o) =>
    new AdaptivePolicy({
      capacityBytes: o.capacityBytes ?? Number.MAX_SAFE_INTEGER,
      experts: defaultExperts(o),
      window: DEFAULT_ADAPTIVE_WINDOW,
    }),
);
