import type { IncomingMessage } from 'node:http';
import { AgentError, ErrorCode } from '../errors';

/** Bodies up to this declared length get their buffer before any byte arrives. */
const PREALLOCATE_BYTES = 1024 * 1024;

/**
 * How to read a body whose first `headerSize` bytes say where the rest goes (KServe's binary+json): once
 * the header has arrived, `place` may give views to read the rest into, in order, adding up to its length,
 * and what it read the header as (handed on, so the header is not parsed twice).
 */
export interface BodyPlacement {
  headerSize: number;
  place(header: Buffer, restLength: number): { views: Buffer[]; parsedHeader?: unknown } | undefined;
}

/** A body read with a placement: its header, and the rest read straight into the placement's views. */
export interface PlacedParts {
  header: Buffer;
  parsedHeader?: unknown;
  sections: Buffer[];
  length: number;
}

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
  return readPlacedBody(req, limit, limitName) as Promise<Buffer>;
}

/**
 * readBody, except that with a `placement` a body with a declared length is read into the views the
 * placement gives once its header has arrived (the allocation rule above holds for them too). Without a
 * placement, or when it gives none, or when the body ends short of its declared length, the body is one
 * buffer.
 */
export function readPlacedBody(
  req: IncomingMessage,
  limit: number,
  limitName: string,
  placement?: BodyPlacement,
): Promise<Buffer | PlacedParts> {
  const declaredHeader = req.headers['content-length'];
  const declared = declaredHeader === undefined ? NaN : Number(declaredHeader);
  if (declared > limit) return Promise.reject(tooLarge(limit, limitName));
  return new Promise((resolve, reject) => {
    const sized = Number.isSafeInteger(declared) && declared > 0;
    // Chunks not yet copied to their place; once a place is chosen, `copyIn` copies each chunk there.
    const pending: Buffer[] = [];
    let total = 0;
    let copyIn: ((chunk: Buffer) => void) | undefined;
    let result: (() => Buffer | PlacedParts) | undefined;
    let done = false;
    const choosePlace = () => {
      if (!sized || copyIn) return;
      // Enough must have arrived to believe the declared length, and to read the header.
      if (declared > PREALLOCATE_BYTES && total <= PREALLOCATE_BYTES) return;
      if (placement && placement.headerSize <= declared) {
        if (total < placement.headerSize) return;
        if (placeInto(placement)) return;
      }
      const target = Buffer.allocUnsafe(declared);
      let at = 0;
      copyIn = (chunk) => {
        at += chunk.copy(target, at);
      };
      result = () => (at === target.length ? target : target.subarray(0, at));
      replay(0);
    };
    const placeInto = (p: BodyPlacement): boolean => {
      const header = copyOut(pending, p.headerSize);
      const restLength = declared - p.headerSize;
      const placed = p.place(header, restLength);
      if (!placed || placed.views.reduce((n, v) => n + v.length, 0) !== restLength) return false;
      const { views, parsedHeader } = placed;
      let view = 0;
      let at = 0;
      copyIn = (chunk) => {
        for (let off = 0; off < chunk.length;) {
          const v = views[view];
          if (at === v.length) {
            view++;
            at = 0;
            continue;
          }
          const n = Math.min(v.length - at, chunk.length - off);
          chunk.copy(v, at, off, off + n);
          at += n;
          off += n;
        }
      };
      result = () =>
        total === declared
          ? { header, parsedHeader, sections: views, length: total }
          : Buffer.concat([header, ...views]).subarray(0, total);
      replay(p.headerSize);
      return true;
    };
    /** Copies the pending chunks, from byte `from` of the body on, to the chosen place. */
    const replay = (from: number) => {
      let skip = from;
      for (const c of pending) {
        if (skip >= c.length) {
          skip -= c.length;
          continue;
        }
        copyIn?.(skip === 0 ? c : c.subarray(skip));
        skip = 0;
      }
      pending.length = 0;
    };
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      if (err) reject(err);
      else if (result) resolve(result());
      else resolve(pending.length === 1 ? pending[0] : Buffer.concat(pending, total));
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
      if (copyIn) {
        copyIn(chunk);
        total = next;
        return;
      }
      pending.push(chunk);
      total = next;
      choosePlace();
    };
    const onEnd = () => finish();
    const onError = (err: Error) =>
      finish(new AgentError(ErrorCode.BadRequest, `request body could not be read: ${err.message}`));
    choosePlace();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** The first `n` bytes of `chunks` as one new buffer. */
function copyOut(chunks: readonly Buffer[], n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  for (const c of chunks) {
    if (at >= n) break;
    at += c.copy(out, at, 0, Math.min(c.length, n - at));
  }
  return out;
}

function tooLarge(limit: number, limitName: string): AgentError {
  return new AgentError(
    ErrorCode.PayloadTooLarge,
    `request body is larger than the limit of ${limit} bytes (${limitName})`,
  );
}
