/**
 * `npm run conformance -- --grpc HOST:PORT [--metrics URL] --repository DIR [--only TEXT]`
 *
 * Runs the agent's Triton-control expectations against a running Triton (see triton-conformance.ts) and
 * prints one line per check; exits 1 if any failed, 2 on a usage error. The repository must be the one
 * Triton was started with (`--model-repository`, explicit model control), writable from here; each check
 * removes what it wrote. With no --grpc it starts the Triton emulator on a temporary repository.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { TritonEmulator } from '../support/triton-emulator';
import { runConformance, type ConformanceTarget } from './triton-conformance';

const USAGE =
  'usage: npm run conformance -- --grpc HOST:PORT [--metrics URL] --repository DIR [--only TEXT]\n' +
  '       npm run conformance            (no --grpc: against the Triton emulator)';

function parse(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    const m = /^--(grpc|metrics|repository|only)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument '${a}'`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    out[m[1]] = value;
  }
  return out;
}

async function main(): Promise<number> {
  let args: Record<string, string>;
  try {
    args = parse(process.argv.slice(2));
    if (args.grpc !== undefined && args.repository === undefined)
      throw new Error('--repository is required with --grpc');
  } catch (err) {
    console.error(`conformance: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  let emulator: TritonEmulator | undefined;
  let scratch: string | undefined;
  let target: ConformanceTarget;
  if (args.grpc === undefined) {
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'conformance-'));
    emulator = await TritonEmulator.start({ modelRepository: scratch, metricsIntervalMs: 50 });
    target = { grpc: emulator.grpcAddress, metrics: emulator.metricsUrl, repository: scratch };
    console.log(`against the Triton emulator at ${emulator.grpcAddress}`);
  } else {
    target = { grpc: args.grpc, metrics: args.metrics, repository: path.resolve(args.repository) };
    console.log(`against Triton at ${target.grpc} (repository ${target.repository})`);
  }
  try {
    const results = await runConformance(target, args.only);
    for (const r of results)
      console.log(
        `${r.outcome.padEnd(7)} ${String(r.ms).padStart(6)} ms  ${r.name}${r.detail ? `\n        ${r.detail}` : ''}`,
      );
    const failed = results.filter((r) => r.outcome === 'failed').length;
    console.log(`${results.length - failed} of ${results.length} passed or skipped, ${failed} failed`);
    return failed > 0 ? 1 : 0;
  } finally {
    await emulator?.stop();
    if (scratch) await fs.rm(scratch, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`conformance: ${(err as Error).message}`);
    process.exit(1);
  },
);
