import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';

/**
 * Reads a small regular file the agent wrote itself (a marker, an index, a cache entry's metadata) without
 * following a link or opening a FIFO or device: one of those in its place would hang the read or stream
 * gigabytes. The checks are made on the opened file itself (O_NOFOLLOW refuses a link, O_NONBLOCK keeps a
 * FIFO from blocking the open, fstat judges what was opened), so nothing can be swapped in between the
 * check and the read. Undefined when the path is anything but a regular file of at most `maxBytes`.
 */
export async function readSmallFile(file: string, maxBytes: number): Promise<string | undefined> {
  const handle = await fs
    .open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    .catch(() => undefined);
  if (!handle) return undefined;
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size > maxBytes) return undefined;
    // Room for the size seen plus one byte: a file that grew since the stat is refused, not read whole.
    const buffer = Buffer.alloc(Math.min(maxBytes, st.size) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > st.size || length > maxBytes) return undefined;
    }
    return buffer.toString('utf8', 0, length);
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => undefined);
  }
}
