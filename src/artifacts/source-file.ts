import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { AgentError, ErrorCode } from '../errors';
import type { ArtifactInfo, ArtifactSource } from './artifact-source';
import { UNPACK_CHUNK } from './unpack';

/** Turns an absolute path or a `file://` URL into a normalised absolute path. */
export function localPath(url: string): string {
  const p = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (!path.isAbsolute(p)) {
    throw new AgentError(
      ErrorCode.BadRequest,
      `'${url}' is not an absolute path, a file:// URL or an s3:// URL`,
    );
  }
  const normal = path.resolve(p);
  if (/^\/(dev|proc|sys)(\/|$)/.test(normal)) {
    throw new AgentError(ErrorCode.BadRequest, `model url may not point into /${normal.split('/')[1]}`);
  }
  return normal;
}

/** Local directories (used in place) and local archives (`.tar.gz`, `.tgz`, `.tar`), by path or file://. */
export class FileSource implements ArtifactSource {
  handles(url: string): boolean {
    return url.startsWith('/') || url.startsWith('file://');
  }

  async describe(url: string): Promise<ArtifactInfo> {
    const p = localPath(url);
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
    return fs.createReadStream(info.path ?? localPath(info.url), { highWaterMark: UNPACK_CHUNK });
  }
}
