import { execFile } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'test', 'support', 'triton-emulator', 'cli.ts');
const TSX_LOADER = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');

/** Runs the emulator's command line to its exit. */
function emulator(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX_LOADER, CLI, ...args],
      { timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('the emulator as a command (npm run emulator)', () => {
  test('--help describes every flag it implements, each on its own line', async () => {
    const r = await emulator(['--help']);
    expect(r.code).toBe(0);
    const flagLines = r.stdout.split('\n').filter((l) => /^ {2}--/.test(l));
    expect(flagLines.length).toBeGreaterThanOrEqual(20);
    // Each flag says what it does (text after the flag name).
    for (const line of flagLines) expect(line).toMatch(/^ {2}--[a-z-]+ VALUE\s+\S/);
    expect(r.stdout).toMatch(
      /--model-repository VALUE\s+the model repository folder \(required; it must exist\)/,
    );
  });

  test('a repository that does not exist stops it at start with tritonserver’s words, exit 1', async () => {
    const missing = path.join(ROOT, 'no-such-repository');
    const r = await emulator(['--model-repository', missing, '--grpc-port', '0', '--metrics-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`error: creating server: Internal - failed to stat file ${missing}`);
  });

  test('no repository at all: tritonserver’s "must be specified", exit 1', async () => {
    const r = await emulator(['--grpc-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--model-repository must be specified/);
  });
});
