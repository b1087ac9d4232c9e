import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, type AgentConfig } from '../config';
import { policyNames } from '../models/eviction';
import { describeSkipped, readAccessLogs } from './access-log-reader';
import { formatByteSize, parseByteSize } from './byte-size';
import { planCapacity, type CapacityPlan } from './capacity-plan';
import { renderChart, sparkline } from './chart';
import { shown } from './shown';

export const PLAN_USAGE = `usage: plan --log FILE [--log FILE.1 …] --gpu 24GiB,48GiB,80GiB [options]

Replays an access log (AGENT_ACCESS_LOG_FILE) through every eviction policy at each GPU memory size and
prints hit ratio, cold loads and cold-load seconds per hour, and the latency requests would have waited
for loads (p50, p99); writes an SVG chart of cold-load seconds against GPU memory.

  --log FILE          an access log file or pipe; repeat for rotated files (FILE.1, FILE.2, …)
  --gpu SIZES         GPU memory sizes, comma-separated (TiB, GiB, GB, MiB, MB or bytes; at most 64)
  --headroom SIZE     GPU memory kept free for activations (default: AGENT_GPU_HEADROOM_BYTES or 1GiB)
  --policies LIST     policies to compare (default: all)
  --chart FILE        where to write the SVG chart (default: capacity-plan.svg)

Lines that are not access log records (not JSON objects, missing fields, numbers that are not finite,
negative or absurd, timestamps before 2000, ahead of now or far from the rest of the log, lines over
1 MiB) are skipped and counted; the count is printed last.`;

