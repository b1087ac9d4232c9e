/**
 * One contender of bench/unpack, run in its own process so its peak RSS is its own. Prints one JSON line:
 * { ms, maxRssMb }. Modes:
 *   agent <archive> <out>                 the agent's streaming unpack (src/artifacts/unpack.ts)
 *   gunzip <archive>                      Node's bare gunzip to nowhere: the floor
 *   s3-agent <endpoint> <s3url> <out>     S3 -> the agent's S3 source -> unpack, one pass
 *   s3-download <endpoint> <s3url> <file> S3 -> a file on disk (the first half of download-then-untar)
 */
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Source, UNPACK_CHUNK, parseS3Url, unpackTar } from '../../src/artifacts';

const LIMITS = { maxBytes: 2 ** 40, maxEntries: 1_000_000 };

function s3(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
}

const sink = () =>
  new Writable({
    highWaterMark: UNPACK_CHUNK,
    write(_c, _e, cb) {
      cb();
    },
  });

async function main(): Promise<void> {
  const [mode, a, b, c] = process.argv.slice(2);
  const started = process.hrtime.bigint();
  switch (mode) {
    case 'agent':
      await unpackTar(fs.createReadStream(a, { highWaterMark: UNPACK_CHUNK }), b, LIMITS);
      break;
    case 'gunzip':
      await pipeline(
        fs.createReadStream(a, { highWaterMark: UNPACK_CHUNK }),
        zlib.createGunzip({ chunkSize: UNPACK_CHUNK }),
        sink(),
      );
      break;
    case 's3-agent': {
      const client = s3(a);
      const source = new S3Source({ client, maxAttempts: 3, resumeAttempts: 3, stallTimeoutMs: 30_000 });
      const info = await source.describe(b);
      await unpackTar(await source.open(info), c, LIMITS);
      client.destroy();
      break;
    }
    case 's3-download': {
      const client = s3(a);
      const { bucket, key } = parseS3Url(b);
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      await pipeline(
        res.Body as NodeJS.ReadableStream,
        fs.createWriteStream(c, { highWaterMark: UNPACK_CHUNK }),
      );
      client.destroy();
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(JSON.stringify({ ms, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
