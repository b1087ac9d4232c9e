import { DEFAULT_ADAPTIVE_WINDOW, DEFAULT_GDSF_AGED_HALF_LIFE, DEFAULT_HALF_LIVES } from '../models/eviction';

const count = (n: number) => (Number.isFinite(n) ? n.toLocaleString('en-US') : '∞');
/** "1,000, 10,000 or ∞" */
const orList = (ns: readonly number[]) => {
  const words = ns.map(count);
  return words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}` : words.join('');
};

/**
 * What each policy label the planner prints means, one line each, by registered name (as
 * AGENT_EVICTION_POLICY and `--policies` spell it). docs/planner.md lists the same lines, and a test
 * checks that every registered policy has one, here and there.
 */
export const POLICY_DESCRIPTIONS: Readonly<Record<string, string>> = {
  lru: 'least recently used: evicts the model whose last request is oldest',
  gdsf: 'GreedyDual-Size-Frequency: keeps the most requests × load time ÷ footprint; counts reset on eviction',
  'gdsf-aged': `GDSF with counts kept for every model, halving every ${count(DEFAULT_GDSF_AGED_HALF_LIFE)} requests`,
  adaptive: `follows whichever of lru and GDSF aged over ${orList(DEFAULT_HALF_LIVES)} requests lost least load time lately (~${count(DEFAULT_ADAPTIVE_WINDOW)} requests)`,
};

/** The one-line meaning of a policy label; a policy registered without one says where to look. */
export function describePolicy(name: string): string {
  return Object.hasOwn(POLICY_DESCRIPTIONS, name)
    ? POLICY_DESCRIPTIONS[name]
    : 'no description (see src/models/eviction)';
}
