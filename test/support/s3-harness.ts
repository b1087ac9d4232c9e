import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from '@20minutes/s3rver';
import { tempDir } from './model-repo';

/** A fault for the next GET of an object through the proxy. */
export type S3Fault =
  | { kind: 'status'; status: number; code: string }
  | { kind: 'drop'; afterBytes: number }
  | { kind: 'stall'; afterBytes: number }
  | { kind: 'slow'; chunkBytes: number; delayMs: number };

/**
 * A real S3-compatible server (s3rver) on loopback, behind a small proxy that counts requests per key and
 * injects faults (error statuses, connections dropped mid-body, stalled or slow bodies). The agent talks
 * to the proxy with the real AWS SDK; tests upload through a client that talks to s3rver directly.
 */
export class S3Harness {
  /** GET requests per object key that reached the proxy. */
  readonly gets = new Map<string, number>();
  readonly heads = new Map<string, number>();
  private readonly faults: S3Fault[] = [];
  private active = 0;
  /** Most object GETs in flight at once. */
  maxActiveGets = 0;

  private constructor(
    private readonly server: S3rver,
    private readonly proxy: http.Server,
    readonly endpoint: string,
    readonly client: S3Client,
    private readonly cleanup: () => Promise<void>,
  ) {}

  static async start(buckets: string[] = ['models']): Promise<S3Harness> {
    // The agent takes credentials from the AWS SDK's standard chain, as in production.
    process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
    const dir = await tempDir('s3rver-');
    const server = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: path.join(dir.dir, 'data'),
      configureBuckets: buckets.map((name) => ({ name })),
    });
    const addr = (await server.run()) as AddressInfo;
    const upstream = `http://127.0.0.1:${addr.port}`;
    const holder: { harness?: S3Harness } = {};
    const proxy = http.createServer((req, res) => holder.harness?.forward(addr.port, req, res));
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const client = new S3Client({
      endpoint: upstream,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const harness = new S3Harness(server, proxy, endpoint, client, dir.cleanup);
    holder.harness = harness;
    for (const b of buckets) await client.send(new CreateBucketCommand({ Bucket: b })).catch(() => undefined);
    return harness;
  }

  /** Environment for an agent that should use this store. */
  env(): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_S3: this.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
  }

  async put(bucket: string, key: string, body: Buffer | string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  }

  /** Queues faults for the next object GETs, one per request. */
  inject(...faults: S3Fault[]): void {
    this.faults.push(...faults);
  }

  /** Drops faults not yet used. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  getCount(key: string): number {
    return this.gets.get(key) ?? 0;
  }

  async stop(): Promise<void> {
    this.client.destroy();
    this.proxy.closeAllConnections();
    await new Promise<void>((r) => this.proxy.close(() => r()));
    await this.server.close();
    await this.cleanup();
  }

  private forward(port: number, req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    const key = decodeURIComponent(parts.slice(1).join('/'));
    // The SDK tags requests with ?x-id=GetObject; any other query is a sub-resource, not the object.
    const isObject = parts.length >= 2 && [...url.searchParams.keys()].every((k) => k === 'x-id');
    const isGet = req.method === 'GET' && isObject;
    if (req.method === 'HEAD' && isObject) this.heads.set(key, (this.heads.get(key) ?? 0) + 1);
    let fault: S3Fault | undefined;
    // A GET stops counting as active once its last byte is written: with Content-Length the client may
    // finish (and start its next GET) before this side ends the response.
    let markDone = () => undefined as void;
    if (isGet) {
      this.gets.set(key, (this.gets.get(key) ?? 0) + 1);
      fault = this.faults.shift();
      this.active++;
      this.maxActiveGets = Math.max(this.maxActiveGets, this.active);
      // Counted until the last byte is handed over (or the connection dies), not until the socket closes.
      let counted = true;
      markDone = () => {
        if (counted) this.active--;
        counted = false;
      };
      res.on('finish', markDone);
      res.on('close', markDone);
    }
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/xml' });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected</Message></Error>`,
      );
      return;
    }
    const up = http.request(
      { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!fault) {
          upRes.pipe(res);
          return;
        }
        let sent = 0;
        const f = fault;
        let writing = 0;
        let slowSent = 0;
        let ended = false;
        const maybeEnd = () => {
          if (ended && writing === 0) res.end();
        };
        upRes.on('data', (chunk: Buffer) => {
          if (f.kind === 'drop' || f.kind === 'stall') {
            const room = f.afterBytes - sent;
            if (room <= 0) return;
            const part = chunk.subarray(0, room);
            sent += part.length;
            res.write(part);
            if (sent >= f.afterBytes) {
              upRes.destroy();
              // drop: the connection dies mid-body; stall: it stays open and silent.
              if (f.kind === 'drop') res.socket?.destroy();
            }
          } else if (f.kind === 'slow') {
            upRes.pause();
            writing++;
            const pieces: Buffer[] = [];
            for (let i = 0; i < chunk.length; i += f.chunkBytes)
              pieces.push(chunk.subarray(i, i + f.chunkBytes));
            const next = () => {
              const p = pieces.shift();
              if (!p) {
                writing--;
                upRes.resume();
                maybeEnd();
                return;
              }
              res.write(p);
              slowSent += p.length;
              if (slowSent >= Number(upRes.headers['content-length'] ?? Infinity)) markDone();
              // A time wait on purpose: the 'slow' fault is a server that sends a chunk every `delayMs`.
              setTimeout(next, f.delayMs);
            };
            next();
          }
        });
        upRes.on('end', () => {
          if (f.kind === 'slow') {
            ended = true;
            maybeEnd();
          } else if (f.kind !== 'stall' && f.kind !== 'drop') {
            res.end();
          }
        });
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  }
}