/** A usage mistake: the command line prints its one-line message and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

function list(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

const pad = (cells: string[], widths: number[]) =>
  cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');

/** The plan as a text table, a sparkline per policy and the size from which the working set fits. */
export function formatPlan(plan: CapacityPlan, defaultPolicy: string): string[] {
  const header = [
    'GPU',
    'policy',
    'hit ratio',
    'cold loads/h',
    'cold-load s/h',
    'p50 added ms',
    'p99 added ms',
  ];
  const body = plan.rows.map((r) => [
    formatByteSize(r.gpuBytes),
    r.policy === defaultPolicy ? `${r.policy} (default)` : r.policy,
    r.hitRatio.toFixed(3),
    r.coldLoadsPerHour.toFixed(1),
    r.coldLoadSecondsPerHour.toFixed(1),
    r.p50AddedMs.toFixed(0),
    r.p99AddedMs.toFixed(0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const out = [
    `${plan.requests} requests for ${plan.models} models over ${plan.hours.toFixed(2)} h; the agent's own hit ratio in the log: ${plan.observedHitRatio.toFixed(3)}${plan.observedWait ? `, waits p50 ${plan.observedWait.p50.toFixed(0)} ms, p99 ${plan.observedWait.p99.toFixed(0)} ms` : ''}`,
    '',
    pad(header, widths),
    pad(
      widths.map((w) => '-'.repeat(w)),
      widths,
    ),
    ...body.map((b) => pad(b, widths)),
  ];
  const sizes = [...new Set(plan.rows.map((r) => r.gpuBytes))];
  const all = plan.rows.map((r) => r.coldLoadSecondsPerHour);
  const policies = [...new Set(plan.rows.map((r) => r.policy))];
  const nameWidth = Math.max(...policies.map((p) => p.length));
  out.push('', `cold-load seconds per hour, ${sizes.map(formatByteSize).join(' → ')}:`);
  for (const p of policies) {
    const values = sizes.map(
      (s) => plan.rows.find((r) => r.policy === p && r.gpuBytes === s)?.coldLoadSecondsPerHour ?? NaN,
    );
    out.push(
      `  ${p.padEnd(nameWidth)}  ${sparkline(values, Math.min(...all), Math.max(...all))}  ${values.map((v) => v.toFixed(0)).join(' → ')}`,
    );
  }
  // The working set fits where a policy loads each model once (its first request) and never again.
  const fits = plan.rows.filter((r) => r.policy === defaultPolicy && r.coldLoads === plan.models);
  out.push(
    '',
    fits.length > 0
      ? `every model stays resident after its first load from ${formatByteSize(Math.min(...fits.map((r) => r.gpuBytes)))} (${defaultPolicy})`
      : `the working set does not fit in any size tried: models are evicted and loaded again at every size`,
  );
  return out;
}

/** Most GPU sizes one plan compares (each is a replay per policy). */
export const MAX_GPU_SIZES = 64;

/** The agent settings the plan uses, from the environment; a bad one is one line naming it. */
function agentSettings(): AgentConfig {
  try {
    return loadConfig({
      TRITON_MODEL_REPOSITORY: '/models',
      AGENT_GPU_HEADROOM_BYTES: process.env.AGENT_GPU_HEADROOM_BYTES,
      AGENT_CHURN_GUARD_MS: process.env.AGENT_CHURN_GUARD_MS,
      AGENT_EVICTION_POLICY: process.env.AGENT_EVICTION_POLICY,
    });
  } catch (err) {
    const [head, ...problems] = (err as Error).message.split('\n').map((l) => l.replace(/^\s*-\s*/, ''));
    throw new UsageError(problems.length > 0 ? `${head} ${problems.join('; ')}` : head);
  }
}

interface PlanCommandOptions {
  help: boolean;
  logs: string[];
  gpuBytes: number[];
  headroomBytes: number | undefined;
  policies: string[] | undefined;
  chart?: string;
}

/** Each option parsed strictly: every mistake is a UsageError naming the option and its value. */
function parseOptions(argv: string[]): PlanCommandOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        log: { type: 'string', multiple: true },
        gpu: { type: 'string' },
        headroom: { type: 'string' },
        policies: { type: 'string' },
        chart: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help)
    return { help: true, logs: [], gpuBytes: [], headroomBytes: undefined, policies: undefined };
  const sized = (option: string, text: string, allowZero = false): number => {
    try {
      return parseByteSize(text, { allowZero });
    } catch (err) {
      throw new UsageError(`${option}: ${(err as Error).message}`);
    }
  };
  const logs = values.log ?? [];
  if (logs.length === 0) throw new UsageError('--log FILE is required');
  for (const l of logs) if (l === '') throw new UsageError('--log names an empty file name');
  const gpuList = list(values.gpu);
  if (gpuList.length === 0) throw new UsageError('--gpu SIZES is required (e.g. --gpu 24GiB,48GiB,80GiB)');
  if (gpuList.length > MAX_GPU_SIZES)
    throw new UsageError(
      `--gpu names ${gpuList.length} sizes; at most ${MAX_GPU_SIZES} can be compared at once`,
    );
  const gpuBytes = [...new Set(gpuList.map((g) => sized('--gpu', g)))].sort((a, b) => a - b);
  const headroomBytes =
    values.headroom === undefined ? undefined : sized('--headroom', values.headroom, true);
  let policies: string[] | undefined;
  if (values.policies !== undefined) {
    policies = [...new Set(list(values.policies))];
    if (policies.length === 0) throw new UsageError(`--policies ${shown(values.policies)} names no policy`);
    const unknown = policies.filter((p) => !policyNames().includes(p));
    if (unknown.length > 0)
      throw new UsageError(
        `--policies: unknown eviction policy ${unknown.map(shown).join(', ')} (known: ${policyNames().join(', ')})`,
      );
  }
  if (values.chart === '') throw new UsageError('--chart names an empty file name');
  return { help: false, logs, gpuBytes, headroomBytes, policies, chart: values.chart };
}

/** `plan`: reads the log, replays it, prints the table and sparklines, writes the chart. Returns an exit status. */
export async function runPlanCommand(argv: string[], print: (line: string) => void): Promise<number> {
  const options = parseOptions(argv);
  if (options.help) {
    print(PLAN_USAGE);
    return 0;
  }
  // The agent's own defaults (and its environment's headroom and churn guard, when set).
  const settings = agentSettings();
  const chartFile = path.resolve(options.chart ?? 'capacity-plan.svg');
  const log = await readAccessLogs(options.logs);
  const plan = planCapacity(log, {
    gpuBytes: options.gpuBytes,
    headroomBytes: options.headroomBytes ?? settings.gpuHeadroomBytes,
    policies: options.policies,
    churnGuardMs: settings.churnGuardMs,
  });
  for (const line of formatPlan(plan, settings.evictionPolicy)) print(line);
  if (log.estimatedModels.length > 0)
    print(
      `estimated footprint or load time for ${log.estimatedModels.length} models the log gave no numbers for`,
    );
  await fsp.writeFile(chartFile, renderChart(plan.rows, { defaultPolicy: settings.evictionPolicy }));
  print(`chart: ${chartFile}`);
  const skipped = describeSkipped(log);
  if (skipped) print(skipped);
  return 0;
}
