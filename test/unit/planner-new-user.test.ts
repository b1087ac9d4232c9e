/**
 * What a new user following docs/planner.md literally ran into, one test per report:
 * 1. `--log access.log --log access.log.1` failed with ENOENT on a log that had not rotated yet;
 * 2. the log's hit ratio (0.248) and the replay's (0.533) at the same GPU disagreed without a word;
 * 3. a GPU size that is all headroom printed a row of zeros;
 * 4. the chart did not say what it plotted, from what, or which way is better, and identical lines hid
 *    each other (one red line, four legend entries);
 * 5. policy labels were printed without a word on what they mean.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../../src/cli';
import { defaultExperts, policyNames } from '../../src/models/eviction';
import { AccessLog } from '../../src/observability';
import {
  HIT_DEFINITION,
  POLICY_DESCRIPTIONS,
  describeLogs,
  expandLogs,
  formatPlan,
  planCapacity,
  readAccessLogs,
  renderChart,
  rotatedSet,
} from '../../src/planner';

const GiB = 1024 ** 3;
const T0 = Date.UTC(2026, 0, 1);
const DOCS = path.join(__dirname, '..', '..', 'docs', 'planner.md');
const squash = (s: string) => s.replace(/\s+/g, ' ');

/** Four 1 GiB models used round robin, one request a second, each load 2 s (as the agent writes it). */
async function writeRoundRobinLog(file: string, cycles: number, maxBytes = 1 << 20): Promise<void> {
  const log = await AccessLog.open({ file, maxBytes, maxFiles: 10 });
  let t = T0;
  for (let c = 0; c < cycles; c++) {
    for (const m of ['a', 'b', 'c', 'd']) {
      const first = c === 0;
      if (first)
        log.lifecycle({ event: 'load', model: m, footprintBytes: GiB, loadMs: 2000, downloadMs: 0, time: t });
      log.invoke({
        model: m,
        hit: !first,
        footprintBytes: GiB,
        waitMs: first ? 2000 : 0,
        ...(first ? { loadMs: 2000 } : {}),
        time: t,
      });
      t += 1000;
    }
  }
  await log.close();
}

async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runCli(
    ['plan', ...argv],
    (l) => out.push(...l.split('\n')),
    (l) => err.push(l),
  );
  return { status, out, err: err.join('\n') };
}

