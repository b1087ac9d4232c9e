import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { AgentConfig } from '../config';
import { systemClock, withTimeout, type Clock } from '../time';

/**
 * The access log: one JSON line per invocation and per lifecycle event, the record the capacity planner
 * (`plan`) replays to answer how much GPU memory the traffic needs.
 *
 * Writing never blocks the event loop and never waits on the request path: `invoke()` and `lifecycle()`
 * only serialise one line and queue it; a single asynchronous writer appends queued lines in batches
 * through a file handle. The queue is bounded (`bufferBytes`): when the disk cannot keep up, new lines are
 * dropped and counted (`stats().dropped`) rather than held in memory without limit. The file is rotated
 * by size: before a batch would take it past `maxBytes`, `FILE` becomes `FILE.1`, `FILE.1` becomes
 * `FILE.2`, and so on up to `maxFiles` rotated files (older ones are deleted).
 */

export interface AccessLogSettings {
  /** The file lines are appended to (its folder is created). */
  file: string;
  /** Rotate before the file would grow past this many bytes. */
  maxBytes: number;
  /** Rotated files kept: FILE.1 (newest) … FILE.maxFiles; 0 keeps none. */
  maxFiles: number;
  /** Most bytes waiting to be written; lines beyond are dropped and counted. Default 4 MiB. */
  bufferBytes?: number;
  /** Milliseconds since the epoch (injectable for tests); default Date.now. */
  now?: () => number;
  /** Time for the bound on opening the file (default: the system's). */
  clock?: Clock;
  /** Told about a write or rotation failure (the lines concerned are counted as dropped). */
  onError?: (err: Error) => void;
}

/** One invocation: which model, whether its model was resident (hit) or had to be loaded (cold). */
export interface InvokeRecord {
  model: string;
  /** true: the model was resident; false: this request waited for a load (cold). */
  hit: boolean;
  /** The model's GPU footprint in bytes (measured, else estimated). */
  footprintBytes?: number;
  /** How long the model's last load took, ms. */
  loadMs?: number;
  /** How long downloading its artifact took, ms (0 when it came from the disk cache). */
  downloadMs?: number;
  /** How long this request waited for its model, ms. */
  waitMs?: number;
  /** Models evicted to make room for this request's load (on the first request that waited for it only). */
  evicted?: string[];
  /** When the request arrived, ms since the epoch; default now. */
  time?: number;
  /** Why the request failed before it reached its model (an error code such as `MODEL_NOT_FOUND`). */
  error?: string;
}

/** Lifecycle events of a model. */
export type LifecycleEvent = 'load' | 'evict' | 'unload' | 'load-failed';

export interface LifecycleRecord {
  event: LifecycleEvent;
  model: string;
  footprintBytes?: number;
  loadMs?: number;
  downloadMs?: number;
  /** Models evicted to make room for this load. */
  evicted?: string[];
  /** Why a load failed. */
  reason?: string;
  /** When it happened, ms since the epoch; default now. */
  time?: number;
}

/** One line of the access log as written (and as the planner reads it back). */
export type AccessLogLine =
  | ({ time: string; type: 'invoke'; outcome: 'hit' | 'cold' } & Omit<InvokeRecord, 'time' | 'hit'>)
  | ({ time: string; type: 'lifecycle' } & Omit<LifecycleRecord, 'time'>);

export interface AccessLogStats {
  /** Lines written to disk. */
  written: number;
  /** Lines dropped: queue full, log closed, or a write that failed. */
  dropped: number;
  /** Times the file was rotated. */
  rotations: number;
  /** Bytes waiting to be written. */
  queuedBytes: number;
}

const DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024;
/** At most one failure report per this many ms; the ones in between are counted into the next. */
const ERROR_REPORT_INTERVAL_MS = 10_000;
/** Opening the file at start may not take longer (a path on a pseudo or hung filesystem). */
const OPEN_TIMEOUT_MS = 5_000;
/** Where an access log can never be: pseudo filesystems, whose files block or are not files. */
const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/** Opens `file` for appending without blocking on a FIFO, and refuses anything but a regular file. */
async function openForAppend(file: string, exclusive = false): Promise<fsp.FileHandle> {
  const flags =
    fsConstants.O_WRONLY |
    fsConstants.O_CREAT |
    fsConstants.O_APPEND |
    fsConstants.O_NONBLOCK |
    fsConstants.O_NOFOLLOW |
    (exclusive ? fsConstants.O_EXCL : 0);
  const handle = await fsp.open(file, flags);
  const st = await handle.stat().catch(async (err: unknown) => {
    await handle.close();
    throw err;
  });
  if (!st.isFile()) {
    await handle.close();
    throw new Error(`access log file '${file}' is not a regular file`);
  }
  return handle;
}

