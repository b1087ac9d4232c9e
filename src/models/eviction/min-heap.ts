/**
 * A binary min-heap of string keys with priorities, indexed so a key's priority can be changed or the key
 * removed in O(log n). Children of i are 2i+1 and 2i+2; the parent of i is floor((i-1)/2) (the
 * off-by-one grpc-js shipped is exactly what the property test against a sorted array would catch).
 */
export class IndexedMinHeap {
  private readonly keys: string[] = [];
  private readonly prio: number[] = [];
  /** Tie-breaker: insertion order, so equal priorities leave in a stable order. */
  private readonly seq: number[] = [];
  private readonly pos = new Map<string, number>();
  private counter = 0;

  get size(): number {
    return this.keys.length;
  }

  has(key: string): boolean {
    return this.pos.has(key);
  }

  priority(key: string): number | undefined {
    const i = this.pos.get(key);
    return i === undefined ? undefined : this.prio[i];
  }

  /** Inserts or changes the priority of `key`. */
  set(key: string, priority: number): void {
    const i = this.pos.get(key);
    if (i === undefined) {
      this.keys.push(key);
      this.prio.push(priority);
      this.seq.push(this.counter++);
      this.pos.set(key, this.keys.length - 1);
      this.up(this.keys.length - 1);
      return;
    }
    const old = this.prio[i];
    this.prio[i] = priority;
    if (priority < old) this.up(i);
    else this.down(i);
  }

  peek(): string | undefined {
    return this.keys[0];
  }

  pop(): string | undefined {
    if (this.keys.length === 0) return undefined;
    const top = this.keys[0];
    this.removeAt(0);
    return top;
  }

  delete(key: string): boolean {
    const i = this.pos.get(key);
    if (i === undefined) return false;
    this.removeAt(i);
    return true;
  }

  /** Keys in ascending priority order, without changing the heap (O(k log n) for the first k). */
  *ascending(): Generator<string> {
    if (this.keys.length === 0) return;
    // A frontier heap over indices of this heap.
    const frontier: number[] = [0];
    const less = (a: number, b: number) => this.less(a, b);
    const push = (i: number) => {
      frontier.push(i);
      let c = frontier.length - 1;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!less(frontier[c], frontier[p])) break;
        [frontier[c], frontier[p]] = [frontier[p], frontier[c]];
        c = p;
      }
    };
    const pop = (): number => {
      const top = frontier[0];
      const last = frontier.pop() as number;
      if (frontier.length > 0) {
        frontier[0] = last;
        let c = 0;
        for (;;) {
          const l = 2 * c + 1;
          const r = l + 1;
          let m = c;
          if (l < frontier.length && less(frontier[l], frontier[m])) m = l;
          if (r < frontier.length && less(frontier[r], frontier[m])) m = r;
          if (m === c) break;
          [frontier[c], frontier[m]] = [frontier[m], frontier[c]];
          c = m;
        }
      }
      return top;
    };
    while (frontier.length > 0) {
      const i = pop();
      yield this.keys[i];
      const l = 2 * i + 1;
      if (l < this.keys.length) push(l);
      if (l + 1 < this.keys.length) push(l + 1);
    }
  }

  private less(a: number, b: number): boolean {
    return this.prio[a] < this.prio[b] || (this.prio[a] === this.prio[b] && this.seq[a] < this.seq[b]);
  }

  private swap(a: number, b: number): void {
    [this.keys[a], this.keys[b]] = [this.keys[b], this.keys[a]];
    [this.prio[a], this.prio[b]] = [this.prio[b], this.prio[a]];
    [this.seq[a], this.seq[b]] = [this.seq[b], this.seq[a]];
    this.pos.set(this.keys[a], a);
    this.pos.set(this.keys[b], b);
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) return;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(l, m)) m = l;
      if (r < n && this.less(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private removeAt(i: number): void {
    const last = this.keys.length - 1;
    const key = this.keys[i];
    if (i !== last) this.swap(i, last);
    this.keys.pop();
    this.prio.pop();
    this.seq.pop();
    this.pos.delete(key);
    if (i < this.keys.length) {
      this.up(i);
      this.down(i);
    }
  }
}
