import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { AgentError, ErrorCode, isAgentError } from '../errors';
import {
  DecodePool,
  bodyFormat,
  encodeInvokeResponseParts,
  placeBinaryInputs,
  type EncodedParts,
  type InvokeBody,
} from '../inference';
import { checkModelName, checkModelUrl, type ModelRegistry, type ModelView } from '../models';
import { AgentMetrics, EmfPublisher, type Logger } from '../observability';
import { readBody, readPlacedBody } from './body';
import { Router, type RouteOptions } from './router';
import { beginRequest, contextOf, type RequestContext } from './request-log';
import { expectationUnmet } from './server';
import { asAgentError, runtimeError, sendError, sendJson, statusOf } from './status';

export interface AppSettings {
  /** Single-model mode: the model /ping waits for ('' while unknown); undefined in multi-model mode. */
  singleModel?: () => string | undefined;
  maxBodyBytes: number;
  defaultModelName: string | undefined;
  listPageSize: number;
  /** Largest JSON text of an invoke response (AGENT_MAX_JSON_RESPONSE_BYTES); unlimited when unset. */
  maxJsonResponseBytes?: number;
  /** CloudWatch EMF lines on stdout (AGENT_CLOUDWATCH_EMF): written every interval while the process lives. */
  emf?: { namespace: string; intervalMs: number };
  /** Managed mode: false while the supervised tritonserver is starting or restarting (/ping answers 503). */
  tritonReady?: () => boolean;
}

export interface AppDeps {
  registry: ModelRegistry;
  settings: AppSettings;
  logger: Logger;
  /** Where request-level metrics go and what GET /metrics serves (one is made when not given). */
  metrics?: AgentMetrics;
}

type ErrorSender = (res: ServerResponse, err: AgentError) => void;

const TARGET_MODEL = 'x-amzn-sagemaker-target-model';
const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
/** Control-plane bodies are small JSON documents: a fixed limit, whatever AGENT_MAX_BODY_BYTES says. */
const CONTROL_BODY_LIMIT = 1024 * 1024;
const CONTROL_LIMIT_NAME = 'the fixed limit of POST /models';
const PING_DEADLINE_MS = 1500;
/** Requests and responses at least this large yield to the event loop between their heavy steps. */
const LARGE_BYTES = 1024 * 1024;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

const bad = (message: string) => new AgentError(ErrorCode.BadRequest, message);

/**
 * What HTTP itself refuses before any route: an HTTP/1.1 request without Host (RFC 9112 3.2), and an
 * `Expect` Node does not meet (RFC 9110 10.1.1: 417; Node meets 100-continue and ignores Expect on
 * HTTP/1.0). The server lets both through to here, so they are answered in JSON with a request id.
 */
/** Under /endpoints/ (any case, as the router matches it) the caller is a SageMaker Runtime client. */
const isRuntimePath = (req: IncomingMessage) => /^\/endpoints\//i.test(pathOf(req));

