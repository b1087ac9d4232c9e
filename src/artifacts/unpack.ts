import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { AgentError, ErrorCode } from '../errors';
import { settlesWithin } from '../time';

/** Limits that stop tar bombs: checked against the bytes actually written, never the headers' claims. */
export interface UnpackLimits {
  maxEntries: number;
  maxBytes: number;
  /**
   * The disk cache's whole budget: an artifact that unpacks to more could never be kept, so unpacking stops
   * there (a refusal, remembered) instead of filling the disk first.
   */
  cacheBytes?: number;
}

export interface UnpackResult {
  entries: number;
  bytes: number;
}

/** Chunk size for reads, gunzip output and the tar parser: 1 MiB measured ~3× faster than defaults. */
export const UNPACK_CHUNK = 1 << 20;

/** Longest entry name accepted (Linux's PATH_MAX); longer names could only fail later, less clearly. */
const MAX_NAME_BYTES = 4096;

/** Files are created, never opened: an existing path (or a link planted there) makes the open fail. */
const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

const refuse = (entry: string, why: string) =>
  new AgentError(ErrorCode.InvalidModel, `refused archive entry '${entry}': ${why}`);

/**
 * An entry name as path components inside the root, or a refusal. Lexical only: what the components are
 * on disk is checked when they are created.
 */
function entryParts(name: string): string[] {
  if (name.includes('\0')) throw refuse(name, 'name contains a NUL byte');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw refuse(name, `name is longer than ${MAX_NAME_BYTES} bytes`);
  if (name.startsWith('/') || /^[A-Za-z]:[\\/]/.test(name) || name.startsWith('\\'))
    throw refuse(name, 'absolute path');
  const parts = name.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw refuse(name, "path contains '..'");
  return parts;
}

/** Strips setuid/setgid/sticky bits and keeps files readable (and directories traversable) by the owner. */
function safeMode(mode: number | undefined, dir: boolean): number {
  const m = (mode ?? (dir ? 0o755 : 0o644)) & 0o777;
  return dir ? m | 0o700 : m | 0o600;
}

const errnoOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | undefined)?.code;