/** The table rows of a plan's output, as cells. */
const tableRows = (out: string[]) =>
  out.filter((l) => /^\d+(\.\d+)?[MGT]iB\s/.test(l)).map((l) => l.split(/\s{2,}/));

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'planner-new-user-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('1. --log FILE reads the rotated set (was: ENOENT for a log that had not rotated yet)', () => {
  test('the documented `--log access.log` reads a log that has not rotated yet, alone', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25);
    expect(await fsp.readdir(dir)).toEqual(['access.log']);
    const r = await run([
      '--log',
      file,
      '--gpu',
      '4GiB',
      '--headroom',
      '0',
      '--chart',
      path.join(dir, 'c.svg'),
    ]);
    expect([r.status, r.err]).toEqual([0, '']);
    expect(r.out[0]).toBe(`log read: ${file}`);
    expect(r.out).toContain('100 requests for 4 models over 0.03 h');
  });

  test('`--log access.log` reads access.log.N … access.log.1, access.log, oldest first, a gap being fine', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25, 1500);
    const rotated = (await fsp.readdir(dir)).filter((f) => f !== 'access.log').sort();
    expect(rotated.length).toBeGreaterThan(3);
    const n = rotated.length;
    const expected = [...Array.from({ length: n }, (_, i) => `${file}.${n - i}`), file];
    expect(await rotatedSet(file)).toEqual(expected);
    // Every line of every file is read: the same plan as naming each file.
    const all = planCapacity(await readAccessLogs(expected), { gpuBytes: [3 * GiB], headroomBytes: 0 });
    const chart = path.join(dir, 'c.svg');
    const r = await run(['--log', file, '--gpu', '3GiB', '--headroom', '0', '--chart', chart]);
    expect([r.status, r.err]).toEqual([0, '']);
    expect(r.out[0]).toBe(`${n + 1} logs read, oldest first: ${expected.join(', ')}`);
    expect(r.out).toContain('100 requests for 4 models over 0.03 h');
    expect(tableRows(r.out).map((c) => Number(c[2]))).toEqual(
      all.rows.map((x) => Number(x.hitRatio.toFixed(3))),
    );
    // A rotated file deleted by hand leaves a gap: the others are read.
    await fsp.rm(`${file}.2`);
    expect(await rotatedSet(file)).toEqual(expected.filter((f) => f !== `${file}.2`));
  });

  test('the old documented form `--log access.log --log access.log.1` reads access.log.1 once', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25, 1500);
    const set = await rotatedSet(file);
    expect(await expandLogs([file, `${file}.1`])).toEqual(set);
    expect(await expandLogs([`${file}.1`, file])).toEqual([
      `${file}.1`,
      ...set.filter((f) => f !== `${file}.1`),
    ]);
  });

  test('only FILE.k beside it with k a whole number from 1 counts as rotated; folders and look-alikes do not', async () => {
    const file = path.join(dir, 'access.log');
    for (const name of [
      'access.log',
      'access.log.1',
      'access.log.3',
      'access.log.10',
      'access.log.01',
      'access.log.0',
      'access.log.1.gz',
      'access.log.bak',
      'access.logx.1',
      'other.log.1',
    ])
      await fsp.writeFile(path.join(dir, name), '');
    await fsp.mkdir(path.join(dir, 'access.log.4'));
    expect(await rotatedSet(file)).toEqual([`${file}.10`, `${file}.3`, `${file}.1`, file]);
  });

  test('a pipe has no rotated files: it is read alone', async () => {
    const fifo = path.join(dir, 'pipe.log');
    execFileSync('mkfifo', [fifo]);
    await fsp.writeFile(`${fifo}.1`, '');
    expect(await rotatedSet(fifo)).toEqual([fifo]);
  });

  test('an explicitly named file that does not exist is a one-line error (exit 1), with a hint when its rotated files exist', async () => {
    const chart = path.join(dir, 'c.svg');
    const missing = await run(['--log', path.join(dir, 'none.log'), '--gpu', '1GiB', '--chart', chart]);
    expect(missing.status).toBe(1);
    expect(missing.err).toBe(
      `plan: cannot read access log '${path.join(dir, 'none.log')}': ENOENT: no such file`,
    );
    // The old form, on a log that has not rotated yet: access.log.1 is named and missing.
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 2);
    const old = await run(['--log', file, '--log', `${file}.1`, '--gpu', '1GiB', '--chart', chart]);
    expect(old.status).toBe(1);
    expect(old.err).toMatch(/^plan: cannot read access log '.*access\.log\.1': ENOENT: no such file$/);
    await fsp.rename(file, `${file}.1`);
    await expect(rotatedSet(file)).rejects.toThrow(
      `cannot read access log '${file}': ENOENT: no such file (its rotated files exist: name '${file}.1')`,
    );
    expect(fs.existsSync(chart)).toBe(false);
  });
});