function refusedAtTheDoor(req: IncomingMessage): AgentError | undefined {
  if (req.httpVersionMajor === 1 && req.httpVersionMinor >= 1 && req.headers.host === undefined)
    return bad('an HTTP/1.1 request needs a Host header');
  if (expectationUnmet(req))
    return new AgentError(
      ErrorCode.ExpectationFailed,
      `the Expect header '${String(req.headers.expect)}' cannot be met; only 100-continue is supported`,
    );
  return undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function parseJsonObject(body: Buffer, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw bad(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw bad(`${what} must be a JSON object`);
  return doc as Record<string, unknown>;
}

export { checkModelName };

/** What the caller was not told (a connection failure's address and cause), for operators' logs. */
function causeText(e: AgentError): string | undefined {
  return e.operatorDetail ?? (e.cause instanceof AgentError ? e.cause.operatorDetail : undefined);
}

interface PageToken {
  after: string;
}

function encodeToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

function decodeToken(raw: string): PageToken {
  try {
    const t = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as PageToken;
    if (typeof t.after === 'string') return t;
  } catch {
    // fall through
  }
  throw bad('next_page_token is not a token this server issued');
}

/**
 * A query parameter given at most once as a plain value. `name[]=`, `name[k]=` or a repeated `name` parse
 * to an array or object: a 400 naming it, not the first value silently taken.
 */
function singleQuery(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  const bracketed = Object.keys(query).some((k) => k.startsWith(`${name}[`));
  if (v === undefined && !bracketed) return undefined;
  if (typeof v !== 'string' || bracketed)
    throw new AgentError(
      ErrorCode.BadRequest,
      `query parameter '${name}' must be given once, as a plain value`,
    );
  return v;
}

/** Paths without their query string. */
function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * The request listener serving SageMaker's MME contract and SageMaker Runtime's InvokeEndpoint route.
 *
 * Every route goes through one small router on node:http (router.ts): bench/overhead measured express's
 * generic dispatch costing more per invocation than the agent's own work, and two routers (express, and
 * a direct one for the invoke routes) meant two sets of rules. Every request gets a request id and one
 * log line (request-log.ts); every error is JSON, its status from the one table (status.ts).
 */
export function createApp(deps: AppDeps): RequestListener {
  const { registry, settings, logger } = deps;
  const metrics = deps.metrics ?? new AgentMetrics();
  if (settings.emf) new EmfPublisher(metrics, settings.emf).start();
  const decoder = new DecodePool();
  const router = new Router();

  /** Runs a handler; anything it throws becomes a mapped JSON error (5xx also logged). */
  const run = (req: IncomingMessage, res: ServerResponse, work: Promise<void>, onError: ErrorSender) => {
    work.catch((err: unknown) => {
      const e = asAgentError(err);
      if (statusOf(e) >= 500) {
        logger.error('request failed', {
          requestId: contextOf(req)?.id,
          path: pathOf(req),
          code: e.code,
          error: e.message,
          // What the caller was not told (a connection failure's address and cause), for operators.
          ...(causeText(e) !== undefined ? { cause: causeText(e) } : {}),
        });
      }
      if (e.code === ErrorCode.PayloadTooLarge) res.setHeader('Connection', 'close');
      onError(res, e);
    });
  };

  const methodNotAllowed = (
    req: IncomingMessage,
    res: ServerResponse,
    allow: string,
    route: RouteOptions,
  ) => {
    res.setHeader('Allow', allow);
    route.onError(
      res,
      new AgentError(
        ErrorCode.MethodNotAllowed,
        `method ${req.method} is not allowed on ${pathOf(req)}; use ${allow}`,
      ),
    );
  };

  const route = (
    p: string,
    handlers: Parameters<Router['add']>[1],
    options: RouteOptions = { onError: sendError },
  ) => router.add(p, handlers, options);

  const describe = (r: ModelView) => ({ modelName: r.name, modelUrl: r.url });
  // Loaded as far as SageMaker is concerned: resident, or evicted to disk and reloaded on its next invoke.
  const isListed = (r: ModelView) => r.loads > 0;

  const requireJsonContentType = (req: IncomingMessage) => {
    const ct = (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (ct !== '' && ct !== 'application/json') {
      throw new AgentError(
        ErrorCode.UnsupportedMediaType,
        `content type '${ct}' is not supported here; send application/json`,
      );
    }
  };

  const encodeOptions = {
    maxJsonBytes: settings.maxJsonResponseBytes,
    limitName: 'AGENT_MAX_JSON_RESPONSE_BYTES',
  };

  /**
   * The shared invoke path: read, pin, convert (large JSON off the event loop), infer, convert back (in
   * steps that yield), unpin. Fills the request's context with the model and the latency split.
   */
  const invoke = async (req: IncomingMessage, target: string): Promise<EncodedParts> => {
    const ctx: RequestContext | undefined = contextOf(req);
    if (ctx) {
      ctx.invoke = true;
      ctx.model = target;
    }
    const contentType = header(req, 'content-type');
    let body: InvokeBody;
    try {
      checkModelName(target, 'model name'); // no model can have it: 400, not 404
      const format = bodyFormat(contentType, Number.MAX_SAFE_INTEGER); // 415 before reading the body
      // Binary tensors are read straight into the request Triton receives (no copy on the way to gRPC).
      const placement =
        format.kind === 'binary' ? { headerSize: format.headerSize, place: placeBinaryInputs } : undefined;
      body = await readPlacedBody(req, settings.maxBodyBytes, 'AGENT_MAX_BODY_BYTES', placement);
    } catch (err) {
      // Refused before it asked for its model: still one access-log line, with the reason.
      registry.rejected(target, err);
      throw err;
    }
    // A large request's synchronous steps (the last body copy, the gRPC serialisation, the response's
    // decoding) each take milliseconds: let other requests in between them.
    const large = body.length >= LARGE_BYTES;
    if (large) await nextTurn();
    // A request that fails while it waits for a load is still counted cold, its wait as waiting.
    const lease = await registry.acquire(target, ctx);
    try {
      if (ctx) {
        ctx.model = lease.record.name;
        ctx.waitedMs = lease.waitedMs;
        ctx.cold = lease.cold;
      }
      const io = lease.record.io;
      if (!io)
        throw new AgentError(ErrorCode.Internal, `model '${target}' is ready but has no tensor metadata`);
      const decoded = await decoder.decode(body, contentType, io, header(req, 'accept'));
      const t0 = performance.now();
      // A client that goes away cancels its call: Triton stops, and the model is no longer held for it.
      const gone = new AbortController();
      const onClose = () => gone.abort();
      req.socket.once('close', onClose);
      const result = await registry.infer(lease, decoded.request, { signal: gone.signal }).finally(() => {
        req.socket.off('close', onClose);
      });
      if (ctx) ctx.tritonMs = performance.now() - t0;
      if (large || result.raw_output_contents.some((r) => r.length >= LARGE_BYTES)) await nextTurn();
      return await encodeInvokeResponseParts(result, lease.record.name, decoded.binaryOutputs, encodeOptions);
    } finally {
      lease.release();
    }
  };

  /** `/invocations`: the TargetModel header, else the configured default, else the only loaded model. */
  const singleModelTarget = (req: IncomingMessage): string => {
    const target = header(req, TARGET_MODEL);
    if (target) return target;
    if (settings.defaultModelName) return settings.defaultModelName;
    const models = registry.list().filter((r) => r.state === 'ready');
    if (models.length === 1) return models[0].name;
    throw bad(
      models.length === 0
        ? 'no model is loaded'
        : `${models.length} models are loaded: name one with the X-Amzn-SageMaker-Target-Model header or set SAGEMAKER_TRITON_DEFAULT_MODEL_NAME`,
    );
  };

  /** Writes a response's parts in order, without concatenating them. */
  const send = (res: ServerResponse, out: EncodedParts) => {
    res.writeHead(200, { 'Content-Type': out.contentType, 'Content-Length': out.byteLength });
    const last = out.parts.length - 1;
    for (let i = 0; i < last; i++) res.write(out.parts[i]);
    res.end(out.parts[last]);
  };

  route('/ping', {
    GET: async (_req, res) => {
      if (settings.tritonReady && !settings.tritonReady()) {
        throw new AgentError(ErrorCode.TritonUnavailable, 'Triton is starting or restarting');
      }
      // Never waits on a load: a single ServerLive with a deadline inside SageMaker's 2 s.
      const live = await registry.tritonLive(PING_DEADLINE_MS);
      if (!live) throw new AgentError(ErrorCode.TritonUnavailable, 'Triton is not live');
      // Single-model mode reports ready only once its model is (SageMaker's "ready" ping).
      const single = settings.singleModel?.();
      const state = single === undefined ? undefined : registry.get(single)?.state;
      if (single !== undefined && state !== 'ready' && state !== 'evicted') {
        throw new AgentError(
          ErrorCode.ModelNotReady,
          `model '${single || '(single model)'}' is not loaded yet`,
        );
      }
      res.writeHead(200).end();
    },
  });

  route('/models', {
    GET: async (_req, res, { query }) => {
      const rawMax = singleQuery(query, 'max_results');
      let max = settings.listPageSize;
      if (rawMax !== undefined) {
        if (!/^\d+$/.test(rawMax) || Number(rawMax) < 1) throw bad('max_results must be a positive integer');
        max = Math.min(Number(rawMax), 10_000);
      }
      const rawToken = singleQuery(query, 'next_page_token');
      const after = rawToken ? decodeToken(rawToken).after : undefined;
      const all = registry.list().filter((r) => isListed(r) && (after === undefined || r.name > after));
      const page = all.slice(0, max);
      const out: { models: { modelName: string; modelUrl: string }[]; nextPageToken?: string } = {
        models: page.map(describe),
      };
      if (all.length > max) out.nextPageToken = encodeToken({ after: page[page.length - 1].name });
      sendJson(res, 200, out);
    },
    POST: async (req, res) => {
      requireJsonContentType(req);
      const doc = parseJsonObject(
        await readBody(req, CONTROL_BODY_LIMIT, CONTROL_LIMIT_NAME),
        'request body',
      );
      const name = checkModelName(doc.model_name);
      const url = checkModelUrl(doc.url);
      const target = header(req, TARGET_MODEL);
      const record = await registry.load(name, url, target).catch((err: unknown) => {
        // For a load request a missing artifact is a bad request, as SageMaker's contract has it.
        if (isAgentError(err, ErrorCode.ArtifactNotFound))
          throw new AgentError(ErrorCode.BadRequest, err.message);
        throw err;
      });
      sendJson(res, 200, describe(record));
    },
  });

  route('/models/:name', {
    GET: async (_req, res, { params }) => {
      const name = checkModelName(params.name, 'model name');
      const record = registry.get(name);
      if (!record || record.name !== name || !isListed(record)) {
        throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
      }
      sendJson(res, 200, describe(record));
    },
    DELETE: async (_req, res, { params }) => {
      await registry.unload(checkModelName(params.name, 'model name'));
      res.writeHead(200).end();
    },
  });

  route('/models/:name/status', {
    GET: async (_req, res, { params }) => {
      const name = checkModelName(params.name, 'model name');
      const status = registry.status(name);
      if (!status) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not known`);
      sendJson(res, 200, status);
    },
  });

  const sendRuntimeError = (res: ServerResponse, err: AgentError) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, type, body } = runtimeError(err);
    res.setHeader('x-amzn-ErrorType', type);
    sendJson(res, status, body);
  };

  // The invoke routes.
  const invokeModel = async (req: IncomingMessage, res: ServerResponse, name: string) =>
    send(res, await invoke(req, name));
  const invokeSingle = async (req: IncomingMessage, res: ServerResponse) =>
    send(res, await invoke(req, singleModelTarget(req)));
  const invokeEndpoint = async (req: IncomingMessage, res: ServerResponse, endpoint: string) => {
    if (!/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/.test(endpoint)) {
      throw new AgentError(ErrorCode.ModelNotFound, `endpoint name '${endpoint}' is not valid`);
    }
    let target: string;
    try {
      target = singleModelTarget(req);
    } catch (err) {
      // No (or no usable) TargetModel: the caller's mistake, a ValidationError as SageMaker Runtime says.
      if (isAgentError(err, ErrorCode.BadRequest))
        throw new AgentError(ErrorCode.ModelNotFound, err.message, { cause: err });
      throw err;
    }
    const out = await invoke(req, target);
    res.setHeader('x-Amzn-Invoked-Production-Variant', 'AllTraffic');
    const attributes = header(req, CUSTOM_ATTRIBUTES);
    if (attributes !== undefined) res.setHeader('X-Amzn-SageMaker-Custom-Attributes', attributes);
    send(res, out);
  };

  route('/models/:name/invoke', { POST: (req, res, { params }) => invokeModel(req, res, params.name) });
  route('/invocations', { POST: (req, res) => invokeSingle(req, res) });
  // SageMaker Runtime answers a bad endpoint name (a broken escape included) as a ValidationError.
  route(
    '/endpoints/:endpoint/invocations',
    { POST: (req, res, { params }) => invokeEndpoint(req, res, params.endpoint) },
    { onError: sendRuntimeError, badParam: ErrorCode.ModelNotFound },
  );

  route('/metrics', {
    GET: async (_req, res) => {
      const text = await metrics.text();
      res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    },
  });

  return (req, res) => {
    beginRequest(req, res, logger, metrics);
    const refused = refusedAtTheDoor(req);
    if (refused) {
      req.resume();
      res.setHeader('Connection', 'close');
      if (isRuntimePath(req)) sendRuntimeError(res, refused);
      else sendError(res, refused);
      return;
    }
    const routed = router.handle(
      req,
      res,
      (rq, rs, work, opts) => {
        let running: Promise<void>;
        try {
          running = work();
        } catch (err) {
          running = Promise.reject(err);
        }
        run(rq, rs, running, opts.onError);
      },
      methodNotAllowed,
    );
    if (!routed) {
      req.resume();
      const err = new AgentError(ErrorCode.NoRoute, `no route for ${req.method} ${pathOf(req)}`);
      // Under /endpoints/ the caller is a SageMaker Runtime client: it reads the Runtime's error shape.
      if (isRuntimePath(req)) sendRuntimeError(res, err);
      else sendError(res, err);
    }
  };
}
