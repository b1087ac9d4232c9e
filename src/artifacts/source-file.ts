import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { AgentError, ErrorCode } from '../errors';
import type { ArtifactInfo, ArtifactSource } from './artifact-source';
import { UNPACK_CHUNK } from './unpack';

const bad = (message: string) => new AgentError(ErrorCode.BadRequest, message);

/** A file:// URL as a path: no host, no encoded slashes, nothing `fileURLToPath` would reject with a throw. */
function fileUrlPath(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad(`'${url}' is not a valid file:// URL`);
  }
  if (u.host !== '' && u.host !== 'localhost')
    throw bad(`file:// URLs may not name a host ('${u.host}'); use file:///path`);
  if (/%2f|%5c|%00/i.test(u.pathname)) throw bad(`'${url}' encodes a slash or NUL in its path`);
  try {
    return fileURLToPath(u);
  } catch (err) {
    throw bad(`'${url}' is not a usable file:// URL: ${(err as Error).message}`);
  }
}

/** Kernel and device trees: never model artifacts, and reading them can block or never end. */
function refuseSystemTree(p: string, url: string): void {
  if (/^\/(dev|proc|sys)(\/|$)/.test(p)) throw bad(`model url '${url}' leads into /${p.split('/')[1]}`);
}

/** Turns an absolute path or a `file://` URL into a normalised absolute path (judged by its text). */
export function localPath(url: string): string {
  if (url.includes('\0')) throw bad('model url contains a NUL byte');
  const p = url.startsWith('file://') ? fileUrlPath(url) : url;
  if (!path.isAbsolute(p)) throw bad(`'${url}' is not an absolute path, a file:// URL or an s3:// URL`);
  const normal = path.resolve(p);
  refuseSystemTree(normal, url);
  return normal;
}

/** The path a model url really leads to on disk (links resolved), refusing system trees by that path. */
async function realLocalPath(url: string): Promise<string> {
  const p = localPath(url);
  let real: string;
  try {
    real = await fsp.realpath(p);
  } catch {
    throw new AgentError(ErrorCode.ArtifactNotFound, `model artifact not found: ${p}`);
  }
  refuseSystemTree(real, url);
  return real;
}

/** Local directories (used in place) and local archives (`.tar.gz`, `.tgz`, `.tar`), by path or file://. */
export class FileSource implements ArtifactSource {
  handles(url: string): boolean {
    return url.startsWith('/') || url.startsWith('file://');
  }

  async describe(url: string): Promise<ArtifactInfo> {
    const p = await realLocalPath(url);
    let st: fs.Stats;
    try {
      st = await fsp.stat(p);
    } catch {
      throw new AgentError(ErrorCode.ArtifactNotFound, `model artifact not found: ${p}`);
    }
    if (st.isDirectory()) return { url, kind: 'directory', path: p, size: 0, version: `dir:${st.mtimeMs}` };
    if (!st.isFile())
      throw new AgentError(ErrorCode.InvalidModel, `model artifact ${p} is neither a directory nor a file`);
    return { url, kind: 'archive', path: p, size: st.size, version: `${st.mtimeMs}:${st.size}` };
  }

  async open(info: ArtifactInfo): Promise<Readable> {
    // O_NONBLOCK: if the path was swapped for a FIFO since it was described, opening must not wait.
    const fh = await fsp.open(
      info.path ?? localPath(info.url),
      fs.constants.O_RDONLY | fs.constants.O_NONBLOCK,
    );
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new AgentError(ErrorCode.InvalidModel, `model artifact ${info.url} is not a regular file`);
    }
    return fh.createReadStream({ highWaterMark: UNPACK_CHUNK });
  }
}
