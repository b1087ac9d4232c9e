/**
 * Fetch slots shared fairly between sources (an S3 bucket, a host, a local directory). Pure bookkeeping: no
 * I/O, no clock, no promises; the fetcher turns grants into started downloads.
 *
 * Why this rule: with one FIFO queue, a source that queued many slow downloads holds every slot and an
 * unrelated artifact waits behind all of them. Here a free slot goes to the waiting source that holds the
 * fewest slots (ties: the one whose oldest request is oldest), and within a source requests are served in
 * order. Hence, with `capacity` N and k sources waiting, a source already holding ceil(N/k) or more slots
 * is granted another only when no other source waits (if every waiting source held that many, all N slots
 * would be taken). Slots are never taken back from a running download: the fetcher's deadline and minimum
 * rate bound how long one is held.
 */
export class FetchSlots {
  private nextId = 1;
  /** Waiting request ids per source, oldest first (a source is removed when its queue empties). */
  private readonly queues = new Map<string, number[]>();
  /** Granted request ids and their source. */
  private readonly holders = new Map<number, string>();
  /** Slots held per source. */
  private readonly held = new Map<string, number>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`fetch slots: capacity must be a positive integer, got ${capacity}`);
  }

  /** Queues a request for a slot on behalf of `source`; returns its id (call `admit` to grant slots). */
  enqueue(source: string): number {
    const id = this.nextId++;
    const q = this.queues.get(source);
    if (q) q.push(id);
    else this.queues.set(source, [id]);
    return id;
  }

  /**
   * Grants free slots to waiting requests by the fair rule; returns the ids granted, in grant order.
   * Work-conserving: afterwards either every slot is taken or nothing waits.
   */
  admit(): number[] {
    const granted: number[] = [];
    while (this.holders.size < this.capacity) {
      let best: string | undefined;
      let bestHeld = Infinity;
      let bestHead = Infinity;
      for (const [source, q] of this.queues) {
        const h = this.held.get(source) ?? 0;
        if (h < bestHeld || (h === bestHeld && q[0] < bestHead)) {
          best = source;
          bestHeld = h;
          bestHead = q[0];
        }
      }
      if (best === undefined) break;
      const q = this.queues.get(best) as number[];
      const id = q.shift() as number;
      if (q.length === 0) this.queues.delete(best);
      this.holders.set(id, best);
      this.held.set(best, bestHeld + 1);
      granted.push(id);
    }
    return granted;
  }

  /** Frees a granted slot, or withdraws a request still waiting; unknown ids are ignored. */
  release(id: number): void {
    const source = this.holders.get(id);
    if (source !== undefined) {
      this.holders.delete(id);
      const h = (this.held.get(source) ?? 1) - 1;
      if (h > 0) this.held.set(source, h);
      else this.held.delete(source);
      return;
    }
    for (const [s, q] of this.queues) {
      const i = q.indexOf(id);
      if (i < 0) continue;
      q.splice(i, 1);
      if (q.length === 0) this.queues.delete(s);
      return;
    }
  }

  /** Slots `source` holds now. */
  holding(source: string): number {
    return this.held.get(source) ?? 0;
  }

  /** Requests waiting (all sources). */
  get waiting(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  /** Slots taken. */
  get busy(): number {
    return this.holders.size;
  }
}