describe('2. one definition of a hit, in the log, the replay and the output (was: 0.248 in the log above 0.533 for the same GPU)', () => {
  /**
   * As the agent writes it: x loads for 5 s; the request that started the load and the one that arrived
   * during it are cold (both waited), the later ones hits. y is used once in between.
   */
  async function agentLog(): Promise<string> {
    const iso = (ms: number) => new Date(T0 + ms).toISOString();
    const inv = (ms: number, model: string, outcome: 'hit' | 'cold', extra: object = {}) =>
      JSON.stringify({ time: iso(ms), type: 'invoke', outcome, model, footprintBytes: GiB, ...extra });
    const lines = [
      JSON.stringify({
        time: iso(0),
        type: 'lifecycle',
        event: 'load',
        model: 'x',
        footprintBytes: GiB,
        loadMs: 5000,
      }),
      inv(0, 'x', 'cold', { loadMs: 5000, waitMs: 5000 }),
      inv(1000, 'x', 'cold', { loadMs: 5000, waitMs: 4000 }),
      inv(7000, 'x', 'hit', { waitMs: 0 }),
      JSON.stringify({
        time: iso(8000),
        type: 'lifecycle',
        event: 'load',
        model: 'y',
        footprintBytes: GiB,
        loadMs: 5000,
      }),
      inv(8000, 'y', 'cold', { loadMs: 5000, waitMs: 5000 }),
      inv(20_000, 'x', 'hit', { waitMs: 0 }),
      inv(21_000, 'y', 'hit', { waitMs: 0 }),
    ];
    const file = path.join(dir, 'agent.log');
    await fsp.writeFile(file, `${lines.join('\n')}\n`);
    return file;
  }

  test('a request that waited for a load in progress is a miss in the log and in the replay: both say 0.500', async () => {
    const file = await agentLog();
    const log = await readAccessLogs([file]);
    expect(log.observedHits).toBe(3);
    const plan = planCapacity(log, {
      gpuBytes: [2 * GiB],
      headroomBytes: 0,
      agent: { gpuBytes: 2 * GiB, policy: 'lru' },
    });
    expect(plan.rows.map((r) => [r.policy, r.hitRatio, r.coldLoads, r.joinedLoads])).toEqual(
      policyNames().map((p) => [p, 0.5, 2, 1]),
    );
    expect(plan.agent).toEqual({
      gpuBytes: 2 * GiB,
      policy: 'lru',
      modelBytes: 2 * GiB,
      noRoom: false,
      loggedHitRatio: 0.5,
      replayedHitRatio: 0.5,
    });
    const r = await run([
      '--log',
      file,
      '--gpu',
      '2GiB',
      '--headroom',
      '0',
      '--agent-gpu',
      '2GiB',
      '--chart',
      path.join(dir, 'c.svg'),
    ]);
    expect([r.status, r.err]).toEqual([0, '']);
    expect(r.out).toContain(`hit ratio: ${HIT_DEFINITION}`);
    expect(r.out).toContain(
      'in the log, as the agent served it: hit ratio 0.500, waits p50 0 ms, p99 5000 ms',
    );
    expect(r.out).toContain(
      "at the agent's 2GiB with adaptive: hit ratio 0.500 in the log and in the replay",
    );
  });

  test('where the log and the replay differ at the agent GPU size, both are printed, labelled', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25); // written by an agent with room for all four: 96 hits of 100
    const chart = path.join(dir, 'c.svg');
    const r = await run([
      '--log',
      file,
      '--gpu',
      '3GiB,4GiB',
      '--headroom',
      '0',
      '--agent-gpu',
      '3GiB',
      '--chart',
      chart,
    ]);
    expect([r.status, r.err]).toEqual([0, '']);
    const line = r.out.find((l) => l.startsWith("at the agent's 3GiB with adaptive: "));
    const m = /hit ratio (\d\.\d{3}) in the log, (\d\.\d{3}) in the replay \(/.exec(line ?? '');
    expect(m?.[1]).toBe('0.960');
    // The replayed figure is the table's, for the agent's size and policy.
    const row = tableRows(r.out).find((c) => c[0] === '3GiB' && c[1] === 'adaptive (default)');
    expect(m?.[2]).toBe(row?.[2]);
    expect(m?.[2]).not.toBe('0.960');
    // A size not in --gpu is replayed for the comparison alone.
    const alone = await run([
      '--log',
      file,
      '--gpu',
      '4GiB',
      '--headroom',
      '0',
      '--agent-gpu',
      '3GiB',
      '--chart',
      chart,
    ]);
    expect(alone.out.find((l) => l.startsWith("at the agent's 3GiB"))).toBe(line);
    expect(tableRows(alone.out).every((c) => c[0] === '4GiB')).toBe(true);
    // Without --agent-gpu the log's figure stands alone, labelled, with how to compare it.
    const bare = await run(['--log', file, '--gpu', '4GiB', '--headroom', '0', '--chart', chart]);
    expect(bare.out).toContain(
      'in the log, as the agent served it: hit ratio 0.960, waits p50 0 ms, p99 2000 ms',
    );
    expect(bare.out.some((l) => l.includes('--agent-gpu SIZE'))).toBe(true);
  });

  test('--agent-gpu is parsed strictly like every size', async () => {
    const r = await run(['--log', 'x', '--gpu', '1GiB', '--agent-gpu', 'big']);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/--agent-gpu: 'big' is not a size/);
  });
});

