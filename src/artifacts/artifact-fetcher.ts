import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { AgentError, ErrorCode, isAgentError, messageOf } from '../errors';
import type { Logger } from '../observability';
import { backoffMs, stallWatch, systemClock, type Clock } from '../time';
import { inspectArtifact } from './artifact-layout';
import type { ArtifactInfo, ArtifactSource } from './artifact-source';
import { type CacheEntry, type DiskCache } from './disk-cache';
import { checkArtifactTree } from './tree-check';
import { FetchSlots } from './fetch-slots';
import { unpackTar, type UnpackLimits } from './unpack';

/**
 * Thrown by a source's stream when the bytes it already gave cannot be continued consistently (the
 * connection broke and nothing pins the object's version, so a resumed range could come from a newer
 * object). The fetcher discards what it unpacked and opens the artifact again from byte 0.
 */
export class SourceRestart extends AgentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.SourceUnavailable, message, options);
    this.name = 'SourceRestart';
  }
}

/** An artifact available on local disk, held (not evictable) until released. */
export interface LocalArtifact {
  dir: string;
  info: ArtifactInfo;
  entry: CacheEntry | undefined;
  /** Unpacked bytes on disk (the basis of a GPU footprint estimate). */
  bytes: number;
  /** Time spent downloading and unpacking for this call (0 when it was already on disk). */
  fetchMs: number;
  release(): void;
}

export interface FetchProgress {
  phase: 'downloading';
  bytes: number;
  totalBytes: number;
}

export interface FetcherOptions {
  sources: ArtifactSource[];
  cache: DiskCache;
  limits: UnpackLimits;
  /** Downloads running at once; more wait their turn. */
  concurrency: number;
  /** How often a running download logs its progress. */
  progressIntervalMs: number;
  /** A download that receives nothing for this long fails (sources that can resume do so sooner). */
  stallTimeoutMs: number;
  /** A download (unpacking included) still running this long after it got its slot fails (0 or unset: none). */
  deadlineMs?: number;
  /** A download averaging fewer bytes per second over `rateWindowMs` fails (0 or unset: no minimum). */
  minBytesPerSec?: number;
  /** The window the minimum rate is averaged over, and the grace before its first check (default 60 s). */
  rateWindowMs?: number;
  /** Times a download is started again from byte 0 when its source cannot resume it (default 3). */
  restartAttempts?: number;
  logger: Logger;
  /** Time for deadlines, rates, stalls, progress and backoff (tests drive it; default: the system's). */
  clock?: Clock;
}

const DEFAULT_RATE_WINDOW_MS = 60_000;
const DEFAULT_RESTART_ATTEMPTS = 3;

/**
 * The store a download draws on, for sharing fetch slots: an S3 bucket, a host, or a local directory.
 */
export function sourceKeyOf(info: ArtifactInfo): string {
  const s3 = /^s3:\/\/([^/]+)/.exec(info.url);
  if (s3) return `s3://${s3[1]}`;
  const host = /^([a-z][a-z0-9+.-]*:)\/\/([^/]+)/i.exec(info.url);
  if (host && host[1].toLowerCase() !== 'file:') return `${host[1].toLowerCase()}//${host[2].toLowerCase()}`;
  return `file:${path.dirname(info.path ?? info.url.replace(/^file:\/\//, ''))}`;
}

/**
 * Bytes per second over a trailing window, from a running byte count sampled at a steady tick. Nothing is
 * reported until a whole window has passed (the grace period).
 */
export class RateWindow {
  private readonly samples: { at: number; bytes: number }[];

  constructor(
    private readonly windowMs: number,
    start: number,
  ) {
    this.samples = [{ at: start, bytes: 0 }];
  }

  /** Records `bytes` (the running total) at `now`; the rate over the last window, once there is one. */
  sample(now: number, bytes: number): number | undefined {
    this.samples.push({ at: now, bytes });
    // Keep the newest sample that is at least a window old, and every sample after it.
    while (this.samples.length > 1 && this.samples[1].at <= now - this.windowMs) this.samples.shift();
    const base = this.samples[0];
    if (now - base.at < this.windowMs) return undefined;
    return ((bytes - base.bytes) * 1000) / (now - base.at);
  }
}

