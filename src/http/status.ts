import type { ServerResponse } from 'node:http';
import { AgentError, ErrorCode } from '../errors';

/**
 * How SageMaker Runtime's InvokeEndpoint reports a failure (restJson1: the type in `x-amzn-ErrorType`):
 * its own error, or `ModelError` wrapping what the model container answered (424 with the original status).
 */
export type RuntimeAnswer = { status: number; type: string } | 'ModelError';

/**
 * The one place error codes become HTTP answers, with a column per route family: `mme` for the model
 * container routes (SageMaker's MME contract, `/invocations`), `runtime` for `/endpoints/<ep>/invocations`,
 * and `retryAfter`: the seconds a `Retry-After` header asks the caller to wait (absent: not retryable).
 */
export const ANSWER_BY_CODE: Record<ErrorCode, { mme: number; runtime: RuntimeAnswer; retryAfter?: number }> =
  {
    [ErrorCode.BadRequest]: { mme: 400, runtime: 'ModelError' },
    [ErrorCode.InvalidModel]: { mme: 400, runtime: 'ModelError' },
    [ErrorCode.ModelNotFound]: { mme: 404, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.ArtifactNotFound]: { mme: 404, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.ModelAlreadyLoaded]: { mme: 409, runtime: 'ModelError' },
    [ErrorCode.PayloadTooLarge]: { mme: 413, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.UnsupportedMediaType]: { mme: 415, runtime: 'ModelError' },
    // Retryable: the model is loading (SageMaker's own answer is ModelNotReadyException).
    [ErrorCode.ModelNotReady]: {
      mme: 503,
      runtime: { status: 429, type: 'ModelNotReadyException' },
      retryAfter: 1,
    },
    [ErrorCode.TritonUnavailable]: {
      mme: 503,
      runtime: { status: 503, type: 'ServiceUnavailable' },
      retryAfter: 1,
    },
    // An artifact store failing, or an object replaced during its download: the next try may succeed.
    [ErrorCode.SourceUnavailable]: {
      mme: 503,
      runtime: { status: 503, type: 'ServiceUnavailable' },
      retryAfter: 1,
    },
    [ErrorCode.DeadlineExceeded]: { mme: 504, runtime: 'ModelError' },
    // SageMaker's signal to unload other models and retry.
    [ErrorCode.InsufficientCapacity]: { mme: 507, runtime: 'ModelError' },
    // Triton (the upstream) failed or answered out of protocol: not the caller's fault, nor an agent bug.
    [ErrorCode.TritonInternal]: { mme: 502, runtime: 'ModelError' },
    [ErrorCode.TritonProtocol]: { mme: 502, runtime: 'ModelError' },
    [ErrorCode.Internal]: { mme: 500, runtime: { status: 500, type: 'InternalFailure' } },
    [ErrorCode.MethodNotAllowed]: { mme: 405, runtime: { status: 405, type: 'ValidationError' } },
    [ErrorCode.NoRoute]: { mme: 404, runtime: { status: 404, type: 'UnknownOperationException' } },
    [ErrorCode.HeadersTooLarge]: { mme: 431, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.MalformedRequest]: { mme: 400, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.ExpectationFailed]: { mme: 417, runtime: { status: 400, type: 'ValidationError' } },
    [ErrorCode.AgentUnavailable]: {
      mme: 503,
      runtime: { status: 503, type: 'ServiceUnavailable' },
      retryAfter: 1,
    },
  };

/** The MME column, as a plain map (kept for callers that want only statuses). */
export const STATUS_BY_CODE = Object.fromEntries(
  Object.entries(ANSWER_BY_CODE).map(([code, a]) => [code, a.mme]),
) as Record<ErrorCode, number>;

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
  const retryAfter = ANSWER_BY_CODE[err.code].retryAfter;
  if (retryAfter !== undefined) res.setHeader('Retry-After', String(retryAfter));
  sendJson(res, statusOf(err), { error: err.message });
}

/**
 * SageMaker Runtime's InvokeEndpoint error shapes (restJson1: the type in `x-amzn-ErrorType`, fields in
 * the JSON body), so the AWS SDKs raise the same exception classes they raise against a real endpoint.
 */
export function runtimeError(err: AgentError): {
  status: number;
  type: string;
  body: Record<string, unknown>;
} {
  const answer = ANSWER_BY_CODE[err.code].runtime;
  if (answer !== 'ModelError') return { ...answer, body: { Message: err.message } };
  // What the model container answered: SageMaker wraps it as ModelError with the original status.
  const status = statusOf(err);
  return {
    status: 424,
    type: 'ModelError',
    body: {
      Message: `Received client error (${status}) from primary with message "${err.message}"`,
      OriginalStatusCode: status,
      OriginalMessage: JSON.stringify({ error: err.message }),
    },
  };
}