/** Reads the first `n` bytes of a stream and puts them back, to sniff its format. */
function peek(stream: Readable, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let len = 0;
    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    const done = () => {
      cleanup();
      const b = Buffer.concat(chunks);
      if (b.length > 0) stream.unshift(b);
      resolve(b.subarray(0, n));
    };
    const onReadable = () => {
      let c: Buffer | null;
      while (len < n && (c = stream.read() as Buffer | null) !== null) {
        chunks.push(c);
        len += c.length;
      }
      if (len >= n) done();
    };
    const onEnd = () => done();
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

/**
 * One extraction into a fresh directory that nothing else writes to. Its rules make escaping impossible
 * whatever the archive holds, because every check is made against the disk:
 * - entries are written only below real directories (each parent is `lstat`ed; a link or file there is a
 *   refusal), and files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, never opened if they exist;
 * - symbolic links are created only after every other entry, so no entry can be written through one; each
 *   must resolve (`realpath`, on disk) to a file or directory inside the root, and since nothing is ever
 *   removed or replaced after that, what a link resolves to cannot change;
 * - hard links may only name a regular file this archive wrote earlier.
 */
class Extraction {
  /** Relative paths known to be real directories ('' is the root). */
  private readonly dirs = new Set<string>(['']);
  /** Relative paths of regular files this archive wrote. */
  private readonly files = new Set<string>();
  private readonly symlinks: { name: string; parts: string[]; target: string }[] = [];
  private readonly dirModes: [string, number][] = [];
  entries = 0;
  bytes = 0;
  /** The extraction's own refusal; it wins over the input failure that stopping the input causes. */
  refusal: AgentError | undefined;

  constructor(
    readonly root: string,
    private readonly limits: UnpackLimits,
  ) {}

  private abs(parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Makes sure every component of `parts` is a real directory, creating missing ones. */
  private async ensureDirs(name: string, parts: string[]): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.dirs.has(rel)) continue;
      const abs = this.abs(parts.slice(0, i));
      const st = await fsp.lstat(abs).catch((err: unknown) => {
        if (errnoOf(err) === 'ENOENT') return undefined;
        throw err;
      });
      if (st === undefined) {
        await fsp.mkdir(abs, { mode: 0o700 });
      } else if (!st.isDirectory()) {
        throw refuse(name, `'${rel}' is ${st.isSymbolicLink() ? 'a link' : 'a file'}, not a directory`);
      }
      this.dirs.add(rel);
    }
  }

  /** A path about to be (re)written: a regular file of this archive is replaced (tar's rule), nothing else. */
  private async clearFor(name: string, parts: string[]): Promise<void> {
    const rel = parts.join('/');
    if (this.dirs.has(rel)) throw refuse(name, 'the archive already has a directory of that name');
    if (!this.files.has(rel)) return;
    const st = await fsp.lstat(this.abs(parts));
    if (!st.isFile()) throw refuse(name, 'the archive already has a different entry of that name');
    await fsp.unlink(this.abs(parts));
    this.files.delete(rel);
  }

  async file(
    name: string,
    parts: string[],
    mode: number | undefined,
    data: AsyncIterable<Buffer>,
  ): Promise<void> {
    if (parts.length === 0) throw refuse(name, 'a file cannot be the archive root');
    await this.ensureDirs(name, parts.slice(0, -1));
    await this.clearFor(name, parts);
    const fh = await fsp.open(this.abs(parts), CREATE_FLAGS, safeMode(mode, false));
    this.files.add(parts.join('/'));
    try {
      // One write in flight while the next chunk is read: the disk and the parser work at once.
      let writing: Promise<unknown> = Promise.resolve();
      for await (const chunk of data) {
        this.bytes += chunk.length;
        const cache = this.limits.cacheBytes;
        // Bigger than the whole cache can never be kept under these settings: refused (and remembered) like a
        // bomb, so requests do not download and unpack it again and again.
        if (cache !== undefined && cache < this.limits.maxBytes && this.bytes > cache)
          throw (this.refusal = refuse(
            name,
            `the artifact unpacks to more than the whole disk cache (MODEL_CACHE_BYTES=${cache}); unpacking stopped here`,
          ));
        if (this.bytes > this.limits.maxBytes)
          throw (this.refusal = refuse(
            name,
            `the archive unpacks to more than ${this.limits.maxBytes} bytes`,
          ));
        await writing;
        writing = fh.write(chunk);
      }
      await writing;
    } finally {
      await fh.close();
    }
  }

  async directory(name: string, parts: string[], mode: number | undefined): Promise<void> {
    await this.ensureDirs(name, parts);
    if (parts.length > 0) this.dirModes.push([this.abs(parts), safeMode(mode, true)]);
  }

  async hardLink(name: string, parts: string[], linkname: string): Promise<void> {
    if (parts.length === 0) throw refuse(name, 'a link cannot be the archive root');
    const targetParts = entryParts(linkname);
    const target = this.abs(targetParts);
    const st = this.files.has(targetParts.join('/')) ? await fsp.lstat(target) : undefined;
    if (!st?.isFile())
      throw refuse(name, `hard link to '${linkname}', which is not a file earlier in the archive`);
    await this.ensureDirs(name, parts.slice(0, -1));
    await this.clearFor(name, parts);
    await fsp.link(target, this.abs(parts));
    this.files.add(parts.join('/'));
  }

  /** Symbolic links are checked lexically now and made, and checked on disk, at the end. */
  symlink(name: string, parts: string[], target: string): void {
    if (parts.length === 0) throw refuse(name, 'a link cannot be the archive root');
    if (target === '' || target.includes('\0')) throw refuse(name, 'symlink with an empty or invalid target');
    if (path.isAbsolute(target) || target.startsWith('\\'))
      throw refuse(name, `symlink to absolute path '${target}'`);
    const lexical = path.resolve(path.dirname(this.abs(parts)), target);
    if (!this.inside(lexical)) throw refuse(name, `symlink points outside the artifact ('${target}')`);
    this.symlinks.push({ name, parts, target });
  }

  private inside(p: string): boolean {
    return p === this.root || p.startsWith(this.root + path.sep);
  }

  /** Makes the deferred links (in as many passes as chains of links need) and sets directory modes. */
  async finish(): Promise<void> {
    let pending = this.symlinks;
    while (pending.length > 0) {
      const next: typeof pending = [];
      for (const l of pending) {
        const dir = path.dirname(this.abs(l.parts));
        // Joined as text, not path.resolve(): '..' must be resolved by the disk, after any link before it.
        const resolved = await fsp.realpath(`${dir}/${l.target}`).catch((err: unknown) => {
          if (errnoOf(err) === 'ENOENT') return undefined;
          if (errnoOf(err) === 'ELOOP') throw refuse(l.name, `symlink '${l.target}' loops`);
          throw err;
        });
        if (resolved === undefined) {
          next.push(l); // may name a link not made yet
          continue;
        }
        if (!this.inside(resolved))
          throw refuse(l.name, `symlink '${l.target}' resolves outside the artifact on disk`);
        await this.ensureDirs(l.name, l.parts.slice(0, -1));
        await fsp.symlink(l.target, this.abs(l.parts)).catch((err: unknown) => {
          if (errnoOf(err) === 'EEXIST')
            throw refuse(l.name, 'the archive already has a different entry of that name');
          throw err;
        });
      }
      if (next.length === pending.length) {
        const l = next[0];
        throw refuse(l.name, `symlink to '${l.target}', which the archive does not contain`);
      }
      pending = next;
    }
    // Directory modes last, so a read-only directory does not block writing into it. Only real
    // directories are changed (chmod would follow a link).
    for (const [d, mode] of this.dirModes) if ((await fsp.lstat(d)).isDirectory()) await fsp.chmod(d, mode);
  }
}

