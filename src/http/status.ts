import type { ServerResponse } from 'node:http';
import { AgentError, ErrorCode } from '../errors';

/** The one place error codes become HTTP statuses. */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.InvalidModel]: 400,
  [ErrorCode.ModelNotFound]: 404,
  [ErrorCode.ArtifactNotFound]: 404,
  [ErrorCode.ModelAlreadyLoaded]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.UnsupportedMediaType]: 415,
  // Retryable: the model is loading (SageMaker's own answer is ModelNotReadyException).
  [ErrorCode.ModelNotReady]: 503,
  [ErrorCode.TritonUnavailable]: 503,
  [ErrorCode.SourceUnavailable]: 503,
  [ErrorCode.DeadlineExceeded]: 504,
  // SageMaker's signal to unload other models and retry.
  [ErrorCode.InsufficientCapacity]: 507,
  // Triton (the upstream) failed or answered out of protocol: not the caller's fault, nor an agent bug.
  [ErrorCode.TritonInternal]: 502,
  [ErrorCode.TritonProtocol]: 502,
  [ErrorCode.Internal]: 500,
};

/** Turns anything thrown into an AgentError (an unknown throw is a bug: 500). */
export function asAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const e = err as { type?: string; status?: number; message?: string };
  // body-parser style errors, should any middleware raise them.
  if (e?.type === 'entity.too.large')
    return new AgentError(ErrorCode.PayloadTooLarge, 'request body is too large');
  return new AgentError(ErrorCode.Internal, `internal error: ${e?.message ?? String(err)}`, { cause: err });
}

export function statusOf(err: AgentError): number {
  return STATUS_BY_CODE[err.code];
}

/** Writes a JSON body with its length (works on node:http and express responses alike). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  contentType = 'application/json; charset=utf-8',
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Sends `{"error": "..."}` with the mapped status. */
export function sendError(res: ServerResponse, err: AgentError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err.code === ErrorCode.ModelNotReady || err.code === ErrorCode.TritonUnavailable)
    res.setHeader('Retry-After', '1');
  sendJson(res, statusOf(err), { error: err.message });
}
