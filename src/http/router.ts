import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery, type ParsedUrlQuery } from 'node:querystring';
import { AgentError, ErrorCode } from '../errors';

export type Method = 'GET' | 'POST' | 'DELETE';

/** What a route's handler is given besides the request: its path parameters (decoded) and query. */
export interface RouteMatch {
  params: Record<string, string>;
  query: ParsedUrlQuery;
}

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, match: RouteMatch) => Promise<void>;

/** Where a route's handler runs and how its failures are answered (the caller's `run`). */
export type RouteRunner = (
  req: IncomingMessage,
  res: ServerResponse,
  work: () => Promise<void>,
  route: RouteOptions,
) => void;

export interface RouteOptions {
  /** How an error is answered on this route (MME JSON, or SageMaker Runtime's shape). */
  onError: (res: ServerResponse, err: AgentError) => void;
  /** The code of a path parameter that is not valid percent-encoding (default BadRequest). */
  badParam?: ErrorCode;
}

interface Route {
  segments: string[];
  handlers: Partial<Record<Method, RouteHandler>>;
  allow: string;
  options: RouteOptions;
}

/**
 * The agent's one router, on node:http: literal segments and `:param` segments (one path segment each,
 * percent-decoded), a trailing slash tolerated and literals matched without regard to case (as express
 * did), HEAD served by GET, 405 with `Allow` for a known path and another method, `undefined` for no route.
 * Matching is a walk over a handful of routes: nothing is compiled, nothing allocated beyond the params.
 */
export class Router {
  private readonly routes: Route[] = [];

  add(pattern: string, handlers: Partial<Record<Method, RouteHandler>>, options: RouteOptions): void {
    this.routes.push({
      segments: pattern.split('/').slice(1),
      handlers,
      // HEAD is served wherever GET is.
      allow: Object.keys(handlers)
        .flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]))
        .join(', '),
      options,
    });
  }

  /**
   * Finds the route for `req` and runs it through `run`; answers 405 itself through `methodNotAllowed`.
   * False when no route matches the path.
   */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    run: RouteRunner,
    methodNotAllowed: (req: IncomingMessage, res: ServerResponse, allow: string, route: RouteOptions) => void,
  ): boolean {
    let url = req.url ?? '/';
    // An absolute-form target (`POST http://host/models/x/invoke`, as proxies send) routes by its path,
    // taken as written: no dot-segment or escape normalisation, so both forms follow the same rules.
    if (!url.startsWith('/')) {
      const authority = /^https?:\/\/[^/?#]*/i.exec(url);
      if (!authority) return false;
      url = url.slice(authority[0].length);
      if (!url.startsWith('/')) url = `/${url}`;
    }
    const q = url.indexOf('?');
    let path = q >= 0 ? url.slice(0, q) : url;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    const parts = path.split('/').slice(1);
    for (const route of this.routes) {
      if (route.segments.length !== parts.length) continue;
      const raw: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < parts.length; i++) {
        const seg = route.segments[i];
        if (seg.startsWith(':')) {
          if (parts[i] === '') {
            matched = false;
            break;
          }
          raw[seg.slice(1)] = parts[i];
        } else if (seg.toLowerCase() !== literalOf(parts[i])) {
          matched = false;
          break;
        }
      }
      if (!matched) continue;
      const method = (req.method === 'HEAD' ? 'GET' : req.method) as Method;
      const handler = route.handlers[method];
      if (!handler) {
        methodNotAllowed(req, res, route.allow, route.options);
        return true;
      }
      run(
        req,
        res,
        () => {
          const params: Record<string, string> = {};
          for (const [k, v] of Object.entries(raw)) params[k] = decodeParam(v, route.options.badParam);
          // Every pair is read (querystring stops at 1,000 by default, which would hide a repeated key).
          const query = q >= 0 ? parseQuery(url.slice(q + 1), '&', '=', { maxKeys: 0 }) : {};
          return handler(req, res, { params, query });
        },
        route.options,
      );
      return true;
    }
    return false;
  }
}

/** An escaped unreserved character (RFC 3986 2.3: ALPHA, DIGIT, '-', '.', '_', '~'). */
const ESCAPED_UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * A path segment as compared with a route's literal: lower-cased, with escaped unreserved characters
 * decoded (`/pi%6Eg` is `/ping`, as RFC 3986 6.2.2.2 says they are equivalent). Other escapes stay, so
 * `%2F` never becomes a separator.
 */
function literalOf(segment: string): string {
  if (!segment.includes('%')) return segment.toLowerCase();
  return segment
    .replace(ESCAPED_UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    .toLowerCase();
}

/** A path segment, percent-decoded; a broken escape is a 400 (or the route's own code) saying so. */
function decodeParam(segment: string, code: ErrorCode = ErrorCode.BadRequest): string {
  try {
    return decodeURIComponent(segment);
  } catch (err) {
    throw new AgentError(
      code,
      `the path has a malformed percent-escape: ${(err as Error).message} in '${segment}'`,
    );
  }
}
