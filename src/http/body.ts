import type { Request } from 'express';
import { AgentError, ErrorCode } from '../errors';

/**
 * Reads a request body into memory, refusing it with 413 as soon as it passes `limit` (declared length
 * checked first, then the running total), so an oversized body is never buffered whole.
 */
export function readBody(req: Request, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
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
      else resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > limit) {
        req.pause();
        finish(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish();
    const onError = (err: Error) =>
      finish(new AgentError(ErrorCode.BadRequest, `request body could not be read: ${err.message}`));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(limit: number): AgentError {
  return new AgentError(
    ErrorCode.PayloadTooLarge,
    `request body is larger than the limit of ${limit} bytes (AGENT_MAX_BODY_BYTES)`,
  );
}
