import type { AgentError } from '../errors';
import type { Clock } from '../time';

export interface RememberedFailure {
  error: AgentError;
  /** The artifact version that failed ('' when it could not be looked up). */
  version: string;
  /** When the artifact was last looked at again. */
  checkedAt: number;
}

/**
 * Failed lazy loads, remembered for a while so a storm of invocations of a broken artifact gets the same
 * answer at once instead of refetching it. Time comes from the injected clock; expired entries are
 * dropped when looked up and by an occasional sweep, so the map cannot grow without bound.
 */
export class FailureMemory {
  private readonly entries = new Map<string, RememberedFailure & { until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly clock: Clock,
  ) {}

  remember(name: string, error: AgentError, version: string): void {
    const now = this.clock.now();
    this.entries.set(name, { error, version, checkedAt: now, until: now + this.ttlMs });
    if (this.entries.size % 1024 === 0) this.sweep();
  }

  recall(name: string): RememberedFailure | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    if (this.clock.now() >= e.until) {
      this.entries.delete(name);
      return undefined;
    }
    return e;
  }

  forget(name: string): void {
    this.entries.delete(name);
  }

  private sweep(): void {
    const now = this.clock.now();
    for (const [k, e] of this.entries) if (now >= e.until) this.entries.delete(k);
  }
}
