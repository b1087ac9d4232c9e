import type { Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { shown } from '../errors';

/** `FILE.k` as the agent's access log rotation names it: k a whole number from 1, no leading zero. */
const ROTATED_SUFFIX = /^\.([1-9]\d{0,5})$/;

/**
 * The rotated set of one access log, oldest first: FILE.N … FILE.1 that exist beside it, then FILE (the
 * agent rotates FILE → FILE.1 → FILE.2 …, AGENT_ACCESS_LOG_FILES deep). A gap (FILE.2 deleted by hand)
 * is fine; so is a log that has not rotated yet. FILE itself must exist: naming a file that does not is
 * a one-line error (with a hint when its rotated files do exist). A FILE that is not a regular file (a
 * pipe, `/dev/stdin`) is returned alone: it has no rotated files, and the reader decides whether it can
 * be read. Rotated files that are not regular files (a directory called FILE.3) are left out.
 */
export async function rotatedSet(file: string): Promise<string[]> {
  let st: Stats;
  try {
    st = await fsp.stat(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const siblings = e.code === 'ENOENT' ? await rotatedSiblings(file) : [];
    const hint =
      siblings.length > 0 ? ` (its rotated files exist: name ${shown(siblings[siblings.length - 1])})` : '';
    throw new Error(
      `cannot read access log ${shown(file)}: ${e.code === 'ENOENT' ? 'ENOENT: no such file' : e.message}${hint}`,
      { cause: err },
    );
  }
  if (!st.isFile()) return [file];
  return [...(await rotatedSiblings(file)), file];
}

/** FILE.N … FILE.1 that exist as regular files, oldest (highest N) first; none when the folder cannot be listed. */
async function rotatedSiblings(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const found: { k: number; file: string }[] = [];
  for (const name of names) {
    if (!name.startsWith(base)) continue;
    const m = ROTATED_SUFFIX.exec(name.slice(base.length));
    if (!m) continue;
    const sibling = path.join(dir, name);
    const st = await fsp.stat(sibling).catch(() => undefined);
    if (st?.isFile()) found.push({ k: Number(m[1]), file: sibling });
  }
  return found.sort((a, b) => b.k - a.k).map((f) => f.file);
}

/**
 * Every file to read for the logs named with `--log`, each expanded to its rotated set, in the order named,
 * each file once (`--log access.log --log access.log.1` reads access.log.1 once).
 */
export async function expandLogs(files: string[]): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const file of files) {
    for (const f of await rotatedSet(file)) {
      const key = path.resolve(f);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(f);
    }
  }
  return out;
}

/**
 * Short name of the logs read, for a chart: "access.log", "a.log, b.log", "access.log.9 … access.log
 * (10 files)". File names only (a chart is shared; the folders are the reader's business), with control
 * characters escaped and long names cut as in messages.
 */
export function describeLogs(files: string[]): string {
  const names = files.map((f) => shown(path.basename(f)).slice(1, -1));
  if (names.length <= 3) return names.join(', ');
  return `${names[0]} … ${names[names.length - 1]} (${names.length} files)`;
}
