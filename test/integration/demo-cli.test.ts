import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir } from '../support/model-repo';

const ROOT = path.join(__dirname, '..', '..');

// Child processes (tsx compiling the agent, Python, tritonserver's stand-in) are slow on a busy 2-core machine.
jest.setTimeout(90_000);

/** Runs `npm run demo -- <args>` as a user would, with its own TMPDIR so leftovers can be seen. */
function demo(args: string[], tmp: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'scripts/demo.ts', ...args],
      { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'error', TMPDIR: tmp } },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/** The demo's own temporary folders (tsx keeps a compile cache beside them, which is not ours). */
const leftovers = async (dir: string) => (await fs.readdir(dir)).filter((n) => n.startsWith('mme-demo-'));

describe('npm run demo: what a new user hit', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  beforeEach(async () => {
    work = await tempDir('demo-cli-');
  });
  afterEach(async () => {
    await work.cleanup();
  });

  test('a busy port says how to pick another, and leaves no temporary folder behind', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
    const { port } = busy.address() as net.AddressInfo;
    try {
      const r = await demo(['--once', '--port', String(port)], work.dir);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`demo failed: port ${port} is already in use; pick another with --port`);
      expect(r.out).not.toMatch(/NodeVersionSupportWarning/);
      expect(await leftovers(work.dir)).toEqual([]);
    } finally {
      busy.close();
    }
  });

  test('--help prints the usage and starts nothing; an unknown option is refused with it', async () => {
    const help = await demo(['--help'], work.dir);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: npm run demo/m);
    const bogus = await demo(['--bogus'], work.dir);
    expect(bogus.code).toBe(2);
    expect(bogus.out).toContain("demo: unknown option '--bogus'");
    expect(await leftovers(work.dir)).toEqual([]);
  });

  test('a bad --port is refused before anything is written', async () => {
    const r = await demo(['--port', 'eighty'], work.dir);
    expect(r.code).toBe(1);
    expect(r.out).toContain("--port must be a port number (0 picks a free one), got 'eighty'");
    expect(await leftovers(work.dir)).toEqual([]);
  });

  test('--once cleans up after itself too', async () => {
    const r = await demo(['--once', '--port', '0'], work.dir);
    expect(r.out).toContain('demo: all requests answered as expected');
    expect(r.code).toBe(0);
    expect(await leftovers(work.dir)).toEqual([]);
  });
});