/**
 * Streams a (gzipped) tar into `root` (a fresh directory) in one pass with backpressure, refusing unsafe
 * entries: absolute paths, `..`, anything written through a link, links that resolve outside the artifact
 * on disk, hard links to anything but a file of the same archive, devices and FIFOs, and more entries or
 * bytes than the limits. An archive that ends early is refused at once, naming the entry it ended in. On
 * any failure the caller removes `root`.
 */
export async function unpackTar(source: Readable, root: string, limits: UnpackLimits): Promise<UnpackResult> {
  await fsp.mkdir(root, { recursive: true });
  // Files are created exclusively: a target that already holds files would fail in confusing ways.
  if ((await fsp.readdir(root)).length > 0)
    throw new AgentError(ErrorCode.Internal, `unpack target ${root} is not empty`);
  const out = new Extraction(await fsp.realpath(root), limits);
  const extract = tar.extract();
  const head = await peek(source, 2).catch((err: unknown) => {
    throw asArchiveError(err);
  });
  // Gzip is recognised by its magic bytes, not the file name. zlib runs on the libuv thread pool,
  // beside the tar parser on the main thread.
  const stages: NodeJS.ReadWriteStream[] =
    head[0] === 0x1f && head[1] === 0x8b ? [zlib.createGunzip({ chunkSize: UNPACK_CHUNK })] : [];
  const feeding = pipeline([source, ...stages, extract]);
  // Input that fails or ends inside an entry ends every wait on that entry: no await outlives the input.
  let current = '';
  let last = '';
  const inputFailed = new Promise<never>((_, reject) => {
    feeding.catch((err: unknown) => reject(inputError(asArchiveError(err), current, last)));
  });
  inputFailed.catch(() => undefined);
  // The entry work a failure interrupted: awaited (briefly) before returning, so no write of this call
  // lands in `root` after the caller has removed it.
  let working: Promise<unknown> = Promise.resolve();
  const bounded = <T>(work: Promise<T>): Promise<T> => {
    working = work;
    return Promise.race([work, inputFailed]).catch((err: unknown) => {
      throw out.refusal ?? err;
    });
  };

  try {
    const entries = extract[Symbol.asyncIterator]();
    for (;;) {
      const next = await bounded(entries.next());
      if (next.done) break;
      const entry = next.value;
      const h = entry.header;
      current = h.name;
      if (++out.entries > limits.maxEntries)
        throw refuse(h.name, `the archive has more than ${limits.maxEntries} entries`);
      const parts = entryParts(h.name);
      try {
        switch (h.type) {
          case 'file':
          case 'contiguous-file':
            await bounded(out.file(h.name, parts, h.mode, entry as AsyncIterable<Buffer>));
            break;
          case 'directory':
            await bounded(out.directory(h.name, parts, h.mode));
            entry.resume();
            break;
          case 'symlink':
            out.symlink(h.name, parts, h.linkname ?? '');
            entry.resume();
            break;
          case 'link':
            await bounded(out.hardLink(h.name, parts, h.linkname ?? ''));
            entry.resume();
            break;
          case 'character-device':
          case 'block-device':
          case 'fifo':
            throw refuse(h.name, `${h.type} entries are not allowed`);
          default:
            throw refuse(h.name, `unsupported entry type '${h.type}'`);
        }
      } catch (err) {
        entry.destroy();
        throw entryError(h.name, err);
      }
      last = current;
      current = '';
    }
    await bounded(feeding);
    await out.finish();
  } catch (err) {
    extract.destroy();
    source.destroy();
    await settlesWithin(working, INTERRUPTED_WORK_WAIT_MS);
    throw asArchiveError(err);
  }
  return { entries: out.entries, bytes: out.bytes };
}

