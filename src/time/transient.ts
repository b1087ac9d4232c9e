/**
 * Which failures are worth another try, as data, in one place: the Triton client's retries, the loads and
 * moves that must tell "Triton answered no" from "no answer", and the downloads' resumes all read these
 * tables rather than keeping their own lists.
 */

/** gRPC status codes, as the protocol numbers them (grpc/status.h). */
export const GrpcCode = {
  CANCELLED: 1,
  DEADLINE_EXCEEDED: 4,
  UNAVAILABLE: 14,
} as const;

/**
 * A call that changes nothing (health, metadata, index, statistics) may be sent again after these: the
 * server was away or restarting, and the call never ran.
 */
const GRPC_RETRY: ReadonlySet<number> = new Set([GrpcCode.UNAVAILABLE]);

/**
 * After these a call's outcome is unknown: the caller gave up, the deadline passed or the connection
 * dropped, and the server may still be doing (or finish) the work. Anything else is the server's answer.
 */
const GRPC_UNANSWERED: ReadonlySet<number> = new Set([
  GrpcCode.CANCELLED,
  GrpcCode.DEADLINE_EXCEEDED,
  GrpcCode.UNAVAILABLE,
]);

/**
 * HTTP statuses an object store answers when the request itself was fine: request timeout, throttling
 * (429; S3's 503 SlowDown) and every server error. Any other 4xx is the request's fault and final.
 */
const HTTP_RETRY_BELOW_500: ReadonlySet<number> = new Set([408, 429]);

/** True when an idempotent gRPC call that failed with `code` may be sent again. */
export function isRetryableGrpc(code: number): boolean {
  return GRPC_RETRY.has(code);
}

/** True when a gRPC call that failed with `code` may still have been carried out by the server. */
export function isUnansweredGrpc(code: number): boolean {
  return GRPC_UNANSWERED.has(code);
}

/**
 * True when an HTTP request that failed with `status` may be tried again (a failure with no status at all,
 * a dropped connection, is retryable too).
 */
export function isRetryableHttp(status: number | undefined): boolean {
  return status === undefined || status >= 500 || HTTP_RETRY_BELOW_500.has(status);
}
