import { randomUUID } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import { localPath, parseS3Url } from '../artifacts';
import { AgentError, ErrorCode, isAgentError } from '../errors';
import { bodyFormat, decodeInvokeBody, encodeInvokeResponse, type EncodedResponse } from '../inference';
import { checkModelName, type ModelRegistry, type ModelRecord } from '../models';
import type { Logger } from '../observability';
import type { TritonControl } from '../triton';
import { readBody } from './body';
import { asAgentError, sendError, statusOf } from './status';

export interface AppSettings {
  /** Single-model mode: the model /ping waits for ('' while unknown); undefined in multi-model mode. */
  singleModel?: () => string | undefined;
  maxBodyBytes: number;
  defaultModelName: string | undefined;
  listPageSize: number;
  /** Managed mode: false while the supervised tritonserver is starting or restarting (/ping answers 503). */
  tritonReady?: () => boolean;
}

export interface AppDeps {
  registry: ModelRegistry;
  triton: TritonControl;
  settings: AppSettings;
  logger: Logger;
}

type Method = 'GET' | 'POST' | 'DELETE';
type Handler = (req: Request, res: Response) => Promise<void>;

const TARGET_MODEL = 'x-amzn-sagemaker-target-model';
const CUSTOM_ATTRIBUTES = 'x-amzn-sagemaker-custom-attributes';
/** Control-plane bodies are small JSON documents. */
const CONTROL_BODY_LIMIT = 1024 * 1024;
const PING_DEADLINE_MS = 1500;

const bad = (message: string) => new AgentError(ErrorCode.BadRequest, message);

