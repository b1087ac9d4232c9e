import type { AgentConfig } from '../../config';
import { createPolicy, type EvictionPolicy } from './policy';

/** The settings that decide which eviction policy the agent runs. */
export type EvictionSettings = Pick<AgentConfig, 'evictionPolicy' | 'churnGuardMs'>;

/**
 * The one factory of the agent's eviction policy: the agent builds its policy here from its
 * configuration, and the simulator and the capacity planner build theirs here from the same defaults,
 * so they measure the object the agent runs. `undefined` when eviction is off (`none`).
 */
export function policyFromSettings(settings: EvictionSettings): EvictionPolicy | undefined {
  if (settings.evictionPolicy === 'none') return undefined;
  return createPolicy(settings.evictionPolicy, { churnGuard: settings.churnGuardMs });
}
