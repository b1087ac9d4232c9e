import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
/** Every page a reader can reach: the README, the docs folder, the benchmarks. */
const PAGES = [
  'README.md',
  'BENCHMARKS.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const read = (page: string) => fs.readFileSync(path.join(ROOT, page), 'utf8');
const all = PAGES.map(read).join('\n');

/** Folders the docs name that scripts create (packed artifacts, exported weights): not in the repository. */
const GENERATED = ['triton-models/dist', 'triton-models/workspace'];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- _]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(page: string): Set<string> {
  const out = new Set<string>();
  let inFence = false;
  for (const line of read(page).split('\n')) {
    if (line.startsWith('```')) inFence = !inFence;
    const m = !inFence && /^#{1,6} (.*)$/.exec(line);
    if (m) out.add(slug(m[1]));
  }
  return out;
}

describe('the docs a new user follows', () => {
  test('the README fits on a page (at most 250 lines) and links every docs page', () => {
    const readme = read('README.md');
    expect(readme.split('\n').length).toBeLessThanOrEqual(250);
    for (const page of PAGES.filter((p) => p.startsWith('docs/'))) expect(readme).toContain(`](${page})`);
  });

  test('every relative link resolves to a file, and every #anchor to a heading there', () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      for (const m of read(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/i.test(target)) continue;
        const [file, anchor] = target.split('#');
        const resolved = file ? path.normalize(path.join(path.dirname(page), file)) : page;
        if (!fs.existsSync(path.join(ROOT, resolved))) {
          broken.push(`${page}: ${target} (no such file)`);
          continue;
        }
        if (anchor && resolved.endsWith('.md') && !anchorsOf(resolved).has(anchor))
          broken.push(`${page}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });

  test('every npm run script they name exists', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    const named = [...all.matchAll(/npm run ([\w:-]*\w)/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThan(5);
    expect([...new Set(named)].filter((n) => !(n in scripts))).toEqual([]);
  });

  test('every repository path they name exists', () => {
    const named = [
      ...all.matchAll(
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

  test('the scripts they tell users to run are executable', () => {
    const run = [
      ...all.matchAll(/^(?:\s*)((?:triton-models|examples|scripts|deploy)\/[\w./-]+\.sh|scripts\/serve)\b/gm),
    ].map((m) => m[1]);
    expect(run.length).toBeGreaterThan(1);
    for (const p of run) expect([p, fs.statSync(path.join(ROOT, p)).mode & 0o111]).not.toEqual([p, 0]);
  });
});
