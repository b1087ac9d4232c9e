import * as fs from 'node:fs/promises';

/**
 * Reads a small regular file the agent wrote itself (a marker, an index, a cache entry's metadata) without
 * following a link or opening a FIFO or device: one of those in its place would hang the read or stream
 * gigabytes. Undefined when the path is anything but a regular file of at most `maxBytes`.
 */
export async function readSmallFile(file: string, maxBytes: number): Promise<string | undefined> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st?.isFile() || st.size > maxBytes) return undefined;
  return fs.readFile(file, 'utf8').catch(() => undefined);
}