export class AccessLog {
  private queue: string[] = [];
  private queuedBytes = 0;
  private written = 0;
  private dropped = 0;
  private rotations = 0;
  private closed = false;
  private pumping: Promise<void> | undefined;
  private lastReportAt = -Infinity;
  private unreported = 0;
  private readonly bufferBytes: number;
  private readonly now: () => number;

  private constructor(
    private readonly settings: AccessLogSettings | undefined,
    private handle: fsp.FileHandle | undefined,
    private size: number,
  ) {
    this.bufferBytes = settings?.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    this.now = settings?.now ?? Date.now;
  }

  /** Opens (appending to) the file, creating its folder. Rejects if the file cannot be opened. */
  static async open(settings: AccessLogSettings): Promise<AccessLog> {
    if (!path.isAbsolute(settings.file))
      throw new Error(`access log file must be an absolute path, got '${settings.file}'`);
    if (!(settings.maxBytes > 0))
      throw new Error(`access log maxBytes must be positive, got ${settings.maxBytes}`);
    if (!Number.isInteger(settings.maxFiles) || settings.maxFiles < 0)
      throw new Error(`access log maxFiles must be a whole number, got ${settings.maxFiles}`);
    const file = path.resolve(settings.file);
    if (PSEUDO_ROOTS.some((root) => file === root || file.startsWith(`${root}/`)))
      throw new Error(
        `access log file '${settings.file}' is on a pseudo filesystem (${PSEUDO_ROOTS.join(', ')})`,
      );
    // Only its own folder is created, never a chain of them: each filesystem call here is bounded.
    const opening = (async () => {
      await fsp.mkdir(path.dirname(file)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      return openForAppend(file);
    })();
    const handle = await withTimeout(
      opening,
      OPEN_TIMEOUT_MS,
      () =>
        new Error(`opening the access log '${settings.file}' did not finish within ${OPEN_TIMEOUT_MS} ms`),
      settings.clock ?? systemClock,
    ).catch((err: unknown) => {
      // An open that finishes after its bound is closed, not leaked.
      opening.then((late) => late.close()).catch(() => undefined);
      throw err;
    });
    const { size } = await handle.stat();
    return new AccessLog(settings, handle, size);
  }

  /** A log that writes nothing (the access log is off). */
  static disabled(): AccessLog {
    return new AccessLog(undefined, undefined, 0);
  }

  get enabled(): boolean {
    return this.settings !== undefined;
  }

  /** Queues one invocation line; returns at once. */
  invoke(r: InvokeRecord): void {
    if (!this.settings) return;
    const { time, hit, ...rest } = r;
    this.push({
      time: new Date(time ?? this.now()).toISOString(),
      type: 'invoke',
      outcome: hit ? 'hit' : 'cold',
      ...rest,
    } as AccessLogLine);
  }

  /** Queues one lifecycle line; returns at once. */
  lifecycle(r: LifecycleRecord): void {
    if (!this.settings) return;
    const { time, ...rest } = r;
    this.push({ time: new Date(time ?? this.now()).toISOString(), type: 'lifecycle', ...rest });
  }

  stats(): AccessLogStats {
    return {
      written: this.written,
      dropped: this.dropped,
      rotations: this.rotations,
      queuedBytes: this.queuedBytes,
    };
  }

  /** Resolves once every line queued so far is written (or dropped). */
  async flush(): Promise<void> {
    while (this.pumping) await this.pumping;
  }

  /** Writes what is queued, then closes the file; later lines are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private push(line: AccessLogLine): void {
    const text = `${JSON.stringify(line)}\n`;
    if (this.closed || this.queuedBytes + text.length > this.bufferBytes) {
      this.dropped++;
      return;
    }
    this.queue.push(text);
    this.queuedBytes += text.length;
    if (!this.pumping) {
      this.pumping = this.pump().finally(() => {
        this.pumping = undefined;
      });
    }
  }

  /** The one writer: appends queued lines in batches that keep each file within maxBytes. */
  private async pump(): Promise<void> {
    const s = this.settings as AccessLogSettings;
    while (this.queue.length > 0) {
      // Take the lines that fit in the current file (at least one line, so an oversized line still goes).
      let room = this.size > 0 ? s.maxBytes - this.size : Infinity;
      if (Buffer.byteLength(this.queue[0]) > room) {
        try {
          await this.rotate();
          room = Infinity;
        } catch (err) {
          // No new file could be made: nothing was shifted or deleted, and the current file (if still
          // open) takes the lines, past its size bound, until a later rotation succeeds.
          if (!this.handle) {
            const lost = this.queue.length;
            this.queue = [];
            this.queuedBytes = 0;
            this.fail(err, lost);
            return;
          }
          this.fail(err, 0);
          room = Infinity;
        }
      }
      let take = 0;
      let bytes = 0;
      while (take < this.queue.length) {
        const len = Buffer.byteLength(this.queue[take]);
        if (take > 0 && (bytes + len > room || bytes + len > s.maxBytes)) break;
        bytes += len;
        take++;
      }
      // One splice per batch (not a shift per line: that is quadratic on a long queue).
      const batch = this.queue.splice(0, take);
      for (const line of batch) this.queuedBytes -= line.length;
      try {
        if (!this.handle) throw new Error('access log is not open');
        await this.handle.appendFile(batch.join(''));
        this.size += bytes;
        this.written += batch.length;
      } catch (err) {
        this.fail(err, batch.length);
      }
    }
  }

  /** Counts the lost lines; tells `onError` at most once per interval (a full disk fails every batch). */
  private fail(err: unknown, lines: number): void {
    this.dropped += lines;
    const now = this.now();
    if (now - this.lastReportAt < ERROR_REPORT_INTERVAL_MS) {
      this.unreported++;
      return;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    const more = this.unreported;
    this.unreported = 0;
    this.lastReportAt = now;
    this.settings?.onError?.(
      more > 0 ? new Error(`${e.message} (and ${more} more failures since the last report)`) : e,
    );
  }

  /**
   * FILE → FILE.1 → FILE.2 … ; the oldest beyond maxFiles is deleted. The new file is created first (as
   * FILE.next): when it cannot be, nothing is shifted or deleted and the current file stays in use.
   */
  private async rotate(): Promise<void> {
    const s = this.settings as AccessLogSettings;
    const next = `${s.file}.next`;
    await fsp.rm(next, { force: true });
    const fresh = await openForAppend(next, true);
    const h = this.handle;
    this.handle = fresh;
    await h?.close().catch(() => undefined);
    const ignoreMissing = (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    };
    try {
      if (s.maxFiles === 0) {
        await fsp.unlink(s.file).catch(ignoreMissing);
      } else {
        await fsp.unlink(`${s.file}.${s.maxFiles}`).catch(ignoreMissing);
        for (let i = s.maxFiles - 1; i >= 1; i--)
          await fsp.rename(`${s.file}.${i}`, `${s.file}.${i + 1}`).catch(ignoreMissing);
        await fsp.rename(s.file, `${s.file}.1`).catch(ignoreMissing);
      }
    } finally {
      // The open handle follows the rename: lines go on to FILE whatever happened to the older files.
      await fsp.rename(next, s.file);
    }
    this.size = 0;
    this.rotations++;
  }
}

/** The settings that turn the access log on and size its files. */
export type AccessLogConfig = Pick<AgentConfig, 'accessLogFile' | 'accessLogMaxBytes' | 'accessLogFiles'>;

/** The agent's access log from its configuration: disabled unless AGENT_ACCESS_LOG_FILE is set. */
export async function openAccessLog(
  config: AccessLogConfig,
  onError?: (err: Error) => void,
): Promise<AccessLog> {
  if (config.accessLogFile === undefined) return AccessLog.disabled();
  return AccessLog.open({
    file: config.accessLogFile,
    maxBytes: config.accessLogMaxBytes,
    maxFiles: config.accessLogFiles,
    onError,
  });
}
