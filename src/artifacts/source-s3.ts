import { Readable } from 'node:stream';
import type { GetObjectCommandOutput, S3Client } from '@aws-sdk/client-s3';
import { AgentError, ErrorCode, messageOf } from '../errors';
import { backoffMs, isRetryableHttp, stallWatch, systemClock, type Clock } from '../time';
import { SourceRestart } from './artifact-fetcher';
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
  /** Time for stalls and the waits between resumes (default: the system's). */
  clock?: Clock;
}

/** Splits `s3://bucket/key`. */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!m) throw new AgentError(ErrorCode.BadRequest, `'${url}' is not an s3://bucket/key URL`);
  return { bucket: m[1], key: m[2] };
}

/** The HTTP status of a failed S3 call (the SDK's service errors carry it in `$metadata`). */
function statusOf(err: unknown): number | undefined {
  const status = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

type S3Sdk = typeof import('@aws-sdk/client-s3');
let sdk: Promise<S3Sdk> | undefined;
/**
 * The AWS SDK, loaded on the first s3:// artifact: SageMaker hands the agent local folders, and the SDK
 * adds about 4.5 MB to a heap every full garbage collection walks (BENCHMARKS.md).
 */
function loadSdk(): Promise<S3Sdk> {
  sdk ??= import('@aws-sdk/client-s3');
  return sdk;
}

/**
 * S3 objects through the AWS SDK's standard credential and region chain. Bodies stream (never buffered
 * whole) and resume with a ranged GET after a dropped or stalled connection, but only when pinned to the
 * version seen at describe time (VersionId, or If-Match on a strong ETag); otherwise they start again.
 */
export class S3Source implements ArtifactSource {
  private client: S3Client | undefined;

  constructor(private readonly options: S3SourceOptions) {
    this.client = options.client;
  }

  /** The SDK and the client, both made on first use. */
  private async s3(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    const loaded = await loadSdk();
    const { region, endpoint, forcePathStyle, maxAttempts } = this.options;
    this.client ??= new loaded.S3Client({
      ...(region ? { region } : {}),
      ...(endpoint ? { endpoint } : {}),
      forcePathStyle: forcePathStyle ?? false,
      maxAttempts,
    });
    return { sdk: loaded, client: this.client };
  }

  /** Releases the client's connections (when one was made). */
  close(): void {
    this.client?.destroy();
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
      const { sdk, client } = await this.s3();
      const head = await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key }));
      return {
        url,
        kind: 'archive',
        size: head.ContentLength ?? 0,
        // No ETag: the time it was written; neither: its size, the only sign of a change left.
        version:
          head.ETag ??
          (head.LastModified ? `${head.LastModified.getTime()}` : `size:${head.ContentLength ?? 0}`),
        ...(head.ETag ? { etag: head.ETag } : {}),
        // 'null' is the version of an object written while versioning was off: not a pin.
        ...(head.VersionId && head.VersionId !== 'null' ? { versionId: head.VersionId } : {}),
      };
    } catch (err) {
      throw this.failure(err, url, 'HEAD');
    }
  }

  /**
   * Streams the object. A body that breaks off or stalls is resumed with a ranged GET only when the request
   * is pinned to the version describe() saw: by VersionId, or by `If-Match` on a strong ETag. Without a pin
   * (no ETag, or a weak one) a resumed range could come from a newer object and mix two versions, so the
   * stream fails with SourceRestart and the fetcher starts again from byte 0. Every response is checked
   * against describe(): another ETag, VersionId, size or (without an ETag) Last-Modified, or a 412, means the
   * object changed, which fails with a retryable SOURCE_UNAVAILABLE (the next fetch describes it afresh).
   */
  async open(info: ArtifactInfo): Promise<Readable> {
    const { bucket, key } = parseS3Url(info.url);
    const { resumeAttempts, stallTimeoutMs } = this.options;
    const clock = this.options.clock ?? systemClock;
    const failure = (err: unknown, what: string) => this.failure(err, info.url, what);
    const { sdk, client } = await this.s3().catch((err: unknown) => {
      throw failure(err, 'loading the AWS SDK for');
    });
    const pin = pinOf(info);
    const resumable = pin.VersionId !== undefined || pin.IfMatch !== undefined;
    // Closing the stream aborts a request in flight and the body being read, so nothing outlives it.
    const abort = new AbortController();
    let body: Readable | undefined;
    async function* chunks(): AsyncGenerator<Buffer> {
      let offset = 0;
      let failures = 0;
      for (;;) {
        try {
          const res = await client.send(
            new sdk.GetObjectCommand({
              Bucket: bucket,
              Key: key,
              ...pin,
              ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
            }),
            { abortSignal: abort.signal },
          );
          body = res.Body as Readable;
          sameObject(info, res, offset);
          for await (const chunk of withStallTimeout(body, stallTimeoutMs, clock)) {
            offset += (chunk as Buffer).length;
            failures = 0;
            yield chunk as Buffer;
          }
          if (offset >= info.size) return;
          throw new Error(`connection closed after ${offset} of ${info.size} bytes`);
        } catch (err) {
          body?.destroy();
          body = undefined;
          if (abort.signal.aborted || err instanceof AgentError) throw err;
          // Every byte arrived before the failure (a stall noticed after the last chunk): done, not a
          // resume from the end, which the store would answer 416.
          if (offset >= info.size) return;
          const status = statusOf(err);
          if (status === 412) throw changed(info, 'the store refused the pinned version (412)', err);
          if ((err as { name?: string })?.name === 'NoSuchVersion')
            throw changed(info, `its version ${info.versionId} is gone`, err);
          if (!isRetryableHttp(status)) throw failure(err, 'GET');
          if (++failures > resumeAttempts) throw failure(err, `GET (after ${resumeAttempts} resumes)`);
          if (offset > 0 && !resumable)
            throw new SourceRestart(
              `the download of ${info.url} broke off after ${offset} of ${info.size} bytes (${messageOf(err)}), and the object has ${info.etag ? 'only a weak ETag' : 'no ETag'} and no version id to resume it against`,
              { cause: err },
            );
          await clock.sleep(backoffMs(failures, { baseMs: 100, maxMs: 5_000, jitter: 0.5 }), abort.signal);
        } finally {
          body?.destroy();
          body = undefined;
        }
      }
    }
    return pull(chunks(), () => {
      abort.abort();
      body?.destroy();
    });
  }
}

