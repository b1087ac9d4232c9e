import { rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

/** The signals that end a command line run, and so must not leave its temporary files behind. */
export const CLEANUP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type CleanupSignal = (typeof CLEANUP_SIGNALS)[number];

export interface ScratchDirOptions {
  /** Told which signal arrived and whether the directory is gone, after removing it and before `exit`. */
  onSignal?: (signal: CleanupSignal, removed: boolean) => void;
  /** Ends the process (default process.exit); tests pass their own. */
  exit?: (code: number) => void;
}

/**
 * A temporary directory that is removed on every way out of a run: `dispose()` on the normal and failing
 * paths, and, while it exists, on SIGINT, SIGTERM and SIGHUP (the handler removes it, then exits with
 * 128 + the signal's number, as a shell reports a process the signal killed) and on `process.exit`.
 * The handlers are removed again by `dispose()`.
 *
 * Why synchronous removal in the handler: once a signal arrives the process is leaving; an asynchronous
 * removal would race the unpack still writing into the directory, and the exit would not wait for it.
 */
export class ScratchDir {
  private disposed = false;
  private readonly handlers = new Map<CleanupSignal, () => void>();
  private readonly onExit = () => this.removeNow();

  private constructor(
    readonly path: string,
    private readonly options: ScratchDirOptions,
  ) {
    for (const signal of CLEANUP_SIGNALS) {
      const handler = () => {
        const removed = this.removeNow();
        this.unhook();
        this.options.onSignal?.(signal, removed);
        (this.options.exit ?? ((code: number) => process.exit(code)))(128 + os.constants.signals[signal]);
      };
      this.handlers.set(signal, handler);
      process.on(signal, handler);
    }
    process.on('exit', this.onExit);
  }

  /** Creates `<parent>/<prefix>XXXXXX` and starts guarding it. */
  static async create(parent: string, prefix: string, options: ScratchDirOptions = {}): Promise<ScratchDir> {
    return new ScratchDir(await fs.mkdtemp(path.join(parent, prefix)), options);
  }

  /** Removes the directory and the handlers. Safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    try {
      await fs.rm(this.path, { recursive: true, force: true, maxRetries: 3 });
    } finally {
      this.unhook();
    }
  }

  /** Removes the directory at once; false when that failed (the process is leaving either way). */
  private removeNow(): boolean {
    this.disposed = true;
    try {
      // maxRetries: a write already queued may create a file after the listing; rmdir then retries.
      rmSync(this.path, { recursive: true, force: true, maxRetries: 3 });
      return true;
    } catch {
      return false;
    }
  }

  private unhook(): void {
    for (const [signal, handler] of this.handlers) process.off(signal, handler);
    this.handlers.clear();
    process.off('exit', this.onExit);
  }
}
