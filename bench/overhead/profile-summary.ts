/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) by self time: per area (our src/ folders, each package,
 * Node's internals, GC) and per function. Also runnable: `tsx bench/overhead/profile-summary.ts FILE`.
 */
import * as fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** Self time by function (top 25) and by area, from a V8 .cpuprofile. */
export function summariseProfile(
  profile: {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  },
  requests?: number,
): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Start-up (the main module's first run: loading and compiling every module) is not per-request work.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const startup = new Set<number>();
  for (const n of profile.nodes) {
    for (let cur: number | undefined = n.id; cur !== undefined; cur = parent.get(cur)) {
      if (byId.get(cur)?.callFrame.url.includes('run_main')) {
        startup.add(n.id);
        break;
      }
    }
  }
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    if (startup.has(profile.samples[i])) continue;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  let total = 0;
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const { functionName, url, lineNumber } = n.callFrame;
    const file = url.replace(/^file:\/\//, '');
    const short = file.includes('node_modules/')
      ? file.slice(file.lastIndexOf('node_modules/') + 13)
      : file.includes('/src/')
        ? file.slice(file.lastIndexOf('/src/') + 1)
        : file || '(native)';
    const key = `${functionName || '(anonymous)'} ${short}${file ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const area =
      functionName === '(idle)'
        ? 'idle'
        : functionName === '(garbage collector)'
          ? 'garbage collector'
          : functionName === '(program)'
            ? 'program (native, unattributed)'
            : short.startsWith('src/')
              ? short.split('/').slice(0, 2).join('/')
              : file.includes('node_modules/')
                ? short.split('/')[0].startsWith('@')
                  ? short.split('/').slice(0, 2).join('/')
                  : short.split('/')[0]
                : file.startsWith('node:')
                  ? file.split('/')[0].replace(/^node:internal\//, 'node:')
                  : 'other';
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const busy = total - (byArea.get('idle') ?? 0);
  const pct = (us: number) =>
    `${((100 * us) / busy).toFixed(1).padStart(5)}%${requests ? `  ${(us / requests).toFixed(1).padStart(6)} µs/req` : ''}`;
  const lines = [
    `busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms sampled (start-up left out)${requests ? `: ${(busy / requests).toFixed(0)} µs per request` : ''}`,
    '',
    'by area (self time, % of busy):',
  ];
  for (const [k, v] of [...byArea]
    .filter(([k]) => k !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 14))
    lines.push(`  ${pct(v)}  ${k}`);
  lines.push('', 'by function (self time, % of busy):');
  for (const [k, v] of [...byFunction]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25))
    lines.push(`  ${pct(v)}  ${k}`);
  return lines.join('\n');
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: profile-summary.ts FILE.cpuprofile');
  console.log(
    summariseProfile(JSON.parse(fs.readFileSync(file, 'utf8')) as Parameters<typeof summariseProfile>[0]),
  );
}
