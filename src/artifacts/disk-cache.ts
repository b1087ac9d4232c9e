import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { readSmallFile } from '../files';
import * as path from 'node:path';
import { AgentError, ErrorCode } from '../errors';

/** One unpacked artifact in the cache. */
export interface CacheEntry {
  readonly key: string;
  readonly url: string;
  readonly version: string;
  /** Where the unpacked files are. */
  readonly dir: string;
  readonly bytes: number;
  lastUsed: number;
  /** Holders (models registered on it); an entry with holders is never removed. */
  refs: number;
}

interface EntryMeta {
  url: string;
  version: string;
  bytes: number;
  lastUsed: number;
}

/**
 * Bytes of the regular files under `p` (links are not followed). Iterative, and with `maxEntries` it stops
 * with an error once it has seen that many entries, so no tree can make it walk for long.
 */
export async function dirBytes(p: string, maxEntries = Infinity): Promise<number> {
  let total = 0;
  let seen = 0;
  const todo = [p];
  for (let dir = todo.pop(); dir !== undefined; dir = todo.pop()) {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      if (++seen > maxEntries)
        throw new AgentError(ErrorCode.InvalidModel, `'${p}' holds more than ${maxEntries} files`);
      const full = path.join(dir, e.name);
      if (e.isDirectory()) todo.push(full);
      else if (e.isFile()) total += (await fsp.lstat(full)).size;
    }
  }
  return total;
}

/**
 * Unpacked artifacts on local disk, with a byte budget and LRU eviction of entries nobody holds. Keyed by
 * source URL and version (ETag or mtime), so a changed artifact is fetched again. The index lives on disk
 * beside each entry and is rebuilt at start; half-written temporary directories are removed.
 *
 * Layout: `<root>/entries/<key>/meta.json` + `<root>/entries/<key>/content/`, `<root>/tmp/<random>/`.
 */
export class DiskCache {
  private readonly entries = new Map<string, CacheEntry>();
  private used = 0;

  constructor(
    readonly root: string,
    readonly budgetBytes: number,
    private readonly now: () => number = Date.now,
  ) {}

  static keyOf(url: string, version: string): string {
    return createHash('sha256').update(`${url}\u0000${version}`).digest('hex').slice(0, 24);
  }

  private entryDir(key: string): string {
    return path.join(this.root, 'entries', key);
  }

  /** Rebuilds the index from disk and removes leftovers of interrupted fetches. */
  async open(): Promise<void> {
    await fsp.rm(path.join(this.root, 'tmp'), { recursive: true, force: true });
    await fsp.mkdir(path.join(this.root, 'tmp'), { recursive: true });
    await fsp.mkdir(path.join(this.root, 'entries'), { recursive: true });
    this.entries.clear();
    this.used = 0;
    for (const key of await fsp.readdir(path.join(this.root, 'entries'))) {
      const dir = this.entryDir(key);
      try {
        // A FIFO or a link to a device in its place is not an entry (and is never opened).
        const text = await readSmallFile(path.join(dir, 'meta.json'), 64 * 1024);
        if (text === undefined) throw new Error('no readable meta.json');
        const meta = JSON.parse(text) as EntryMeta;
        if (DiskCache.keyOf(meta.url, meta.version) !== key) throw new Error('key mismatch');
        await fsp.access(path.join(dir, 'content'));
        this.entries.set(key, {
          key,
          url: meta.url,
          version: meta.version,
          dir: path.join(dir, 'content'),
          bytes: meta.bytes,
          lastUsed: meta.lastUsed,
          refs: 0,
        });
        this.used += meta.bytes;
      } catch {
        // Incomplete or foreign: not part of the cache.
        await fsp.rm(dir, { recursive: true, force: true });
      }
    }
  }

  get usedBytes(): number {
    return this.used;
  }

  list(): CacheEntry[] {
    return [...this.entries.values()];
  }

  /** The entry for this exact artifact version, marked as just used. */
  lookup(url: string, version: string): CacheEntry | undefined {
    const e = this.entries.get(DiskCache.keyOf(url, version));
    if (e) e.lastUsed = this.now();
    return e;
  }

  /** A fresh temporary directory to unpack into (same filesystem as the entries, for an atomic rename). */
  async tempDir(): Promise<string> {
    const dir = path.join(this.root, 'tmp', randomBytes(8).toString('hex'));
    await fsp.mkdir(dir, { recursive: true });
    return dir;
  }

  /**
   * Moves a complete, validated unpack into the cache, first evicting unheld entries in LRU order to keep
   * within the budget. Fails with INSUFFICIENT_CAPACITY (and removes `tmp`) when it cannot fit.
   */
  async commit(tmp: string, url: string, version: string): Promise<CacheEntry> {
    try {
      const bytes = await dirBytes(tmp);
      await this.makeRoom(bytes, url);
      const key = DiskCache.keyOf(url, version);
      const dir = this.entryDir(key);
      const old = this.entries.get(key);
      if (old) await this.remove(old);
      await fsp.mkdir(dir, { recursive: true });
      await fsp.rename(tmp, path.join(dir, 'content'));
      const entry: CacheEntry = {
        key,
        url,
        version,
        dir: path.join(dir, 'content'),
        bytes,
        lastUsed: this.now(),
        refs: 0,
      };
      // meta.json last: an entry without it is incomplete and dropped at the next start.
      await fsp.writeFile(
        path.join(dir, 'meta.json'),
        JSON.stringify({ url, version, bytes, lastUsed: entry.lastUsed } satisfies EntryMeta),
      );
      this.entries.set(key, entry);
      this.used += bytes;
      return entry;
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }

  private async makeRoom(bytes: number, url: string): Promise<void> {
    if (bytes > this.budgetBytes) {
      throw new AgentError(
        ErrorCode.InsufficientCapacity,
        `artifact ${url} unpacks to ${bytes} bytes, more than the whole disk cache (MODEL_CACHE_BYTES=${this.budgetBytes})`,
      );
    }
    if (this.used + bytes <= this.budgetBytes) return;
    const victims = [...this.entries.values()]
      .filter((e) => e.refs === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    let free = this.budgetBytes - this.used;
    const chosen: CacheEntry[] = [];
    for (const v of victims) {
      if (free >= bytes) break;
      chosen.push(v);
      free += v.bytes;
    }
    if (free < bytes) {
      const held = [...this.entries.values()].filter((e) => e.refs > 0).reduce((a, e) => a + e.bytes, 0);
      throw new AgentError(
        ErrorCode.InsufficientCapacity,
        `No space left in the disk cache for ${url}: it needs ${bytes} bytes, ${this.budgetBytes - this.used} are free and ${held} are held by loaded models`,
      );
    }
    for (const v of chosen) await this.remove(v);
  }

  /** Removes an entry (never one that is held). */
  async remove(entry: CacheEntry): Promise<void> {
    if (entry.refs > 0) return;
    if (this.entries.get(entry.key) !== entry) return;
    this.entries.delete(entry.key);
    this.used -= entry.bytes;
    await fsp.rm(this.entryDir(entry.key), { recursive: true, force: true });
  }

  retain(entry: CacheEntry): void {
    entry.refs++;
    entry.lastUsed = this.now();
  }

  release(entry: CacheEntry): void {
    entry.refs = Math.max(0, entry.refs - 1);
  }
}