describe('3. a GPU size that is all headroom says so (was: a row of zeros)', () => {
  test('1GiB with 1GiB headroom: "no memory left for models after 1GiB headroom", no numbers, not plotted', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25);
    const chart = path.join(dir, 'c.svg');
    const r = await run(['--log', file, '--gpu', '1GiB,5GiB', '--headroom', '1GiB', '--chart', chart]);
    expect([r.status, r.err]).toEqual([0, '']);
    const rows = tableRows(r.out);
    const small = rows.filter((c) => c[0] === '1GiB');
    expect(small).toHaveLength(policyNames().length);
    for (const c of small) expect(c.slice(2)).toEqual(['no memory left for models after 1GiB headroom']);
    for (const c of rows.filter((x) => x[0] === '5GiB'))
      expect(c.slice(2).map(Number)).toEqual([0.96, ...c.slice(3).map(Number)]);
    // Sparklines leave the size out rather than draw a zero.
    const spark = r.out.filter((l) => l.includes(' → ') && /^ {2}\S/.test(l));
    expect(spark).toHaveLength(policyNames().length);
    for (const l of spark) expect(l).toMatch(/ {2}– → \d+$/);
    expect(r.out).toContain('  (–: no memory left for models after 1GiB headroom)');
    const svg = await fsp.readFile(chart, 'utf8');
    expect(svg).not.toMatch(new RegExp(`data-gpu-bytes="${GiB}"`));
    expect(svg).toContain('1GiB: no memory left for models after 1GiB headroom (not plotted)');
  });

  test('a headroom larger than every GPU size: every row says so, and so do the summary and the chart', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 2);
    const log = await readAccessLogs([file]);
    const plan = planCapacity(log, {
      gpuBytes: [GiB, 2 * GiB],
      headroomBytes: 2 * GiB,
      agent: { gpuBytes: GiB, policy: 'lru' },
    });
    expect(plan.rows.every((x) => x.noRoom && x.modelBytes === 0)).toBe(true);
    expect(plan.agent).toMatchObject({ noRoom: true, loggedHitRatio: 0.5 });
    expect(plan.agent?.replayedHitRatio).toBeUndefined();
    const text = formatPlan(plan, 'lru');
    expect(text).toContain(
      "at the agent's 1GiB with lru: no memory left for models after 2GiB headroom, no replay to compare",
    );
    expect(text[text.length - 1]).toBe('no size tried leaves memory for models after 2GiB headroom');
    expect(text.join('\n')).not.toMatch(/NaN|Infinity|0\.000/);
    const svg = renderChart(plan);
    expect(svg).not.toContain('class="point"');
    expect(svg).toContain('no GPU size tried leaves memory for models after 2GiB headroom');
  });
});

/** Attributes of every element of `tag` with class `cls` in an SVG, parsed. */
function elements(svg: string, cls: string): Record<string, string>[] {
  return [...svg.matchAll(new RegExp(`<(\\w+) [^>]*class="${cls}"[^>]*>`, 'g'))].map((m) =>
    Object.fromEntries([...m[0].matchAll(/([\w-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]])),
  );
}

/** Text of every element with class `cls`. */
const texts = (svg: string, cls: string) =>
  [...svg.matchAll(new RegExp(`class="${cls}"[^>]*>([^<]*)<`, 'g'))].map((m) => m[1]);

/** Every element opened is closed, in order (the chart is XML). */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)(\w+)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '') stack.push(m[2]);
    else if (stack.pop() !== m[2]) return false;
  }
  return stack.length === 0;
}

