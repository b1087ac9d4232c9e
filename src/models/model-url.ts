import { localPath, parseS3Url } from '../artifacts';
import { AgentError, ErrorCode } from '../errors';

/** Checks a load url: an absolute path or file:// URL (directory or archive), or s3://bucket/key. */
export function checkModelUrl(url: unknown): string {
  if (typeof url !== 'string' || url.trim() === '')
    throw new AgentError(ErrorCode.BadRequest, '"url" must be a non-empty string');
  const u = url.trim();
  if (u.startsWith('s3://')) {
    parseS3Url(u);
    return u;
  }
  const p = localPath(u);
  return u.startsWith('file://') ? u : p;
}
