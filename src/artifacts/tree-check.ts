import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { AgentError, ErrorCode, shown } from '../errors';

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

/**
 * What the loader refuses about one entry of a directory artifact, given its `lstat`, in the words the
 * loader and `validate` both use — the same rules the safe unpack applies to an archive: only regular
 * files, directories, and links that resolve to one of those inside the artifact. Undefined when fine.
 * Nothing is opened (a FIFO cannot block it).
 */
export async function entryProblem(abs: string, st: Stats, realRoot: string): Promise<string | undefined> {
  if (st.isFile() || st.isDirectory()) return undefined;
  if (!st.isSymbolicLink())
    return `is ${fileType(st)}; an artifact may hold only files, directories and links to them`;
  const target = shown(await fs.readlink(abs));
  const resolved = await fs.stat(abs).catch((err: unknown) => (err as NodeJS.ErrnoException).code ?? 'EIO');
  if (typeof resolved === 'string') {
    const which =
      resolved === 'ELOOP'
        ? 'is a loop of links'
        : resolved === 'ENOENT'
          ? 'does not exist'
          : `cannot be followed (${resolved})`;
    return `links to ${target}, which ${which}`;
  }
  if (isSpecial(resolved))
    return `links to ${target}, ${fileType(resolved)}; an artifact may hold only files, directories and links to them`;
  const real = await fs.realpath(abs);
  if (real !== realRoot && !real.startsWith(realRoot + path.sep))
    return `links to ${target}, outside the artifact (links must stay inside it, as in an archive)`;
  return undefined;
}

/**
 * Walks `dir` (inside the artifact `root`) with `lstat` only and refuses, as the loader, the first entry
 * `entryProblem` names; returns the bytes of its regular files. Stops with an error past `maxEntries`.
 */
export async function checkArtifactTree(dir: string, root: string, maxEntries = Infinity): Promise<number> {
  const realRoot = await fs.realpath(root);
  let total = 0;
  let seen = 0;
  const todo = [dir];
  for (let d = todo.pop(); d !== undefined; d = todo.pop()) {
    for (const name of await fs.readdir(d)) {
      if (++seen > maxEntries)
        throw new AgentError(ErrorCode.InvalidModel, `'${dir}' holds more than ${maxEntries} files`);
      const abs = path.join(d, name);
      const st = await fs.lstat(abs);
      if (st.isDirectory()) todo.push(abs);
      else if (st.isFile()) total += st.size;
      const problem = await entryProblem(abs, st, realRoot);
      if (problem)
        throw new AgentError(ErrorCode.InvalidModel, `${path.relative(root, abs) || '.'} ${problem}`);
    }
  }
  return total;
}