function header(req: Request, name: string): string | undefined {
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

/** Checks a load url: an absolute path or file:// URL (directory or archive), or s3://bucket/key. */
function checkModelUrl(url: unknown): string {
  if (typeof url !== 'string' || url.trim() === '') throw bad('"url" must be a non-empty string');
  const u = url.trim();
  if (u.startsWith('s3://')) {
    parseS3Url(u);
    return u;
  }
  const p = localPath(u);
  return u.startsWith('file://') ? u : p;
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

function firstQuery(v: unknown): string | undefined {
  if (Array.isArray(v)) return firstQuery(v[0]);
  return typeof v === 'string' ? v : undefined;
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
  const status = statusOf(err);
  switch (err.code) {
    case ErrorCode.ModelNotFound:
    case ErrorCode.ArtifactNotFound:
    case ErrorCode.PayloadTooLarge:
      return { status: 400, type: 'ValidationError', body: { Message: err.message } };
    case ErrorCode.ModelNotReady:
      return { status: 429, type: 'ModelNotReadyException', body: { Message: err.message } };
    case ErrorCode.TritonUnavailable:
    case ErrorCode.SourceUnavailable:
      return { status: 503, type: 'ServiceUnavailable', body: { Message: err.message } };
    case ErrorCode.Internal:
      return { status: 500, type: 'InternalFailure', body: { Message: err.message } };
    default:
      // What the model container answered: SageMaker wraps it as ModelError with the original status.
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
}

/** The express app serving SageMaker's MME contract and SageMaker Runtime's InvokeEndpoint route. */
export function createApp(deps: AppDeps): express.Express {
  const { registry, triton, settings, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  const route = (p: string, handlers: Partial<Record<Method, Handler>>, onError = sendError) => {
    const allow = Object.keys(handlers).join(', ');
    app.all(p, (req, res) => {
      const method = (req.method === 'HEAD' ? 'GET' : req.method) as Method;
      const handler = handlers[method];
      const started = Date.now();
      res.on('finish', () => {
        const fields = {
          method: req.method,
          path: req.path,
          status: res.statusCode,
          ms: Date.now() - started,
        };
        if (p === '/ping') logger.debug('request', fields);
        else logger.info('request', { ...fields, targetModel: header(req, TARGET_MODEL) });
      });
      if (!handler) {
        res.setHeader('Allow', allow);
        res.status(405).json({ error: `method ${req.method} is not allowed on ${req.path}; use ${allow}` });
        return;
      }
      handler(req, res).catch((err: unknown) => {
        const e = asAgentError(err);
        if (statusOf(e) >= 500)
          logger.error('request failed', { path: req.path, code: e.code, error: e.message });
        if (e.code === ErrorCode.PayloadTooLarge) res.setHeader('Connection', 'close');
        onError(res, e);
      });
    });
  };

  const describe = (r: ModelRecord) => ({ modelName: r.name, modelUrl: r.url });
  // Loaded as far as SageMaker is concerned: resident, or evicted to disk and reloaded on its next invoke.
  const isListed = (r: ModelRecord) => r.loads > 0;

  const requireJsonContentType = (req: Request) => {
    const ct = (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase();
    if (ct !== '' && ct !== 'application/json') {
      throw new AgentError(
        ErrorCode.UnsupportedMediaType,
        `content type '${ct}' is not supported here; send application/json`,
      );
    }
  };

  /** The shared invoke path: read, pin, convert, infer, convert back, unpin. */
  const invoke = async (req: Request, target: string): Promise<EncodedResponse> => {
    const contentType = header(req, 'content-type');
    bodyFormat(contentType, Number.MAX_SAFE_INTEGER); // 415 before reading the body
    const body = await readBody(req, settings.maxBodyBytes);
    const lease = await registry.acquire(target);
    try {
      const io = lease.record.io;
      if (!io)
        throw new AgentError(ErrorCode.Internal, `model '${target}' is ready but has no tensor metadata`);
      const decoded = decodeInvokeBody(body, contentType, io, header(req, 'accept'));
      const result = await registry.infer(lease, decoded.request);
      return encodeInvokeResponse(result, lease.record.name, decoded.binaryOutputs);
    } finally {
      lease.release();
    }
  };

  /** `/invocations`: the TargetModel header, else the configured default, else the only loaded model. */
  const singleModelTarget = (req: Request): string => {
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

  const send = (res: Response, out: EncodedResponse) => {
    res.status(200).setHeader('Content-Type', out.contentType);
    res.end(out.body);
  };

  route('/ping', {
    GET: async (_req, res) => {
      if (settings.tritonReady && !settings.tritonReady()) {
        throw new AgentError(ErrorCode.TritonUnavailable, 'Triton is starting or restarting');
      }
      // Never waits on a load: a single ServerLive with a deadline inside SageMaker's 2 s.
      const live = await triton
        .serverLive({ deadlineMs: PING_DEADLINE_MS, noRetry: true, waitForReady: true })
        .catch(() => false);
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
      res.status(200).end();
    },
  });

  route('/models', {
    GET: async (req, res) => {
      const rawMax = firstQuery(req.query.max_results);
      let max = settings.listPageSize;
      if (rawMax !== undefined) {
        if (!/^\d+$/.test(rawMax) || Number(rawMax) < 1) throw bad('max_results must be a positive integer');
        max = Math.min(Number(rawMax), 10_000);
      }
      const rawToken = firstQuery(req.query.next_page_token);
      const after = rawToken ? decodeToken(rawToken).after : undefined;
      const all = registry.list().filter((r) => isListed(r) && (after === undefined || r.name > after));
      const page = all.slice(0, max);
      const out: { models: { modelName: string; modelUrl: string }[]; nextPageToken?: string } = {
        models: page.map(describe),
      };
      if (all.length > max) out.nextPageToken = encodeToken({ after: page[page.length - 1].name });
      res.status(200).json(out);
    },
    POST: async (req, res) => {
      requireJsonContentType(req);
      const doc = parseJsonObject(await readBody(req, CONTROL_BODY_LIMIT), 'request body');
      const name = checkModelName(doc.model_name);
      const url = checkModelUrl(doc.url);
      const target = header(req, TARGET_MODEL);
      const record = await registry.load(name, url, target).catch((err: unknown) => {
        // For a load request a missing artifact is a bad request, as SageMaker's contract has it.
        if (isAgentError(err, ErrorCode.ArtifactNotFound))
          throw new AgentError(ErrorCode.BadRequest, err.message);
        throw err;
      });
      res.status(200).json(describe(record));
    },
  });

  route('/models/:name', {
    GET: async (req, res) => {
      const name = String(req.params.name);
      const record = registry.get(name);
      if (!record || record.name !== name || !isListed(record)) {
        throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not loaded`);
      }
      res.status(200).json(describe(record));
    },
    DELETE: async (req, res) => {
      await registry.unload(String(req.params.name));
      res.status(200).end();
    },
  });

  route('/models/:name/status', {
    GET: async (req, res) => {
      const name = String(req.params.name);
      const status = registry.status(name);
      if (!status) throw new AgentError(ErrorCode.ModelNotFound, `model '${name}' is not known`);
      res.status(200).json(status);
    },
  });

  route('/models/:name/invoke', {
    POST: async (req, res) => send(res, await invoke(req, String(req.params.name))),
  });

  route('/invocations', {
    POST: async (req, res) => send(res, await invoke(req, singleModelTarget(req))),
  });

  const sendRuntimeError = (res: Response, err: AgentError) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, type, body } = runtimeError(err);
    res.setHeader('x-amzn-ErrorType', type);
    res.status(status).type('application/json').send(JSON.stringify(body));
  };

  route(
    '/endpoints/:endpoint/invocations',
    {
      POST: async (req, res) => {
        res.setHeader('x-amzn-RequestId', randomUUID());
        const endpoint = String(req.params.endpoint);
        if (!/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/.test(endpoint)) {
          throw new AgentError(ErrorCode.ModelNotFound, `endpoint name '${endpoint}' is not valid`);
        }
        const out = await invoke(req, singleModelTarget(req));
        res.setHeader('x-Amzn-Invoked-Production-Variant', 'AllTraffic');
        const attributes = header(req, CUSTOM_ATTRIBUTES);
        if (attributes !== undefined) res.setHeader('X-Amzn-SageMaker-Custom-Attributes', attributes);
        send(res, out);
      },
    },
    sendRuntimeError,
  );

  app.use((req, res) => {
    res.status(404).json({ error: `no route for ${req.method} ${req.path}` });
  });

  return app;
}
