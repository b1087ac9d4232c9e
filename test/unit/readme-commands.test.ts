import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** Folders the README names that scripts create (packed artifacts, exported weights): not in the repository. */
const GENERATED = ['triton-models/dist', 'triton-models/workspace'];

describe('the README a new user follows', () => {
  test('every npm run script it names exists', () => {
    const scripts = (
      JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    const named = [...readme.matchAll(/npm run ([\w:-]*\w)/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(5);
    expect([...new Set(named)].filter((n) => !(n in scripts))).toEqual([]);
  });

  test('every repository path it names exists', () => {
    const named = [
      ...readme.matchAll(
        /(?<![\w/.-])((?:triton-models|examples|deploy|scripts|src|test|bench|docs|protos)\/[\w./*-]*[\w/*])/g,
      ),
    ].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(10);
    const missing = [...new Set(named)]
      .filter((p) => !GENERATED.some((g) => p === g || p.startsWith(`${g}/`)))
      .map((p) => (p.includes('*') ? path.dirname(p.slice(0, p.indexOf('*') + 1)) : p))
      .filter((p) => !fs.existsSync(path.join(ROOT, p)));
    expect(missing).toEqual([]);
  });

  test('the scripts it tells users to run are executable', () => {
    const run = [
      ...readme.matchAll(
        /^(?:\s*)((?:triton-models|examples|scripts|deploy)\/[\w./-]+\.sh|scripts\/serve)\b/gm,
      ),
    ].map((m) => m[1]);
    expect(run.length).toBeGreaterThan(1);
    for (const p of run) expect([p, fs.statSync(path.join(ROOT, p)).mode & 0o111]).not.toEqual([p, 0]);
  });
});
