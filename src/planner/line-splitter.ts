/** Longest access log line read (the agent writes lines of a few hundred bytes); longer ones are skipped. */
export const MAX_LINE_BYTES = 1024 * 1024;

/**
 * Splits a byte stream into lines (`\n`, with a trailing `\r` dropped) while holding at most
 * `maxLineBytes` of any one line: a longer line is dropped as it streams past, up to its newline, and
 * reported as `undefined`, so a 700 MB line costs no more memory than a short one. Lines are split on
 * bytes and decoded whole, so a UTF-8 character split between two chunks stays intact.
 *
 * Why not `readline`: it buffers a line whole, as a string, whatever its length (a line over V8's
 * string limit, about 512 MiB, throws; below it, the process holds it all).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private discarding = false;

  constructor(private readonly maxLineBytes: number = MAX_LINE_BYTES) {
    if (!(Number.isSafeInteger(maxLineBytes) && maxLineBytes > 0))
      throw new RangeError(`maxLineBytes must be a positive whole number, got ${maxLineBytes}`);
  }

  /** Feeds one chunk; `emit` is called once per complete line (`undefined`: a line that was too long). */
  push(chunk: Buffer, emit: (line: string | undefined) => void): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) {
        this.keep(chunk, start, chunk.length);
        return;
      }
      this.keep(chunk, start, nl);
      this.flush(emit);
      start = nl + 1;
    }
  }

  /** Ends the input: a last line without a newline is emitted too. */
  end(emit: (line: string | undefined) => void): void {
    if (this.partBytes > 0 || this.discarding) this.flush(emit);
  }

  private keep(chunk: Buffer, from: number, to: number): void {
    if (this.discarding || to === from) return;
    if (this.partBytes + (to - from) > this.maxLineBytes) {
      this.discarding = true;
      this.parts = [];
      this.partBytes = 0;
      return;
    }
    this.parts.push(chunk.subarray(from, to));
    this.partBytes += to - from;
  }

  private flush(emit: (line: string | undefined) => void): void {
    if (this.discarding) {
      this.discarding = false;
      emit(undefined);
      return;
    }
    const bytes = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.partBytes);
    this.parts = [];
    this.partBytes = 0;
    const text = bytes.toString('utf8');
    emit(text.endsWith('\r') ? text.slice(0, -1) : text);
  }
}
