import type { IncomingMessage } from 'node:http';
import { AgentError, ErrorCode } from '../errors';

/** Bodies up to this declared length get their buffer before any byte arrives. */
const PREALLOCATE_BYTES = 1024 * 1024;

/**
 * Reads a request body into memory, refusing it with 413 as soon as it passes `limit` (declared length
 * checked first, then the running total), so an oversized body is never buffered whole. `limitName` says
 * which limit applied (a setting, or a route's fixed limit) and is part of the 413 text.
 *
 * A body with a declared length is copied into one buffer of that size as it arrives, so no step copies
 * the whole body at once (a 64 MiB concatenation holds the event loop for tens of milliseconds). The
 * buffer is allocated up front for lengths up to PREALLOCATE_BYTES, and for longer ones only once that
 * many bytes have really arrived, so a declared length alone never buys an allocation.
 */
export function readBody(req: IncomingMessage, limit: number, limitName: string): Promise<Buffer> {
  const declaredHeader = req.headers['content-length'];
  const declared = declaredHeader === undefined ? NaN : Number(declaredHeader);
  if (declared > limit) return Promise.reject(tooLarge(limit, limitName));
  return new Promise((resolve, reject) => {
    const sized = Number.isSafeInteger(declared) && declared > 0;
    let target = sized && declared <= PREALLOCATE_BYTES ? Buffer.allocUnsafe(declared) : undefined;
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
      if (next > limit || (sized && next > declared)) {
        req.pause();
        finish(
          next > limit
            ? tooLarge(limit, limitName)
            : new AgentError(ErrorCode.BadRequest, 'request body is longer than its Content-Length'),
        );
        return;
      }
      if (!target && sized && next > PREALLOCATE_BYTES) {
        // Enough has arrived to believe the declared length: move to one buffer of that size.
        target = Buffer.allocUnsafe(declared);
        let off = 0;
        for (const c of chunks) off += c.copy(target, off);
        chunks.length = 0;
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
