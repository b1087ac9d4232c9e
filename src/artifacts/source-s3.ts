import { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { AgentError, ErrorCode, messageOf } from '../errors';
import type { ArtifactInfo, ArtifactSource } from './artifact-source';

export interface S3SourceOptions {
  /** AWS region (else the SDK's chain: AWS_REGION, profile, ...). */
  region?: string;
  /** A custom endpoint, e.g. MinIO or a local S3-compatible store. */
  endpoint?: string;
  /** Path-style addressing (`http://host/bucket/key`), which MinIO-like stores need. */
  forcePathStyle?: boolean;
  /** Attempts per S3 request (the SDK retries throttling, 5xx and connection errors with backoff). */
  maxAttempts: number;
  /** Times a body that breaks off or stalls is resumed from where it stopped. */
  resumeAttempts: number;
  /** A body that sends nothing for this long is abandoned and resumed. */
  stallTimeoutMs: number;
  /** A ready-made client (tests); otherwise one is built from the options. */
  client?: S3Client;
}

/** Splits `s3://bucket/key`. */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!m) throw new AgentError(ErrorCode.BadRequest, `'${url}' is not an s3://bucket/key URL`);
  return { bucket: m[1], key: m[2] };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata?.httpStatusCode : undefined;
}

/**
 * S3 objects through the AWS SDK's standard credential and region chain. Bodies stream (never buffered
 * whole) and resume with a ranged GET, pinned to the ETag seen at describe time, after a dropped or
 * stalled connection.
 */
export class S3Source implements ArtifactSource {
  readonly client: S3Client;

  constructor(private readonly options: S3SourceOptions) {
    this.client =
      options.client ??
      new S3Client({
        ...(options.region ? { region: options.region } : {}),
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        forcePathStyle: options.forcePathStyle ?? false,
        maxAttempts: options.maxAttempts,
      });
  }

  handles(url: string): boolean {
    return url.startsWith('s3://');
  }

  private failure(err: unknown, url: string, what: string): AgentError {
    const status = statusOf(err);
    const name = (err as { name?: string })?.name;
    if (status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket') {
      return new AgentError(ErrorCode.ArtifactNotFound, `model artifact not found: ${url}`, { cause: err });
    }
    if (status === 403 || name === 'AccessDenied') {
      return new AgentError(
        ErrorCode.SourceUnavailable,
        `access denied to ${url}: check the credentials and the bucket policy`,
        {
          cause: err,
        },
      );
    }
    return new AgentError(ErrorCode.SourceUnavailable, `${what} ${url} failed: ${messageOf(err)}`, {
      cause: err,
    });
  }

  async describe(url: string): Promise<ArtifactInfo> {
    const { bucket, key } = parseS3Url(url);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return {
        url,
        kind: 'archive',
        size: head.ContentLength ?? 0,
        version: head.ETag ?? `${head.LastModified?.getTime()}`,
      };
    } catch (err) {
      throw this.failure(err, url, 'HEAD');
    }
  }

  async open(info: ArtifactInfo): Promise<Readable> {
    const { bucket, key } = parseS3Url(info.url);
    const { resumeAttempts, stallTimeoutMs } = this.options;
    const client = this.client;
    const failure = (err: unknown, what: string) => this.failure(err, info.url, what);
    async function* chunks(): AsyncGenerator<Buffer> {
      let offset = 0;
      let failures = 0;
      for (;;) {
        let body: Readable | undefined;
        try {
          const res = await client.send(
            new GetObjectCommand({
              Bucket: bucket,
              Key: key,
              // The same object throughout: a changed artifact fails instead of mixing two versions.
              ...(info.version.startsWith('"') ? { IfMatch: info.version } : {}),
              ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
            }),
          );
          body = res.Body as Readable;
          for await (const chunk of withStallTimeout(body, stallTimeoutMs)) {
            offset += (chunk as Buffer).length;
            failures = 0;
            yield chunk as Buffer;
          }
          if (offset >= info.size) return;
          throw new Error(`connection closed after ${offset} of ${info.size} bytes`);
        } catch (err) {
          body?.destroy();
          const status = statusOf(err);
          if (status === 412) {
            throw new AgentError(
              ErrorCode.SourceUnavailable,
              `${info.url} changed while it was being downloaded`,
              { cause: err },
            );
          }
          if (status !== undefined && status < 500 && status !== 429) throw failure(err, 'GET');
          if (++failures > resumeAttempts) throw failure(err, `GET (after ${resumeAttempts} resumes)`);
          await sleep(Math.min(5_000, 100 * 2 ** failures));
        }
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: 1 << 20 });
  }
}

/** Yields the stream's chunks, failing when none arrives for `ms` (a stalled connection). */
async function* withStallTimeout(stream: Readable, ms: number): AsyncGenerator<unknown> {
  const it = stream[Symbol.asyncIterator]();
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no data for ${ms} ms`)), ms);
    });
    try {
      const r = await Promise.race([it.next(), stalled]);
      if (r.done) return;
      yield r.value;
    } finally {
      clearTimeout(timer);
    }
  }
}
