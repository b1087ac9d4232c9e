import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { entryProblem } from '../artifacts';
export { fileType, isSpecial } from '../artifacts';

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
 * walk. Reports, as errors, every entry the loader refuses (artifacts/tree-check.ts, in its words): FIFOs,
 * sockets and devices, and links that lead to one, to nothing, or out of the artifact. Counts bytes per
 * directory for the model summaries.
 */
export async function scanTree(root: string, options: ScanOptions): Promise<TreeScan> {
  const realRoot = await fs.realpath(root);
  const scan: TreeScan = { bytes: 0, entries: 0, truncated: false, dirBytes: new Map(), problems: [] };

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
        // The loader's own rule and words (artifacts/tree-check.ts): what it refuses is an error here.
        const problem = await entryProblem(abs, st, realRoot);
        if (problem) scan.problems.push({ severity: 'error', where: relChild, message: problem });
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
