import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that reached the proxy, with what the store answered. */
export interface ProxiedRequest {
  method: string;
  key: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** Set once the store's answer started. */
  status?: number;
  responseHeaders?: http.IncomingHttpHeaders;
  /** Set once the response is over (finished or cut). */
  done: boolean;
}

/** A fault for one object GET. */
export type GetFault =
  /** Forwards `afterBytes` of the body, runs `before` (e.g. replaces the object), then cuts the connection. */
  | { kind: 'drop'; afterBytes: number; before?: () => Promise<void> }
  /** Forwards the body `bytesPerTick` at a time, one piece every `tickMs`: slow but never stalled. */
  | { kind: 'slow'; bytesPerTick: number; tickMs: number }
  /** Answers only once `until` settles (the request is recorded at once): a download the test ends. */
  | { kind: 'hold'; until: Promise<void> };

const listen = async (server: http.Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

const close = async (server: http.Server): Promise<void> => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
};

function objectOf(req: http.IncomingMessage): { key: string; query: URLSearchParams; isObject: boolean } {
  const url = new URL(req.url ?? '/', 'http://x');
  const parts = url.pathname.split('/').filter(Boolean);
  const key = decodeURIComponent(parts.slice(1).join('/'));
  const isObject =
    parts.length >= 2 && [...url.searchParams.keys()].every((k) => k === 'x-id' || k === 'versionId');
  return { key, query: url.searchParams, isObject };
}

/**
 * A proxy in front of an S3-compatible store that records every request (headers in, status and headers
 * out) and plays hostile stores: ETags made weak or removed, Last-Modified removed, GETs cut after some
 * bytes (after an action such as replacing the object), or bodies that trickle.
 */
export class S3Proxy {
  readonly requests: ProxiedRequest[] = [];
  /** How the store's ETags are passed on: as they are, made weak (`W/"…"`), or removed. */
  etags: 'as-is' | 'weak' | 'none' = 'as-is';
  /** Removes Last-Modified too (a store that gives no validator at all). */
  stripLastModified = false;
  private readonly nextGets: GetFault[] = [];
  private readonly perKey = new Map<string, GetFault>();

  private constructor(
    private readonly server: http.Server,
    readonly endpoint: string,
  ) {}

  static async start(upstream: string): Promise<S3Proxy> {
    const holder: { proxy?: S3Proxy } = {};
    const server = http.createServer((req, res) => holder.proxy?.forward(new URL(upstream), req, res));
    const proxy = new S3Proxy(server, await listen(server));
    holder.proxy = proxy;
    return proxy;
  }

  /** Faults for the next object GETs, one each. */
  inject(...faults: GetFault[]): void {
    this.nextGets.push(...faults);
  }

  /** A fault for every GET of `key` (until `clear`). */
  always(key: string, fault: GetFault): void {
    this.perKey.set(key, fault);
  }

  /** Forgets faults, recorded requests and header rewriting. */
  clear(): void {
    this.requests.length = 0;
    this.nextGets.length = 0;
    this.perKey.clear();
    this.etags = 'as-is';
    this.stripLastModified = false;
  }

  /** Object requests of `method` (optionally for `key`), in arrival order. */
  of(method: 'GET' | 'HEAD', key?: string): ProxiedRequest[] {
    return this.requests.filter((r) => r.method === method && (key === undefined || r.key === key));
  }

  /** Object GETs whose response is not over yet. */
  get activeGets(): number {
    return this.of('GET').filter((r) => !r.done).length;
  }

  async stop(): Promise<void> {
    await close(this.server);
  }

  private rewrite(headers: http.IncomingHttpHeaders): http.IncomingHttpHeaders {
    const out = { ...headers };
    const etag = out.etag;
    if (this.etags === 'none') delete out.etag;
    else if (this.etags === 'weak' && typeof etag === 'string' && !etag.startsWith('W/'))
      out.etag = `W/${etag}`;
    if (this.stripLastModified) delete out['last-modified'];
    return out;
  }

