import * as fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { AgentError, ErrorCode } from '../errors';
import type { Logger } from '../observability';
import { inspectArtifact } from './artifact-layout';
import type { ArtifactInfo, ArtifactSource } from './artifact-source';
import { dirBytes, type CacheEntry, type DiskCache } from './disk-cache';
import { unpackTar, type UnpackLimits } from './unpack';

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
  logger: Logger;
}

/** A counting semaphore: at most `n` holders at once, FIFO. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Counts bytes as they pass, keeping backpressure and error propagation. A source that sends nothing for
 * `stallMs` while it is being read fails the fetch, so no source can hold a fetch slot forever.
 */
function counted(source: Readable, onBytes: (n: number) => void, stallMs: number): Readable {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () =>
        source.destroy(
          new AgentError(ErrorCode.SourceUnavailable, `the artifact source sent nothing for ${stallMs} ms`),
        ),
      stallMs,
    );
    timer.unref();
  };
  return Readable.from(
    (async function* () {
      arm();
      try {
        for await (const chunk of source) {
          arm();
          onBytes((chunk as Buffer).length);
          yield chunk as Buffer;
        }
      } finally {
        clearTimeout(timer);
      }
    })(),
    { objectMode: false, highWaterMark: 1 << 20 },
  );
}

/**
 * Resolves model URLs to local directories: directories are used in place (SageMaker owns them); archives
 * are streamed from their source, unpacked and validated in a temporary directory and moved into the disk
 * cache. Concurrent fetches of the same artifact version share one download.
 */
export class ArtifactFetcher {
  private readonly inflight = new Map<string, Promise<CacheEntry>>();
  private readonly slots: Semaphore;

  constructor(private readonly options: FetcherOptions) {
    this.slots = new Semaphore(options.concurrency);
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
      for (const m of [layout.top, ...layout.members])
        bytes += await dirBytes(m.dir, this.options.limits.maxEntries);
      return { dir, info, entry: undefined, bytes, fetchMs: 0, release: () => undefined };
    }
    const { cache } = this.options;
    let entry = cache.lookup(url, info.version);
    const started = Date.now();
    let fetchMs = 0;
    if (!entry) {
      const key = `${url}\u0000${info.version}`;
      let p = this.inflight.get(key);
      if (!p) {
        p = this.slots
          .run(() => this.download(source, info, onProgress))
          .finally(() => this.inflight.delete(key));
        this.inflight.set(key, p);
      }
      entry = await p;
      fetchMs = Date.now() - started;
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

  private async download(
    source: ArtifactSource,
    info: ArtifactInfo,
    onProgress?: (p: FetchProgress) => void,
  ): Promise<CacheEntry> {
    const { cache, logger, limits, progressIntervalMs } = this.options;
    const tmp = await cache.tempDir();
    const started = Date.now();
    let bytes = 0;
    const report = () => {
      const seconds = (Date.now() - started) / 1000;
      logger.info('fetching artifact', {
        url: info.url,
        bytes,
        totalBytes: info.size,
        percent: info.size > 0 ? Math.round((1000 * bytes) / info.size) / 10 : 100,
        mbPerSec: seconds > 0 ? Math.round((bytes / 1e6 / seconds) * 10) / 10 : 0,
      });
    };
    const timer = setInterval(report, progressIntervalMs);
    timer.unref();
    try {
      const stream = counted(
        await source.open(info),
        (n) => {
          bytes += n;
          onProgress?.({ phase: 'downloading', bytes, totalBytes: info.size });
        },
        this.options.stallTimeoutMs,
      );
      const unpacked = await unpackTar(stream, tmp, limits);
      // Validated before it enters the cache: an unusable artifact never becomes an entry.
      await inspectArtifact(tmp);
      const entry = await cache.commit(tmp, info.url, info.version);
      logger.info('artifact cached', {
        url: info.url,
        bytes,
        unpackedBytes: unpacked.bytes,
        entries: unpacked.entries,
        ms: Date.now() - started,
      });
      return entry;
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      clearInterval(timer);
    }
  }
}
