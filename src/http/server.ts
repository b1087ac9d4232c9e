import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentError, ErrorCode } from '../errors';
import type { Logger } from '../observability';
import { settlesWithin } from '../time';
import { ANSWER_BY_CODE, runtimeError } from './status';

/** Requests whose Expect header Node would not meet: the app answers them 417. */
const unmetExpectations = new WeakSet<http.IncomingMessage>();

/** True when Node judged the request's Expect header one it cannot meet. */
export function expectationUnmet(req: http.IncomingMessage): boolean {
  return unmetExpectations.has(req);
}

/**
 * The agent's HTTP server: listening, the gate every request passes (503 with `Retry-After` while the
 * agent starts or drains), Node's parser errors answered in JSON, and the bounded drain. Routes are the
 * `app` it is given; this file is only the socket side of HTTP.
 */
export class AgentServer {
  private server: http.Server | undefined;
  private phase: 'starting' | 'serving' | 'draining' = 'starting';
  /** Responses let in and not yet closed, so a drain can close their connections after them. */
  private readonly inFlight = new Set<http.ServerResponse>();

  constructor(
    private readonly app: http.RequestListener,
    private readonly logger: Logger,
  ) {}

  /** The port listened on (0 before listening). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** True once `serve()` was called and no drain has begun. */
  get serving(): boolean {
    return this.phase === 'serving';
  }

  /** Listens; every request is answered 503 "starting" until `serve()`. */
  async listen(port: number, host: string | undefined): Promise<void> {
    // The app answers a missing Host and an unmet Expect itself, in JSON with a request id (Node's own
    // answers to both are bare 400 and 417).
    const server = http.createServer({ requireHostHeader: false }, (req, res) => this.admit(req, res));
    server.on('checkExpectation', (req, res) => {
      // Node found an Expect it does not meet (it meets 100-continue, and ignores Expect on HTTP/1.0).
      unmetExpectations.add(req);
      this.admit(req, res);
    });
    // What Node's HTTP parser refuses (headers too large, a bad method or header, a broken chunk) is
    // answered in JSON too, like every other error, then the connection closes.
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
      const e = new AgentError(
        tooLarge ? ErrorCode.HeadersTooLarge : ErrorCode.MalformedRequest,
        tooLarge ? 'request headers are too large' : `malformed HTTP request: ${err.message}`,
      );
      // The request line, when the parser got that far, tells a SageMaker Runtime client (its shape).
      const raw = (err as { rawPacket?: unknown }).rawPacket;
      const line = Buffer.isBuffer(raw) ? raw.subarray(0, 512).toString('latin1') : '';
      let status = ANSWER_BY_CODE[e.code].mme;
      let body = JSON.stringify({ error: e.message });
      let extra = '';
      if (/^[A-Za-z]+ \/endpoints\//i.test(line)) {
        const answer = runtimeError(e);
        status = answer.status;
        body = JSON.stringify(answer.body);
        extra = `x-amzn-ErrorType: ${answer.type}\r\n`;
      }
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${extra}` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    });
    // SageMaker keeps connections open between invocations; stay above its idle timeout.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
  }

  /** Lets requests through to the routes (unless a drain has begun). */
  serve(): boolean {
    if (this.phase !== 'starting') return false;
    this.phase = 'serving';
    return true;
  }

  /**
   * Drains, every step bounded: stops accepting connections; answers new requests on open connections 503
   * with `Connection: close`; closes idle kept-alive connections at once and busy ones after their
   * response; after `drainMs`, answers the requests still running 503 and closes their connections.
   */
  async drain(drainMs: number): Promise<void> {
    this.phase = 'draining';
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const res of this.inFlight) closeAfterResponse(res);
    server.closeIdleConnections();
    this.logger.info('draining', { inFlight: this.inFlight.size, timeoutMs: drainMs });
    if (await settlesWithin(closed, drainMs)) return;
    const running = this.inFlight.size;
    for (const res of this.inFlight) {
      if (res.headersSent) res.destroy();
      else this.answerUnavailable(res, 'the agent is shutting down; the request did not finish in time');
    }
    if (running > 0) {
      this.logger.warn('drain deadline passed; answered the requests still running with 503', {
        requests: running,
        timeoutMs: drainMs,
      });
    }
    if (!(await settlesWithin(closed, 1_000))) server.closeAllConnections();
    await closed;
  }

  /** The gate: requests go to the routes only while serving, and are tracked until their response closes. */
  private admit(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.phase === 'serving') {
      this.inFlight.add(res);
      res.once('close', () => this.inFlight.delete(res));
      this.app(req, res);
      return;
    }
    req.resume();
    this.answerUnavailable(
      res,
      this.phase === 'draining' ? 'the agent is shutting down' : 'the agent is starting',
    );
  }

  /** 503 with a JSON body; while draining the connection closes after it. */
  private answerUnavailable(res: http.ServerResponse, error: string): void {
    const answer = ANSWER_BY_CODE[ErrorCode.AgentUnavailable];
    const body = JSON.stringify({ error });
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'Retry-After': String(answer.retryAfter),
    };
    if (this.phase === 'draining') headers.Connection = 'close';
    res.writeHead(answer.mme, headers).end(body);
  }
}

/** Asks a response to close its connection when it ends (after it, if its headers are already out). */
function closeAfterResponse(res: http.ServerResponse): void {
  if (!res.headersSent) {
    res.setHeader('Connection', 'close');
    return;
  }
  // Node detaches the socket from the response as it finishes: hold on to it here.
  const socket = res.socket;
  res.once('finish', () => socket?.end());
}