  private forward(upstream: URL, req: http.IncomingMessage, res: http.ServerResponse): void {
    const { key, query, isObject } = objectOf(req);
    const record: ProxiedRequest | undefined = isObject
      ? { method: req.method ?? '', key, query, headers: req.headers, done: false }
      : undefined;
    if (record) this.requests.push(record);
    const markDone = () => {
      if (record) record.done = true;
    };
    res.on('close', markDone);
    const fault =
      req.method === 'GET' && isObject ? (this.nextGets.shift() ?? this.perKey.get(key)) : undefined;
    const up = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        // Headers as they came (the host too): the request is signed over them.
        headers: req.headers,
      },
      (upRes) => {
        const headers = this.rewrite(upRes.headers);
        if (record) {
          record.status = upRes.statusCode;
          record.responseHeaders = headers;
        }
        if (fault?.kind === 'hold') {
          void fault.until.finally(() => {
            res.writeHead(upRes.statusCode ?? 502, headers);
            upRes.pipe(res);
          });
          return;
        }
        res.writeHead(upRes.statusCode ?? 502, headers);
        if (!fault || (upRes.statusCode ?? 500) >= 300) {
          upRes.pipe(res);
          return;
        }
        if (fault.kind === 'drop') this.drop(fault, upRes, res);
        else this.trickle(fault, upRes, res);
      },
    );
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  }

  private drop(
    fault: Extract<GetFault, { kind: 'drop' }>,
    upRes: http.IncomingMessage,
    res: http.ServerResponse,
  ): void {
    let sent = 0;
    let cut = false;
    upRes.on('data', (chunk: Buffer) => {
      if (cut) return;
      const part = chunk.subarray(0, fault.afterBytes - sent);
      sent += part.length;
      if (sent < fault.afterBytes) {
        res.write(part);
        return;
      }
      cut = true;
      upRes.destroy();
      // The bytes reach the client before the action and the cut.
      res.write(part, () => {
        void (fault.before?.() ?? Promise.resolve()).finally(() => res.socket?.destroy());
      });
    });
    upRes.on('end', () => {
      if (!cut) res.end();
    });
  }

  private trickle(
    fault: Extract<GetFault, { kind: 'slow' }>,
    upRes: http.IncomingMessage,
    res: http.ServerResponse,
  ): void {
    const pending: Buffer[] = [];
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      timer = undefined;
      if (res.destroyed) return;
      let piece = Buffer.alloc(0);
      while (piece.length < fault.bytesPerTick && pending.length > 0) {
        const head = pending[0];
        const take = head.subarray(0, fault.bytesPerTick - piece.length);
        piece = Buffer.concat([piece, take]);
        if (take.length === head.length) pending.shift();
        else pending[0] = head.subarray(take.length);
      }
      if (piece.length > 0) res.write(piece);
      if (pending.length === 0 && ended) {
        res.end();
        return;
      }
      if (pending.length < 4) upRes.resume();
      // A time wait on purpose: this fault is a server that sends slowly, `bytesPerTick` every `tickMs`.
      timer = setTimeout(tick, fault.tickMs);
    };
    upRes.on('data', (chunk: Buffer) => {
      pending.push(chunk);
      if (pending.length >= 4) upRes.pause();
    });
    upRes.on('end', () => (ended = true));
    res.on('close', () => {
      clearTimeout(timer);
      upRes.destroy();
    });
    // The first tick of the slow sender (above).
    timer = setTimeout(tick, fault.tickMs);
  }
}

interface StoredVersion {
  body: Buffer;
  etag: string;
  versionId: string;
  lastModified: Date;
}

const xmlError = (res: http.ServerResponse, status: number, code: string) => {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`,
  );
};

/**
 * Just enough of S3 for what s3rver lacks: a bucket that honours `If-Match` (412 on a mismatch) and
 * `Range: bytes=N-` (206 with Content-Range), with strong ETags, and when `versioned` keeps every version
 * (HEAD and GET by `versionId`, `x-amz-version-id` in answers). Path-style only; no authentication.
 */
export class VersionedS3 {
  private readonly objects = new Map<string, StoredVersion[]>();
  private versions = 0;

  private constructor(
    private readonly server: http.Server,
    readonly endpoint: string,
    readonly versioned: boolean,
  ) {}

  static async start(versioned: boolean): Promise<VersionedS3> {
    const holder: { store?: VersionedS3 } = {};
    const server = http.createServer((req, res) => holder.store?.serve(req, res));
    const store = new VersionedS3(server, await listen(server), versioned);
    holder.store = store;
    return store;
  }

  /** Stores a new version of `bucket/key` (the older ones stay readable by their version id). */
  put(bucket: string, key: string, body: Buffer): StoredVersion {
    const v: StoredVersion = {
      body,
      etag: `"${createHash('md5').update(body).digest('hex')}"`,
      versionId: `v${++this.versions}-${createHash('sha1').update(body).digest('hex').slice(0, 8)}`,
      lastModified: new Date(Date.UTC(2024, 0, 1, 0, 0, this.versions)),
    };
    const list = this.versioned ? (this.objects.get(`${bucket}/${key}`) ?? []) : [];
    list.push(v);
    this.objects.set(`${bucket}/${key}`, list);
    return v;
  }

  async stop(): Promise<void> {
    await close(this.server);
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    const list = this.objects.get(`${parts[0]}/${decodeURIComponent(parts.slice(1).join('/'))}`);
    const versionId = this.versioned ? url.searchParams.get('versionId') : null;
    const v = versionId === null ? list?.at(-1) : list?.find((x) => x.versionId === versionId);
    if (!v) return xmlError(res, 404, versionId === null ? 'NoSuchKey' : 'NoSuchVersion');
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && ifMatch !== v.etag && ifMatch !== '*')
      return xmlError(res, 412, 'PreconditionFailed');
    const headers: http.OutgoingHttpHeaders = {
      etag: v.etag,
      ...(this.versioned ? { 'x-amz-version-id': v.versionId } : {}),
      'last-modified': v.lastModified.toUTCString(),
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
    };
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start >= v.body.length && range) return xmlError(res, 416, 'InvalidRange');
    const body = v.body.subarray(start);
    headers['content-length'] = body.length;
    if (range) headers['content-range'] = `bytes ${start}-${v.body.length - 1}/${v.body.length}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') res.end();
    else res.end(body);
  }
}