describe('4. the chart says what it plots and keeps every line visible (was: one red line, four legend entries)', () => {
  test('axis titles with units, lower is better, the logs and the request count', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25, 1500);
    const files = await rotatedSet(file);
    const plan = planCapacity(await readAccessLogs(files), {
      gpuBytes: [3 * GiB, 5 * GiB],
      headroomBytes: GiB,
    });
    const svg = renderChart(plan, { defaultPolicy: 'adaptive', logs: files });
    expect(balanced(svg)).toBe(true);
    expect(elements(svg, 'axis-title').map((a) => a['data-axis'])).toEqual(['x', 'y']);
    expect(texts(svg, 'axis-title')).toEqual([
      'GPU memory (GiB)',
      'cold-load seconds per hour (s/h), lower is better',
    ]);
    expect(texts(svg, 'source')).toEqual([
      `Replay of ${describeLogs(files)}: 100 requests for 4 models over 1.6 min`,
    ]);
    expect(describeLogs(files)).toBe(`access.log.${files.length - 1} … access.log (${files.length} files)`);
    expect(svg).toContain('Each GPU size less 1GiB headroom for activations. Lower is better.');
  });

  test('identical lines: each policy its own dash and marker, points spread 3 px apart, a note naming them', async () => {
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 25);
    // With room for all four models every policy loads each once: four identical lines.
    const plan = planCapacity(await readAccessLogs([file]), {
      gpuBytes: [4 * GiB, 5 * GiB],
      headroomBytes: 0,
    });
    const svg = renderChart(plan, { defaultPolicy: 'adaptive', logs: [file] });
    expect(balanced(svg)).toBe(true);
    const lines = elements(svg, 'policy');
    expect(lines.map((l) => l['data-policy'])).toEqual(policyNames());
    expect(new Set(lines.map((l) => l['stroke-dasharray'])).size).toBe(lines.length);
    expect(new Set(lines.map((l) => l.stroke)).size).toBe(lines.length);
    const points = elements(svg, 'point');
    expect(points).toHaveLength(2 * lines.length);
    // One value for all, drawn at distinct heights 3 px apart, with distinct marker shapes.
    expect(new Set(points.map((p) => p['data-value'])).size).toBe(1);
    const ys = lines.map((l) => Number(l.points.split(' ')[0].split(',')[1])).sort((a, b) => a - b);
    expect(ys.slice(1).map((y, i) => +(y - ys[i]).toFixed(1))).toEqual([3, 3, 3]);
    expect(new Set(points.map((p) => `${p['data-policy']}:${p['data-marker']}`)).size).toBe(lines.length);
    expect(new Set(points.map((p) => p['data-marker'])).size).toBe(lines.length);
    expect(texts(svg, 'note')).toEqual([
      'Where lines coincide they are drawn 3 px apart (the tooltips keep the values):',
      `  ${policyNames().join(', ')}: the same value at every size`,
    ]);
    // The legend: every policy, with its dash, the agent's marked.
    const legend = elements(svg, 'legend');
    expect(legend.map((l) => [l['data-policy'], l['stroke-dasharray']])).toEqual(
      lines.map((l) => [l['data-policy'], l['stroke-dasharray']]),
    );
    expect(svg).toContain('>adaptive (default)</text>');
    // ... and says, beside each line hidden under the first, whose line it is.
    expect(elements(svg, 'legend-note').map((a) => a['data-policy'])).toEqual(policyNames().slice(1));
    expect(new Set(texts(svg, 'legend-note'))).toEqual(new Set([`same line as ${policyNames()[0]}`]));
  });

  test('file names in the chart are names only, control characters escaped', () => {
    expect(describeLogs(['/var/log/agent/access.log'])).toBe('access.log');
    expect(describeLogs(['/tmp/a\nb.log', 'c.log'])).toBe('a\\nb.log, c.log');
  });
});

describe('5. every policy label printed is explained, in the output and in docs/planner.md', () => {
  test('every registered policy has a one-line description; the output prints a key with each', async () => {
    for (const p of policyNames()) expect(POLICY_DESCRIPTIONS[p]).toMatch(/^[^\n]{20,120}$/);
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 2);
    const r = await run([
      '--log',
      file,
      '--gpu',
      '4GiB',
      '--headroom',
      '0',
      '--chart',
      path.join(dir, 'c.svg'),
    ]);
    const key = r.out.slice(
      r.out.indexOf('policies:') + 1,
      r.out.indexOf('policies:') + 2 + policyNames().length,
    );
    expect(key).toEqual([
      ...policyNames().map((p) => `  ${p.padEnd(9)}  ${POLICY_DESCRIPTIONS[p]}`),
      '  (default)  the policy the agent runs (AGENT_EVICTION_POLICY)',
    ]);
  });

  test('docs/planner.md has a line for every label: the policies, (default), and the names of the adaptive policy’s experts', () => {
    const docs = squash(fs.readFileSync(DOCS, 'utf8'));
    for (const p of policyNames()) expect(docs).toContain(`\`${p}\`: ${POLICY_DESCRIPTIONS[p]}`);
    expect(docs).toContain('`(default)`');
    // What the agent's sagemaker_eviction_policy_leader metric names (gdsf-aged(1000), …).
    for (const expert of defaultExperts({ churnGuard: 0 })().map((e) => e.name))
      expect(docs).toContain(`\`${expert}\``);
  });
});

describe('docs/planner.md matches the command', () => {
  const docs = fs.readFileSync(DOCS, 'utf8');

  test('the documented command is the simple form, and never names a rotated file', () => {
    expect(docs).toContain('npm run plan -- --log access.log --gpu 24GiB,48GiB,80GiB');
    expect(docs).not.toMatch(/--log \S+\.\d/);
  });

  test('the hit ratio definition and the table header are the ones the command prints', async () => {
    expect(squash(docs)).toContain(HIT_DEFINITION);
    const file = path.join(dir, 'access.log');
    await writeRoundRobinLog(file, 2);
    // Sizes of two digits, the agent's policy marked: the widths of the docs' example.
    const plan = planCapacity(await readAccessLogs([file]), { gpuBytes: [24 * GiB], headroomBytes: 0 });
    const header = formatPlan(plan, 'adaptive').find((l) => l.startsWith('GPU '));
    expect(docs.split('\n')).toContain(header);
  });
});