/**
 * Holds one download to its deadline and minimum rate, across restarts: the first limit broken destroys the
 * stream being read with a retryable error that names the limit, which ends the unpack reading it.
 */
class DownloadWatch {
  failure: AgentError | undefined;
  private received = 0;
  private current: Readable | undefined;
  /** Stop the deadline and rate checks (repeating checks, which never keep the process alive). */
  private readonly stops: (() => void)[] = [];
  private readonly aborted = new AbortController();
  private readonly started: number;

  constructor(
    private readonly info: ArtifactInfo,
    limits: { deadlineMs: number; minBytesPerSec: number; rateWindowMs: number },
    private readonly clock: Clock,
  ) {
    const { deadlineMs, minBytesPerSec, rateWindowMs } = limits;
    this.started = clock.now();
    if (deadlineMs > 0) {
      // Checked every tenth of the deadline: told at most 10% late.
      this.stops.push(
        clock.every(Math.max(10, Math.floor(deadlineMs / 10)), () => {
          if (clock.now() - this.started >= deadlineMs)
            this.fail(
              `it was still running after the fetch deadline (AGENT_FETCH_DEADLINE_MS=${deadlineMs})`,
            );
        }),
      );
    }
    if (minBytesPerSec > 0) {
      const rate = new RateWindow(rateWindowMs, this.started);
      const stopRate = clock.every(Math.max(10, Math.floor(rateWindowMs / 4)), () => {
        const r = rate.sample(clock.now(), this.received);
        if (r !== undefined && r < minBytesPerSec)
          this.fail(
            `it averaged ${Math.round(r)} bytes/s over the last ${rateWindowMs / 1000} s, below the minimum rate (AGENT_FETCH_MIN_BYTES_PER_SEC=${minBytesPerSec})`,
          );
      });
      this.stops.push(stopRate);
    }
  }

  /** Aborted once a limit is broken (for waits between attempts). */
  get signal(): AbortSignal {
    return this.aborted.signal;
  }

  /** The stream now being read: it is what a broken limit destroys. */
  reading(stream: Readable): void {
    this.current = stream;
    if (this.failure) stream.destroy(this.failure);
  }

  add(bytes: number): void {
    this.received += bytes;
  }

  private fail(why: string): void {
    if (this.failure) return;
    const seconds = Math.round((this.clock.now() - this.started) / 100) / 10;
    this.failure = new AgentError(
      ErrorCode.SourceUnavailable,
      `the download of ${this.info.url} was stopped after ${seconds} s with ${this.received} of ${this.info.size} bytes received: ${why}; its fetch slot is free again, try again later`,
    );
    this.stop();
    this.aborted.abort(this.failure);
    this.current?.destroy(this.failure);
  }

  stop(): void {
    for (const stop of this.stops.splice(0)) stop();
  }
}

/**
 * Counts bytes as they pass, keeping backpressure and error propagation. A source that sends nothing for
 * `stallMs` while it is being read fails the fetch, so no source can hold a fetch slot forever. `onFailed`
 * hears the source's own failure (which whatever reads this stream may report differently).
 */
function counted(
  source: Readable,
  onBytes: (n: number) => void,
  stall: { ms: number; clock: Clock },
  onFailed: (err: unknown) => void,
): Readable {
  return Readable.from(
    (async function* () {
      const watch = stallWatch(stall.clock, stall.ms, () =>
        source.destroy(
          new AgentError(ErrorCode.SourceUnavailable, `the artifact source sent nothing for ${stall.ms} ms`),
        ),
      );
      try {
        for await (const chunk of source) {
          onBytes((chunk as Buffer).length);
          // Only the wait for the source counts: not the time the unpack behind holds the chunk.
          watch.pause();
          yield chunk as Buffer;
          watch.touch();
        }
      } catch (err) {
        onFailed(err);
        throw err;
      } finally {
        watch.stop();
      }
    })(),
    { objectMode: false, highWaterMark: 1 << 20 },
  );
}

