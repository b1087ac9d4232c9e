import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, type AgentConfig } from '../config';
import { policyNames } from '../models/eviction';
import { describeSkipped, readAccessLogs } from './access-log-reader';
import { formatByteSize, parseByteSize } from './byte-size';
import { HIT_DEFINITION, planCapacity, type CapacityPlan } from './capacity-plan';
import { renderChart, sparkline } from './chart';
import { describePolicy } from './policy-labels';
import { expandLogs } from './rotated-logs';
import { shown } from '../errors';

export const PLAN_USAGE = `usage: plan --log FILE --gpu 24GiB,48GiB,80GiB [options]

Replays an access log (AGENT_ACCESS_LOG_FILE) through every eviction policy at each GPU memory size and
prints hit ratio, cold loads and cold-load seconds per hour, and the latency requests would have waited
for loads (p50, p99); writes an SVG chart of cold-load seconds against GPU memory.

  --log FILE          an access log file or pipe; its rotated files beside it (FILE.1, FILE.2, …) are read
                      too, oldest first; repeat for logs kept elsewhere
  --gpu SIZES         GPU memory sizes, comma-separated (TiB, GiB, GB, MiB, MB or bytes; at most 64)
  --headroom SIZE     GPU memory kept free for activations (default: AGENT_GPU_HEADROOM_BYTES or 1GiB)
  --agent-gpu SIZE    the GPU memory of the agent that wrote the log: sets the log's own hit ratio beside
                      the replay's at that size, with the agent's policy (AGENT_EVICTION_POLICY)
  --policies LIST     policies to compare (default: all)
  --chart FILE        where to write the SVG chart (default: capacity-plan.svg)

Hit ratio, in the log and in the replay: ${HIT_DEFINITION.replace('; ', ';\n')}.
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

/** A table row: names left-aligned, numbers right-aligned; a short row's last cell (a message) left. */
const pad = (cells: string[], widths: number[]) =>
  cells
    .map((c, i) => (i < 2 || cells.length < widths.length ? c.padEnd(widths[i]) : c.padStart(widths[i])))
    .join('  ')
    .trimEnd();

/** "no memory left for models after 1GiB headroom": what a row the headroom takes whole says instead of numbers. */
export function noRoomMessage(headroomBytes: number): string {
  return `no memory left for models after ${formatByteSize(headroomBytes)} headroom`;
}

export interface FormatOptions {
  /** The files read, oldest first, listed first. */
  logs?: string[];
}

/** How the log's own hit ratio compares with the replay's at the agent's GPU size. */
function agentLine(plan: CapacityPlan): string {
  const a = plan.agent;
  if (!a) return '  (--agent-gpu SIZE, the GPU memory the agent had, sets it beside the replay at that size)';
  const at = `at the agent's ${formatByteSize(a.gpuBytes)} with ${a.policy}`;
  if (a.replayedHitRatio === undefined)
    return `${at}: ${noRoomMessage(plan.headroomBytes)}, no replay to compare`;
  const logged = a.loggedHitRatio.toFixed(3);
  const replayed = a.replayedHitRatio.toFixed(3);
  if (logged === replayed) return `${at}: hit ratio ${logged} in the log and in the replay`;
  return `${at}: hit ratio ${logged} in the log, ${replayed} in the replay (which starts with an empty GPU and loads each model in its median logged time)`;
}

/**
 * The plan as text: what was read, the hit ratio's definition and the log's own figure, the table (a
 * size the headroom takes whole says so instead of numbers), a sparkline per policy, what each policy
 * label means, and the size from which the working set fits.
 */
