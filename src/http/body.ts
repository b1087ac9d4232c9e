import type { IncomingMessage } from 'node:http';
import { AgentError, ErrorCode } from '../errors';

/**
 * Reads a request body into memory, refusing it with 413 as soon as it passes `limit` (declared length
 * checked first, then the running total), so an oversized body is never buffered whole. `limitName` says
 * which limit applied (a setting, or a route's fixed limit) and is part of the 413 text.
 *
 * A body that declares a length up to PREALLOCATE_BYTES is copied into one buffer of that size as it
 * arrives (no list of chunks to concatenate at the end). Larger declared lengths are not trusted with an
 * allocation before their bytes arrive.
 */
const PREALLOCATE_BYTES = 8 * 1024 * 1024;

export function readBody(req: IncomingMessage, limit: number, limitName: string): Promise<Buffer> {
  const declaredHeader = req.headers['content-length'];
  const declared = declaredHeader === undefined ? NaN : Number(declaredHeader);
  if (declared > limit) return Promise.reject(tooLarge(limit, limitName));
  return new Promise((resolve, reject) => {
    const sized = Number.isSafeInteger(declared) && declared > 0 && declared <= PREALLOCATE_BYTES;
    const target = sized ? Buffer.allocUnsafe(declared) : undefined;
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) reject(err);
      else if (target) resolve(total === target.length ? target : target.subarray(0, total));
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      const next = total + chunk.length;
      if (next > limit || (target && next > target.length)) {
        req.pause();
        finish(
          next > limit
            ? tooLarge(limit, limitName)
            : new AgentError(ErrorCode.BadRequest, 'request body is longer than its Content-Length'),
        );
        return;
      }
      if (target) chunk.copy(target, total);
      else chunks.push(chunk);
      total = next;
    };
    const onEnd = () => finish();
    const onError = (err: Error) =>
      finish(new AgentError(ErrorCode.BadRequest, `request body could not be read: ${err.message}`));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(limit: number, limitName: string): AgentError {
  return new AgentError(
    ErrorCode.PayloadTooLarge,
    `request body is larger than the limit of ${limit} bytes (${limitName})`,
  );
}
