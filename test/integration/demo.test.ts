import { spawn } from 'node:child_process';
import * as path from 'node:path';

/** `npm run demo` as a user runs it (here with --once: it runs its own printed requests and exits). */
test('the demo starts, loads both launch-post models and answers its printed requests', async () => {
  const root = path.join(__dirname, '..', '..');
  const child = spawn(
    process.execPath,
    [path.join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), 'scripts/demo.ts', '--once', '--port', '0'],
    {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'error' },
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  expect(out).toContain('Triton emulator (a test double, not Triton)');
  expect(out).toMatch(/curl -s -o \/dev\/null -w '%\{http_code\}\\n' http:\/\/127\.0\.0\.1:\d+\/ping/);
  expect(out).toContain('demo: all requests answered as expected');
  expect(code).toBe(0);
});
