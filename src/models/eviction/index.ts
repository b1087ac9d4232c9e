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

const MINUTE = 60_000;

/** The experts the adaptive policy chooses between (time in milliseconds). */
export function defaultExperts(options: PolicyOptions): () => EvictionPolicy[] {
  return () => [
    new LruPolicy(options),
    new AgedGdsfPolicy({ ...options, halfLife: 10 * MINUTE }),
    new AgedGdsfPolicy({ ...options, halfLife: 2 * 60 * MINUTE }),
    new AgedGdsfPolicy({ ...options, halfLife: Infinity }),
  ];
}

registerPolicy('lru', (o) => new LruPolicy(o));
registerPolicy('gdsf', (o) => new GdsfPolicy(o));
registerPolicy('gdsf-aged', (o) => new AgedGdsfPolicy({ ...o, halfLife: 2 * 60 * MINUTE }));
registerPolicy(
  'adaptive',
  (o) =>
    new AdaptivePolicy({
      capacityBytes: o.capacityBytes ?? Number.MAX_SAFE_INTEGER,
      experts: defaultExperts(o),
      window: 2000,
    }),
);