/**
 * Resolves model URLs to local directories: directories are used in place (SageMaker owns them); archives
 * are streamed from their source, unpacked and validated in a temporary directory and moved into the disk
 * cache. Concurrent fetches of the same artifact version share one download. Downloads share
 * `concurrency` slots fairly between sources (see FetchSlots), and each is held to a deadline and a
 * minimum rate, so slow sources cannot keep the others waiting.
 */
export class ArtifactFetcher {
  private readonly inflight = new Map<string, Promise<CacheEntry>>();
  private readonly slots: FetchSlots;
  private readonly granted = new Map<number, () => void>();

  constructor(private readonly options: FetcherOptions) {
    this.slots = new FetchSlots(options.concurrency);
  }

  /** Runs `work` in a fetch slot shared fairly with other sources. */
  private async inSlot<T>(source: string, work: () => Promise<T>): Promise<T> {
    const id = this.slots.enqueue(source);
    const admitted = new Promise<void>((resolve) => this.granted.set(id, resolve));
    this.admit();
    await admitted;
    try {
      return await work();
    } finally {
      this.slots.release(id);
      this.admit();
    }
  }

  private admit(): void {
    for (const id of this.slots.admit()) {
      const start = this.granted.get(id);
      this.granted.delete(id);
      start?.();
    }
  }

  private sourceFor(url: string): ArtifactSource {
    const s = this.options.sources.find((x) => x.handles(url));
    if (!s)
      throw new AgentError(
        ErrorCode.BadRequest,
        `unsupported model url '${url}': use an absolute path, file:// or s3://`,
      );
    return s;
  }

  /** Looks an artifact up without fetching it. */
  describe(url: string): Promise<ArtifactInfo> {
    return this.sourceFor(url).describe(url);
  }

  /** True when `fetch` would find this version on local disk (used in place, or in the disk cache). */
  isLocal(info: ArtifactInfo): boolean {
    return info.kind === 'directory' || this.options.cache.lookup(info.url, info.version) !== undefined;
  }

  /**
   * Makes the artifact at `url` available locally. `onDescribed` hears the artifact's version as soon as
   * it is known, so a caller can remember which version failed even when the fetch itself fails.
   */
  async fetch(
    url: string,
    hooks: { onProgress?: (p: FetchProgress) => void; onDescribed?: (info: ArtifactInfo) => void } = {},
  ): Promise<LocalArtifact> {
    const { onProgress, onDescribed } = hooks;
    const source = this.sourceFor(url);
    const info = await source.describe(url);
    onDescribed?.(info);
    if (info.kind === 'directory') {
      const dir = info.path as string;
      // Inspected before any walk: a directory that holds no model is refused without reading the tree,
      // and only the model directories found are measured, within the entry limit.
      const layout = await inspectArtifact(dir);
      let bytes = 0;
      // The rules an archive is unpacked by hold for a folder used in place: no FIFO, socket or device,
      // no link that leaves the artifact or leads nowhere (validate refuses the same, in the same words).
      for (const m of [layout.top, ...layout.members])
        bytes += await checkArtifactTree(m.dir, dir, this.options.limits.maxEntries);
      return { dir, info, entry: undefined, bytes, fetchMs: 0, release: () => undefined };
    }
    const { cache } = this.options;
    let entry = cache.lookup(url, info.version);
    const clock = this.options.clock ?? systemClock;
    const started = clock.now();
    let fetchMs = 0;
    if (!entry) {
      const key = `${url}\u0000${info.version}`;
      let p = this.inflight.get(key);
      if (!p) {
        p = this.inSlot(sourceKeyOf(info), () => this.download(source, info, onProgress)).finally(() =>
          this.inflight.delete(key),
        );
        this.inflight.set(key, p);
      }
      entry = await p;
      fetchMs = clock.now() - started;
    }
    cache.retain(entry);
    let released = false;
    const held = entry;
    return {
      dir: entry.dir,
      info,
      entry,
      bytes: entry.bytes,
      fetchMs,
      release: () => {
        if (released) return;
        released = true;
        cache.release(held);
      },
    };
  }

