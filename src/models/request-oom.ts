import type { Logger } from '../observability';
import { triedToAllocate, TritonError } from '../triton';
import { waitForChange, waitOrTimeout, type Clock } from '../time';
import type { Admission } from './admission';
import type { Catalogue } from './catalogue';
import type { Footprints } from './footprints';
import type { GpuLedger } from './gpu-ledger';
import type { ModelRecord } from './model-record';

/** A model about to use more than before is loosened by this share of its figure, for samples to move it. */
export const GROWTH_SHARE = 0.25;

/**
 * Most rounds of retrying after a request runs out of memory (alternately: send at least one model away,
 * then wait for its memory to show as free; all within the cold-load wait). Under churn, room freed in one
 * round can go to another model's growth before the retry runs, so a few rounds are needed; the bound
 * keeps it finite.
 */
const ROUNDS = 12;

export interface RequestOomParts {
  ledger: GpuLedger;
  admission: Admission;
  footprints: Footprints;
  catalogue: Catalogue;
  /** What the lifecycle charges a model now. */
  need(record: ModelRecord): number;
}

/**
 * A request that ran out of GPU memory inside Triton (PyTorch's caching allocator and cuDNN grow a model
 * at its first inferences): its model is charged more — once per episode, by what the backend says it
 * tried to allocate —, that room is held beside its charge until the retry ran, idle models beside it are
 * sent away (waiting, bounded, for busy ones to become idle), and the request is tried again, rounds of
 * eviction alternating with a wait for released memory to show. The caller answers 507 only when this
 * gives up. Concurrent requests of one model share one round of room-making (single flight).
 */
export class RequestOomRecovery {
  private readonly rounds = new Map<ModelRecord, Promise<boolean>>();
  /** What a model was charged when its requests first ran out (until one succeeds or gives up). */
  private readonly base = new Map<ModelRecord, number>();

  constructor(
    private readonly parts: RequestOomParts,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly options: { coldLoadWaitMs: number },
  ) {}

  /**
   * Makes room and calls `call` again until it succeeds, fails otherwise than out of memory, or no room
   * can be made (rounds and the cold-load wait bound it). Rejects with the last failure.
   */
  async retry<T>(record: ModelRecord, first: TritonError, call: () => Promise<T>): Promise<T> {
    const { ledger } = this.parts;
    let failure: unknown = first;
    const until = this.clock.now() + this.options.coldLoadWaitMs;
    let round = 0;
    let waitedForRelease = false;
    try {
      for (; round < ROUNDS && this.clock.now() < until; round++) {
        if (!(failure instanceof TritonError) || failure.kind !== 'OutOfMemory') break;
        if (round > 0 && !waitedForRelease) {
          // The last round's evictions may not show as free yet (allocators return memory late): wait for
          // the GPU to show them (the next sample, at most the release wait) before sending more away.
          waitedForRelease = true;
          await waitForChange(this.clock, ledger.nextSample(), ledger.options.releaseWaitMs).catch(
            () => undefined,
          );
        } else {
          waitedForRelease = false;
          if (!(await this.makeRoom(record, failure))) break;
        }
        try {
          const res = await call();
          this.base.delete(record);
          return res;
        } catch (again) {
          failure = again;
        } finally {
          // The room held for the retry goes back: the model's own charge now covers what it grew to.
          ledger.cancel(holdOf(record));
        }
      }
    } finally {
      ledger.cancel(holdOf(record));
    }
    this.base.delete(record);
    if (failure instanceof TritonError && failure.kind === 'OutOfMemory')
      this.logger.warn('out of GPU memory inside a request; answering 507', {
        model: record.name,
        state: record.state,
        rounds: round,
        charge: ledger.chargeOf(record.name),
      });
    throw failure;
  }

  /** One round of room-making, shared by the model's concurrent requests. */
  private makeRoom(record: ModelRecord, err: TritonError): Promise<boolean> {
    const running = this.rounds.get(record);
    if (running) return running;
    const work = this.roomFor(record, err).finally(() => this.rounds.delete(record));
    this.rounds.set(record, work);
    return work;
  }

  /**
   * The model needs more than it is charged — as much more as the backend says it tried to allocate,
   * when it says (PyTorch does) — and idle models on its GPUs (the policy's victims) are sent away until
   * that much is free there. Resolves true once their unloads finished (bounded by the cold-load wait),
   * false when none could go.
   */
  private async roomFor(record: ModelRecord, err: TritonError): Promise<boolean> {
    const { ledger, admission, footprints, catalogue } = this.parts;
    // A reload under way: once it settles the request is tried again. (Not an unload: it waits for this
    // request's pin to drain.)
    if (record.state === 'loading') {
      await record.transition?.catch(() => undefined);
      return (record.state as string) === 'ready';
    }
    if (record.state !== 'ready') return false;
    const more = triedToAllocate(err.tritonMessage) ?? 0;
    const devices = ledger.indices(ledger.devicesOf(record.name) ?? 'all');
    // Raised from what it was charged when its requests first ran out (each round retries the same
    // allocation: the figure must not compound).
    if (!this.base.has(record)) this.base.set(record, ledger.chargeOf(record.name));
    const charge = this.base.get(record) ?? 0;
    // A request that needs more than its GPU has for models even alone: evicting cannot help, and the
    // figure is the request's, not the model's (a smaller request runs).
    if (devices.some((d) => charge + more > ledger.usable(d))) {
      this.logger.warn('a request needs more GPU memory than the GPU has for models', {
        model: record.name,
        tried: more,
      });
      return false;
    }
    // Until the retry has run, what it tried to allocate is held beside its charge: loads admitted in the
    // meantime (whose own growth the ledger cannot see yet) do not take the room made for it.
    if (more > 0)
      ledger.reserve(holdOf(record), more, ledger.devicesOf(record.name) ?? 'all', { transient: true });
    if (record.footprintKey) {
      footprints.needsMoreThan(record.footprintKey, charge + more);
      footprints.loosen(record.footprintKey, GROWTH_SHARE);
      ledger.update(record.name, this.parts.need(record));
    }
    let victims = admission.evictBeside(record);
    // Every model beside it may be serving a request: each finishes soon and can go then, so wait for
    // one (bounded by the cold-load wait) rather than answer 507 while memory is about to be freeable.
    const deadline = this.clock.now() + this.options.coldLoadWaitMs;
    while (victims.length === 0) {
      const left = deadline - this.clock.now();
      if (left <= 0 || record.state !== 'ready') {
        this.logger.warn('out of GPU memory inside a request and no idle model shares its GPU', {
          model: record.name,
        });
        return false;
      }
      await waitForChange(this.clock, Promise.race([ledger.next(), ledger.nextSample()]), left).catch(
        () => undefined,
      );
      victims = admission.evictBeside(record);
    }
    this.logger.warn('out of GPU memory inside a request; evicting idle models and trying again', {
      model: record.name,
      victims,
      tried: more || undefined,
    });
    const going = victims.map((v) => catalogue.get(v)?.transition).filter((t) => t !== undefined);
    await waitOrTimeout(Promise.all(going), this.clock, this.options.coldLoadWaitMs, () => undefined).catch(
      () => undefined,
    );
    return true;
  }
}

/** The ledger key of the room held for a request's retry after it ran out of memory. */
function holdOf(record: ModelRecord): string {
  return `${record.name}\u0000oom-retry`;
}