/** How long a failed unpack waits for its interrupted file operation (it ends once its stream is destroyed). */
const INTERRUPTED_WORK_WAIT_MS = 1000;

/** Says where a broken or truncated input stopped: while an entry was read, or after the last whole one. */
function inputError(e: AgentError, current: string, last: string): AgentError {
  if (e.code !== ErrorCode.InvalidModel) return e;
  const detail = e.message.replace(/^corrupt or truncated archive: /, '');
  const where = current
    ? `the input ends or breaks while entry '${current}' is read`
    : last
      ? `the input ends or breaks after entry '${last}'`
      : undefined;
  if (!where) return e;
  return new AgentError(ErrorCode.InvalidModel, `corrupt or truncated archive: ${where} (${detail})`, {
    cause: e,
  });
}

/** A file-system failure while writing an entry is the entry's fault unless the disk is full. */
function entryError(name: string, err: unknown): unknown {
  if (err instanceof AgentError) return err;
  const code = errnoOf(err);
  if (code && ['EEXIST', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP', 'EINVAL', 'EPERM'].includes(code))
    return refuse(name, (err as Error).message);
  return err;
}

function asArchiveError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'Z_DATA_ERROR' || e?.code === 'Z_BUF_ERROR' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new AgentError(ErrorCode.InvalidModel, `corrupt or truncated archive: ${e.message}`, {
      cause: err,
    });
  }
  if (e?.code === 'ENOSPC')
    return new AgentError(ErrorCode.InsufficientCapacity, `No space left on device while unpacking`, {
      cause: err,
    });
  if (e?.code && /^E[A-Z]+$/.test(e.code)) {
    return new AgentError(ErrorCode.Internal, `unpacking failed: ${e.message}`, { cause: err });
  }
  return new AgentError(
    ErrorCode.InvalidModel,
    `corrupt or truncated archive: ${e?.message ?? String(err)}`,
    { cause: err },
  );
}
