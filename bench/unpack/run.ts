/**
 * bench/unpack: the agent's streaming unpack against GNU `tar -xzf` on the same artifact, Node's bare
 * gunzip as the floor, and the cold path S3 -> ready-on-disk against "download to a file, then tar -xzf".
 *
 *   npm run bench:unpack                  512 MiB artifact (half incompressible weights, half text-like)
 *   npm run bench:unpack -- --size 2048   2 GiB, to show peak RSS does not grow with the artifact
 *
 * Every contender runs in a fresh process, three times; the median is reported. The archive is read once
 * before timing so every contender starts from the page cache. Fairness: GNU tar gets its default
 * (it runs `gzip -d` in a second process, so it too decompresses in parallel with extraction); the
 * download-then-untar baseline uses the same S3 client and server as the agent.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { S3Harness } from '../../test/support/s3-harness';
import { benchFlags, numberFlag } from '../support/flags';

const CMD = 'bench:unpack';
const flags = benchFlags(CMD, {
  size: { type: 'string', default: '512', help: 'archive size in MB' },
  runs: { type: 'string', default: '3', help: 'runs per contender' },
});
const sizeMb = numberFlag(CMD, 'size', flags.size, 1);
const runs = numberFlag(CMD, 'runs', flags.runs, 1);
const dataDir = path.join(__dirname, '..', '.data');
const MiB = 1024 * 1024;

interface Sample {
  ms: number;
  maxRssMb?: number;
}

function run(cmd: string, argv: string[]): Promise<{ out: string; ms: number }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve({ out, ms });
      else reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}`));
    });
  });
}

const root = path.join(__dirname, '..', '..');
// Contenders run as plain compiled JavaScript, so their peak RSS is theirs and not a TypeScript loader's.
const contender = path.join(root, 'dist', 'bench', 'unpack', 'contender.js');

async function node(...argv: string[]): Promise<Sample> {
  const { out } = await run(process.execPath, [contender, ...argv]);
  return JSON.parse(out.trim().split('\n').pop() as string) as Sample;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** A model-like artifact: weights (random) and text-like files (configs, vocabularies, tables). */
async function makeArtifact(file: string, totalMb: number): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, zlib.createGzip({ chunkSize: MiB }), fs.createWriteStream(file));
  const add = (name: string, content: Buffer) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name }, content, (err) => (err ? reject(err) : resolve())),
    );
  await add(
    'model/config.pbtxt',
    Buffer.from('name: "model"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\n'),
  );
  const words = Array.from({ length: 5000 }, (_, i) => `token_${i.toString(36)}_${(i * 7919) % 10007}`);
  let written = 0;
  let n = 0;
  while (written < totalMb * MiB) {
    const size = Math.min(64 * MiB, totalMb * MiB - written);
    let content: Buffer;
    if (n % 2 === 0) {
      content = randomBytes(size);
    } else {
      const text = Buffer.from(words.join(' ') + '\n');
      content = Buffer.alloc(size);
      for (let o = 0; o < size; o += text.length) text.copy(content, o);
    }
    await add(`model/1/part-${n}.bin`, content);
    written += size;
    n++;
  }
  pack.finalize();
  await done;
}

/** Removes a directory and flushes the page cache's dirty pages, so no contender pays for another's writes. */
async function rmrf(p: string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true });
  await run('sync', []);
}

async function main(): Promise<void> {
  // The production build (tsconfig.build.json) holds src only; the contender lives in bench/.
  await run('npx', ['tsc', '-p', path.join(root, 'tsconfig.json')]);
  await fsp.mkdir(dataDir, { recursive: true });
  const archive = path.join(dataDir, `artifact-${sizeMb}m.tar.gz`);
  if (!fs.existsSync(archive)) {
    console.log(`making a ${sizeMb} MiB artifact ...`);
    await makeArtifact(archive, sizeMb);
  }
  const archiveMb = (await fsp.stat(archive)).size / MiB;
  await run('sh', ['-c', `cat '${archive}' > /dev/null`]); // into the page cache
  const out = path.join(dataDir, 'out');
  const results: Record<string, Sample[]> = {
    'GNU tar -xzf': [],
    'agent unpack': [],
    'node gunzip (floor)': [],
  };
  for (let i = 0; i < runs; i++) {
    await rmrf(out);
    await fsp.mkdir(out);
    results['GNU tar -xzf'].push({ ms: (await run('tar', ['-xzf', archive, '-C', out])).ms });
    await rmrf(out);
    results['agent unpack'].push(await node('agent', archive, out));
    await rmrf(out);
    results['node gunzip (floor)'].push(await node('gunzip', archive));
  }

  // Cold path from S3 (a real S3-compatible server on loopback).
  const s3 = await S3Harness.start(['bench']);
  const key = path.basename(archive);
  await s3.put('bench', key, await fsp.readFile(archive));
  const url = `s3://bench/${key}`;
  const cold: Record<string, Sample[]> = { 'download, then tar -xzf': [], 'agent S3 -> disk (one pass)': [] };
  const downloaded = path.join(dataDir, 'downloaded.tar.gz');
  for (let i = 0; i < runs; i++) {
    await rmrf(out);
    await fsp.mkdir(out);
    const started = process.hrtime.bigint();
    await node('s3-download', s3.endpoint, url, downloaded);
    await run('tar', ['-xzf', downloaded, '-C', out]);
    cold['download, then tar -xzf'].push({ ms: Number(process.hrtime.bigint() - started) / 1e6 });
    await rmrf(downloaded);
    await rmrf(out);
    cold['agent S3 -> disk (one pass)'].push(await node('s3-agent', s3.endpoint, url, out));
  }
  await s3.stop();
  await rmrf(out);

  const table = (title: string, rows: Record<string, Sample[]>, baseline: string) => {
    const base = median(rows[baseline].map((r) => r.ms));
    console.log(`\n${title}`);
    console.log('| contender | median ms | ratio to baseline | peak RSS MiB |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const [name, samples] of Object.entries(rows)) {
      const ms = median(samples.map((s) => s.ms));
      const rss = samples.some((s) => s.maxRssMb !== undefined)
        ? Math.max(...samples.map((s) => s.maxRssMb ?? 0)).toFixed(0)
        : '-';
      console.log(
        `| ${name}${name === baseline ? ' (baseline)' : ''} | ${ms.toFixed(0)} | ${(ms / base).toFixed(2)} | ${rss} |`,
      );
    }
  };
  console.log(
    `\nartifact: ${sizeMb} MiB unpacked, ${archiveMb.toFixed(0)} MiB gzipped; ${runs} runs each, median`,
  );
  table('Unpack from local disk', results, 'GNU tar -xzf');
  const agent = median(results['agent unpack'].map((r) => r.ms));
  const floor = median(results['node gunzip (floor)'].map((r) => r.ms));
  console.log(`agent / gunzip floor: ${(agent / floor).toFixed(2)}`);
  table('Cold path: S3 -> ready on disk', cold, 'download, then tar -xzf');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