  /**
   * One download into the cache, in a slot: streamed, unpacked into a temporary directory, validated and
   * committed. A source that cannot resume asks for a restart (SourceRestart): the partial unpack is removed
   * and the artifact opened again from byte 0. Whatever fails, no temporary directory is left behind.
   */
  private async download(
    source: ArtifactSource,
    info: ArtifactInfo,
    onProgress?: (p: FetchProgress) => void,
  ): Promise<CacheEntry> {
    const { cache, logger, limits, progressIntervalMs } = this.options;
    const restartAttempts = this.options.restartAttempts ?? DEFAULT_RESTART_ATTEMPTS;
    const clock = this.options.clock ?? systemClock;
    const watch = new DownloadWatch(
      info,
      {
        deadlineMs: this.options.deadlineMs ?? 0,
        minBytesPerSec: this.options.minBytesPerSec ?? 0,
        rateWindowMs: this.options.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS,
      },
      clock,
    );
    const started = clock.now();
    let bytes = 0;
    const report = () => {
      const seconds = (clock.now() - started) / 1000;
      logger.info('fetching artifact', {
        url: info.url,
        bytes,
        totalBytes: info.size,
        percent: info.size > 0 ? Math.round((1000 * bytes) / info.size) / 10 : 100,
        mbPerSec: seconds > 0 ? Math.round((bytes / 1e6 / seconds) * 10) / 10 : 0,
      });
    };
    const stopReports = clock.every(progressIntervalMs, report);
    try {
      for (let restarts = 0; ; restarts++) {
        const tmp = await cache.tempDir();
        let sourceFailure: unknown;
        let opened: Readable | undefined;
        try {
          bytes = 0;
          opened = await source.open(info);
          watch.reading(opened);
          const stream = counted(
            opened,
            (n) => {
              bytes += n;
              watch.add(n);
              onProgress?.({ phase: 'downloading', bytes, totalBytes: info.size });
            },
            { ms: this.options.stallTimeoutMs, clock },
            (err) => (sourceFailure = err),
          );
          const unpacked = await unpackTar(stream, tmp, limits);
          // The bytes are all here: the limits were for the transfer, not the local work that follows.
          watch.stop();
          // Validated before it enters the cache: an unusable artifact never becomes an entry.
          await inspectArtifact(tmp);
          const entry = await cache.commit(tmp, info.url, info.version);
          logger.info('artifact cached', {
            url: info.url,
            bytes,
            unpackedBytes: unpacked.bytes,
            entries: unpacked.entries,
            restarts,
            ms: clock.now() - started,
          });
          return entry;
        } catch (err) {
          // At once: the unpack's own teardown of its input may wait for a slow source's next chunk.
          opened?.destroy();
          await fsp.rm(tmp, { recursive: true, force: true });
          // A broken limit or the source's own failure explains the fetch better than what the unpack saw.
          const why =
            watch.failure ?? (isAgentError(sourceFailure, ErrorCode.SourceUnavailable) ? sourceFailure : err);
          if (!(why instanceof SourceRestart)) throw why;
          if (restarts >= restartAttempts)
            throw new AgentError(
              ErrorCode.SourceUnavailable,
              `${why.message}; gave up after ${restarts} restarts from the beginning`,
              { cause: why },
            );
          logger.warn('artifact download restarts from the beginning', {
            url: info.url,
            restart: restarts + 1,
            reason: messageOf(why),
          });
          await clock
            .sleep(backoffMs(restarts, { baseMs: 100, maxMs: 5_000, jitter: 0.5 }), watch.signal)
            .catch(() => undefined);
          if (watch.failure) throw watch.failure;
        }
      }
    } finally {
      watch.stop();
      stopReports();
    }
  }
}
