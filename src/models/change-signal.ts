/** A promise that settles at the next `notify()`: lets waiters sleep until something they care about moves. */
export class ChangeSignal {
  private resolve!: () => void;
  private promise!: Promise<void>;

  constructor() {
    this.renew();
  }

  private renew(): void {
    this.promise = new Promise<void>((r) => (this.resolve = r));
  }

  /** Settles at the next notify. */
  next(): Promise<void> {
    return this.promise;
  }

  notify(): void {
    const r = this.resolve;
    this.renew();
    r();
  }
}
