import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentMetrics, Logger } from '../observability';

/**
 * One request's identity and timings, filled in as it goes and written out once, when the response is
 * done: one JSON log line (never the payload) and, for invocations, the request-level metrics.
 */
export interface RequestContext {
  /** SageMaker's `X-Amzn-RequestId` when it sent a usable one, else a fresh UUID; echoed in the response. */
  readonly id: string;
  /** performance.now() when the request arrived. */
  readonly started: number;
  /** True on the invoke routes (counted as SageMaker Invocations). */
  invoke: boolean;
  /** The MME model name, once known. */
  model: string | undefined;
  /** Time spent waiting for the model to download or load (the lease's wait). */
  waitedMs: number;
  /** True when the model was not resident when the request arrived. */
  cold: boolean;
  /** Time of the gRPC inference call to Triton; undefined when Triton was not called. */
  tritonMs: number | undefined;
}

export const REQUEST_ID_HEADER = 'x-amzn-RequestId';

/** A caller's request id is echoed only if it is a plain token (it lands in logs and headers). */
const USABLE_ID = /^[\x21-\x7e]{1,200}$/;

const contexts = new WeakMap<IncomingMessage, RequestContext>();

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/**
 * Starts a request's context: picks its id, echoes it, and arranges for the log line and metrics when the
 * response closes (finished, or the client went away: status 499 in the log).
 */
export function beginRequest(
  req: IncomingMessage,
  res: ServerResponse,
  logger: Logger,
  metrics: AgentMetrics,
): RequestContext {
  const sent = req.headers['x-amzn-requestid'];
  const given = Array.isArray(sent) ? sent[0] : sent;
  const ctx: RequestContext = {
    id: given !== undefined && USABLE_ID.test(given) ? given : randomUUID(),
    started: performance.now(),
    invoke: false,
    model: undefined,
    waitedMs: 0,
    cold: false,
    tritonMs: undefined,
  };
  contexts.set(req, ctx);
  res.setHeader(REQUEST_ID_HEADER, ctx.id);
  res.once('close', () => endRequest(req, res, ctx, logger, metrics));
  return ctx;
}

/** The context `beginRequest` made for this request (express handlers reach it through the request). */
export function contextOf(req: IncomingMessage): RequestContext | undefined {
  return contexts.get(req);
}

function endRequest(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  logger: Logger,
  metrics: AgentMetrics,
): void {
  const ms = performance.now() - ctx.started;
  const status = res.writableFinished ? res.statusCode : 499;
  const overheadMs = ms - ctx.waitedMs - (ctx.tritonMs ?? 0);
  if (ctx.invoke) {
    metrics.invocation({
      model: ctx.model,
      status,
      cold: ctx.cold,
      waitedMs: ctx.waitedMs,
      tritonMs: ctx.tritonMs,
      overheadMs,
    });
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const level = path === '/ping' || path === '/metrics' ? 'debug' : 'info';
  if (!logger.enabled(level)) return;
  const fields: Record<string, unknown> = {
    requestId: ctx.id,
    method: req.method,
    path,
    status,
    ms: round3(ms),
  };
  if (ctx.model !== undefined) fields.model = ctx.model;
  if (ctx.invoke) {
    fields.waitMs = round3(ctx.waitedMs);
    if (ctx.tritonMs !== undefined) fields.tritonMs = round3(ctx.tritonMs);
    fields.overheadMs = round3(overheadMs);
    fields.cold = ctx.cold;
  }
  logger[level]('request', fields);
}