export function formatPlan(plan: CapacityPlan, defaultPolicy: string, options: FormatOptions = {}): string[] {
  const header = [
    'GPU',
    'policy',
    'hit ratio',
    'cold loads/h',
    'cold-load s/h',
    'p50 added ms',
    'p99 added ms',
  ];
  const label = (p: string) => (p === defaultPolicy ? `${p} (default)` : p);
  const body = plan.rows.map((r) =>
    r.noRoom
      ? [formatByteSize(r.gpuBytes), label(r.policy), noRoomMessage(plan.headroomBytes)]
      : [
          formatByteSize(r.gpuBytes),
          label(r.policy),
          r.hitRatio.toFixed(3),
          r.coldLoadsPerHour.toFixed(1),
          r.coldLoadSecondsPerHour.toFixed(1),
          r.p50AddedMs.toFixed(0),
          r.p99AddedMs.toFixed(0),
        ],
  );
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.filter((b) => b.length === header.length || i < 2).map((b) => b[i].length)),
  );
  const out: string[] = [];
  if (options.logs && options.logs.length > 0)
    out.push(
      `${options.logs.length === 1 ? 'log read' : `${options.logs.length} logs read, oldest first`}: ${options.logs.map((f) => shown(f).slice(1, -1)).join(', ')}`,
    );
  out.push(
    `${plan.requests} requests for ${plan.models} models over ${plan.hours.toFixed(2)} h`,
    `hit ratio: ${HIT_DEFINITION}`,
    `in the log, as the agent served it: hit ratio ${plan.observedHitRatio.toFixed(3)}${plan.observedWait ? `, waits p50 ${plan.observedWait.p50.toFixed(0)} ms, p99 ${plan.observedWait.p99.toFixed(0)} ms` : ''}`,
    agentLine(plan),
    '',
    pad(header, widths),
    pad(
      widths.map((w) => '-'.repeat(w)),
      widths,
    ),
    ...body.map((b) => pad(b, widths)),
  );
  const sizes = [...new Set(plan.rows.map((r) => r.gpuBytes))];
  const replayed = plan.rows.filter((r) => !r.noRoom).map((r) => r.coldLoadSecondsPerHour);
  const policies = [...new Set(plan.rows.map((r) => r.policy))];
  const nameWidth = Math.max(...policies.map((p) => p.length));
  out.push('', `cold-load seconds per hour (lower is better), ${sizes.map(formatByteSize).join(' → ')}:`);
  for (const p of policies) {
    const values = sizes.map((s) => {
      const r = plan.rows.find((row) => row.policy === p && row.gpuBytes === s);
      return r && !r.noRoom ? r.coldLoadSecondsPerHour : NaN;
    });
    out.push(
      `  ${p.padEnd(nameWidth)}  ${sparkline(values, Math.min(...replayed), Math.max(...replayed))}  ${values.map((v) => (Number.isFinite(v) ? v.toFixed(0) : '–')).join(' → ')}`,
    );
  }
  if (sizes.some((s) => plan.rows.some((r) => r.gpuBytes === s && r.noRoom)))
    out.push(`  (–: ${noRoomMessage(plan.headroomBytes)})`);
  const keyWidth = Math.max(nameWidth, '(default)'.length);
  out.push(
    '',
    'policies:',
    ...policies.map((p) => `  ${p.padEnd(keyWidth)}  ${describePolicy(p)}`),
    ...(policies.includes(defaultPolicy)
      ? [`  ${'(default)'.padEnd(keyWidth)}  the policy the agent runs (AGENT_EVICTION_POLICY)`]
      : []),
  );
  // The working set fits where a policy loads each model once (its first request) and never again.
  const which = policies.includes(defaultPolicy) ? defaultPolicy : policies[0];
  const fits = plan.rows.filter((r) => r.policy === which && !r.noRoom && r.coldLoads === plan.models);
  out.push(
    '',
    replayed.length === 0
      ? `no size tried leaves memory for models after ${formatByteSize(plan.headroomBytes)} headroom`
      : fits.length > 0
        ? `every model stays resident after its first load from ${formatByteSize(Math.min(...fits.map((r) => r.gpuBytes)))} (${which})`
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
  agentGpuBytes?: number;
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
        'agent-gpu': { type: 'string' },
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
  const agentGpu = values['agent-gpu'];
  const agentGpuBytes = agentGpu === undefined ? undefined : sized('--agent-gpu', agentGpu);
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
  return {
    help: false,
    logs,
    gpuBytes,
    headroomBytes,
    ...(agentGpuBytes !== undefined ? { agentGpuBytes } : {}),
    policies,
    chart: values.chart,
  };
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
  if (options.agentGpuBytes !== undefined && settings.evictionPolicy === 'none')
    throw new UsageError('--agent-gpu: AGENT_EVICTION_POLICY is none, so there is no agent policy to replay');
  const files = await expandLogs(options.logs);
  const log = await readAccessLogs(files);
  const plan = planCapacity(log, {
    gpuBytes: options.gpuBytes,
    headroomBytes: options.headroomBytes ?? settings.gpuHeadroomBytes,
    policies: options.policies,
    churnGuardMs: settings.churnGuardMs,
    ...(options.agentGpuBytes !== undefined
      ? { agent: { gpuBytes: options.agentGpuBytes, policy: settings.evictionPolicy } }
      : {}),
  });
  for (const line of formatPlan(plan, settings.evictionPolicy, { logs: files })) print(line);
  if (log.estimatedModels.length > 0)
    print(
      `estimated footprint or load time for ${log.estimatedModels.length} models the log gave no numbers for`,
    );
  await fsp.writeFile(chartFile, renderChart(plan, { defaultPolicy: settings.evictionPolicy, logs: files }));
  print(`chart: ${chartFile}`);
  const skipped = describeSkipped(log);
  if (skipped) print(skipped);
  return 0;
}