/** Request parameters that pin every GET to the object describe() saw. */
function pinOf(info: ArtifactInfo): { VersionId?: string; IfMatch?: string } {
  const strong = info.etag !== undefined && info.etag.startsWith('"') ? info.etag : undefined;
  return {
    ...(info.versionId !== undefined ? { VersionId: info.versionId } : {}),
    ...(strong !== undefined ? { IfMatch: strong } : {}),
  };
}

function changed(info: ArtifactInfo, how: string, cause?: unknown): AgentError {
  return new AgentError(
    ErrorCode.SourceUnavailable,
    `${info.url} changed while it was being downloaded (${how}); try again to fetch the new version`,
    { cause },
  );
}

/** Total object size from `Content-Range: bytes a-b/total`. */
function rangeOf(header: string | undefined): { start: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

/**
 * Throws unless a GET answered with the object describe() saw, from byte `offset`: a different validator or
 * size is a changed object; a ranged request answered from elsewhere than `offset` cannot be continued.
 */
function sameObject(info: ArtifactInfo, res: GetObjectCommandOutput, offset: number): void {
  if (info.versionId !== undefined && res.VersionId !== undefined && res.VersionId !== info.versionId)
    throw changed(info, `version ${info.versionId} became ${res.VersionId}`);
  if (info.etag !== undefined && res.ETag !== undefined && res.ETag !== info.etag)
    throw changed(info, `ETag ${info.etag} became ${res.ETag}`);
  // Without an ETag the version is the Last-Modified time in ms (when the HEAD gave one).
  if (
    info.etag === undefined &&
    /^\d+$/.test(info.version) &&
    res.LastModified !== undefined &&
    `${res.LastModified.getTime()}` !== info.version
  )
    throw changed(info, `Last-Modified became ${res.LastModified.toISOString()}`);
  let total = res.ContentLength;
  if (offset > 0) {
    const range = rangeOf(res.ContentRange);
    if (range?.start !== offset)
      throw new SourceRestart(
        `${info.url} answered a resume from byte ${offset} with ${res.ContentRange ? `bytes ${res.ContentRange}` : 'the whole object'}`,
      );
    total = range.total;
  }
  if (total !== undefined && total !== info.size)
    throw changed(info, `its size ${info.size} became ${total}`);
}

/**
 * A byte stream pulled from `chunks`. Unlike `Readable.from`, destroying it calls `onDestroy` at once (which
 * aborts the request and body being read) instead of first waiting for the pending chunk.
 */
function pull(chunks: AsyncGenerator<Buffer>, onDestroy: () => void): Readable {
  return new Readable({
    highWaterMark: 1 << 20,
    read() {
      chunks.next().then(
        (r) => {
          if (r.done) this.push(null);
          else this.push(r.value);
        },
        (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
      );
    },
    destroy(err, callback) {
      onDestroy();
      chunks.return(undefined).catch(() => undefined);
      callback(err);
    },
  });
}

/**
 * Yields the stream's chunks, failing when none arrives for `ms` (a stalled connection). Only the wait
 * for the store counts: while the reader holds a chunk (a slow disk behind the unpack) the watch pauses.
 */
async function* withStallTimeout(stream: Readable, ms: number, clock: Clock): AsyncGenerator<unknown> {
  const watch = stallWatch(clock, ms, () => stream.destroy(new Error(`no data for ${ms} ms`)));
  try {
    for await (const chunk of stream) {
      watch.pause();
      yield chunk;
      watch.touch();
    }
  } finally {
    watch.stop();
  }
}
