import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { shown } from '../planner';

/** What a file-system object is, as a message says it: 'a FIFO (named pipe)', 'a character device', … */
export function fileType(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** A FIFO, socket or device: what an artifact must never hold, and what reading could hang on. */
export const isSpecial = (st: Stats): boolean => !st.isFile() && !st.isDirectory() && !st.isSymbolicLink();

/** Something in the tree an artifact should not hold. */
export interface TreeProblem {
  severity: 'error' | 'warning';
  /** Relative to the scanned root, '/'-separated. */
  where: string;
  message: string;
}

export interface TreeScan {
  /** Bytes of regular files (links not followed). */
  bytes: number;
  /** Entries seen below the root (files, directories, links, anything else). */
  entries: number;
  /** True when the scan stopped at `maxEntries` (bytes and sizes then count only what was seen). */
  truncated: boolean;
  /** Bytes below each directory, by its path as joined from the root given. */
  dirBytes: Map<string, number>;
  problems: TreeProblem[];
}

export interface ScanOptions {
  /** Stop after this many entries. */
  maxEntries: number;
  signal?: AbortSignal;
}

/**
 * Walks a model directory with `lstat` only: nothing is opened, so a FIFO or a device cannot block the
 * walk. Reports FIFOs, sockets and devices (errors: the loader refuses such entries in an archive), and
 * links that lead to one (errors), to nothing, or out of the artifact (warnings: packed as they are, the
 * loader would refuse them). Counts bytes per directory for the model summaries.
 */
export async function scanTree(root: string, options: ScanOptions): Promise<TreeScan> {
  const realRoot = await fs.realpath(root);
  const scan: TreeScan = { bytes: 0, entries: 0, truncated: false, dirBytes: new Map(), problems: [] };
  const inside = (p: string) => p === realRoot || p.startsWith(realRoot + path.sep);

  async function checkLink(abs: string, rel: string): Promise<void> {
    const target = shown(await fs.readlink(abs));
    const st = await fs.stat(abs).catch((err: unknown) => (err as NodeJS.ErrnoException).code ?? 'EIO');
    if (typeof st === 'string') {
      const which =
        st === 'ELOOP'
          ? 'is a loop of links'
          : st === 'ENOENT'
            ? 'does not exist'
            : `cannot be followed (${st})`;
      scan.problems.push({ severity: 'warning', where: rel, message: `links to ${target}, which ${which}` });
    } else if (isSpecial(st)) {
      scan.problems.push({
        severity: 'error',
        where: rel,
        message: `links to ${target}, ${fileType(st)}; an artifact may hold only files, directories and links to them`,
      });
    } else if (!inside(await fs.realpath(abs))) {
      scan.problems.push({
        severity: 'warning',
        where: rel,
        message: `links to ${target}, outside the artifact; packed as it is, the loader would refuse it`,
      });
    }
  }

  async function walk(dir: string, rel: string): Promise<number> {
    options.signal?.throwIfAborted();
    let total = 0;
    const d = await fs.opendir(dir);
    try {
      for await (const e of d) {
        if (scan.entries >= options.maxEntries) {
          scan.truncated = true;
          break;
        }
        scan.entries++;
        const abs = path.join(dir, e.name);
        const relChild = rel === '' ? e.name : `${rel}/${e.name}`;
        const st = await fs.lstat(abs);
        if (st.isDirectory()) total += await walk(abs, relChild);
        else if (st.isFile()) total += st.size;
        else if (st.isSymbolicLink()) await checkLink(abs, relChild);
        else
          scan.problems.push({
            severity: 'error',
            where: relChild,
            message: `is ${fileType(st)}; an artifact may hold only files, directories and links (the loader refuses FIFOs, sockets and devices)`,
          });
        if (scan.truncated) break;
      }
    } finally {
      await d.close().catch(() => undefined);
    }
    scan.dirBytes.set(dir, total);
    return total;
  }

  scan.bytes = await walk(root, '');
  return scan;
}
