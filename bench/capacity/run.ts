/**
 * bench/capacity: how close the agent's measured capacity comes to an oracle that knows every footprint.
 *
 * 200 PyTorch models whose GPU footprint is 0.8 to 3 × their file's size (so the agent's first guess,
 * 1.25 × the file, is off both ways), which grow by a quarter at their first inference, on the emulator at
 * its defaults (a CUDA context per GPU, whole-MiB figures, occasional failed reads, no memory_usage for
 * PyTorch). Zipf 1.0 traffic, Poisson arrivals, open loop, through the SageMaker Runtime route with lazy
 * loading. Each cell runs twice on the same trace: the agent at its defaults learning every footprint from
 * the samples, and the oracle — the same agent told each model's true footprint in its config.
 *
 * Printed per cell: mean resident bytes as a share of the oracle's (goal ≥ 0.95), requests failed and 507s
 * (goal 0), Triton out-of-memory events per 1,000 loads, and seconds from a model's first load until its
 * estimate is within 5 % of what it really holds (median and 90th percentile over the models measured).
 *
 *   npm run bench:capacity                    10 and 100 req/s, one and four GPUs, 60 s per run
 *   npm run bench:capacity -- --quick         30 s per run
 *   npm run bench:capacity -- --rps 10 --gpus 1
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Agent } from '../../src/agent';
import { tritonNameFor } from '../../src/artifacts';
import { loadConfig } from '../../src/config';
import { createLogger, silentLogger } from '../../src/observability';
import { identityConfig } from '../../test/support/model-repo';
import { startEmulatedTriton } from '../support/emulated-triton';
import { benchFlags, numberFlag, numberListFlag } from '../support/flags';

const CMD = 'bench:capacity';
const flags = benchFlags(CMD, {
  quick: { type: 'boolean', help: '30 s per run' },
  seconds: { type: 'string', default: '', help: 'seconds per run (default 60, 30 with --quick)' },
  rps: { type: 'string', default: '10,100', help: 'request rates, comma-separated' },
  gpus: { type: 'string', default: '1,4', help: 'GPU counts, comma-separated' },
  only: { type: 'string', default: '', help: "one side of each cell: 'oracle' or 'agent'" },
  log: { type: 'boolean', help: "the agent's warnings on stderr" },
});
const SECONDS = numberFlag(CMD, 'seconds', flags.seconds || (flags.quick ? '30' : '60'), 1);
const RATES = numberListFlag(CMD, 'rps', flags.rps, 0.001);
const GPU_COUNTS = numberListFlag(CMD, 'gpus', flags.gpus, 1);
/** `--only oracle` or `--only agent`: one side of each cell. */
const ONLY = flags.only || undefined;
if (ONLY !== undefined && ONLY !== 'oracle' && ONLY !== 'agent') {
  process.stderr.write(`${CMD}: --only must be 'oracle' or 'agent', got '${ONLY}'\n`);
  process.exit(2);
}

const MODELS = 200;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const GPU_BYTES = 16 * GiB;
/** Triton's metrics interval as the image runs it (serve: 500 ms) and the agent's margin over it. */
const TRITON_METRICS_MS = 500;
const AGENT_METRICS_MS = 750;
/** One instance's load time grows with size, as real engines' do. */
const LOAD_MS_PER_GIB = 100;
/** PyTorch grows by this share of its load bytes at its first inference (the emulator's default). */
const GROWTH = 0.25;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface ModelSpec {
  fileBytes: number;
  factor: number;
  /** What it holds once it has run a request: load bytes and growth. */
  trueBytes: number;
}

const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)} %`;

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** Writes the models as directories under `dir` (sparse weight files: sizes without the disk use). */
async function writeModels(dir: string, specs: ModelSpec[], oracle: boolean): Promise<void> {
  for (const [i, m] of specs.entries()) {
    const loadBytes = Math.round(m.fileBytes * m.factor);
    const params = [
      `parameters { key: "emulator_memory_factor" value { string_value: "${m.factor}" } }`,
      `parameters { key: "emulator_load_ms" value { string_value: "${Math.round((loadBytes / GiB) * LOAD_MS_PER_GIB)}" } }`,
      // The oracle is told what each model really takes; the agent under test is told nothing.
      oracle ? `parameters { key: "gpu_memory_bytes" value { string_value: "${m.trueBytes}" } }` : '',
    ].join('\n');
    const config = identityConfig(`m${i}`, [{ type: 'TYPE_INT32', dims: [1] }], 0, params).replace(
      'backend: "python"',
      'backend: "pytorch"',
    );
    const modelDir = path.join(dir, `m${i}`, `m${i}`);
    await fs.mkdir(path.join(modelDir, '1'), { recursive: true });
    await fs.writeFile(path.join(modelDir, 'config.pbtxt'), config);
    const file = path.join(modelDir, '1', 'model.pt');
    await fs.writeFile(file, '');
    await fs.truncate(file, m.fileBytes);
  }
}

async function run(
  gpus: number,
  rps: number,
  oracle: boolean,
  specs: ModelSpec[],
  arrivals: { at: number; model: number }[],
) {
  const side = await startEmulatedTriton('capacity-', {
    gpuCount: gpus,
    gpuMemoryBytes: GPU_BYTES,
    metricsIntervalMs: TRITON_METRICS_MS,
  });
  const { emulator, repository, models } = side;
  await writeModels(models, specs, oracle);
  const nvidiaSmi = await emulator.writeNvidiaSmi(path.dirname(models));
  const agent = new Agent(
    loadConfig({
      SAGEMAKER_BIND_TO_PORT: '0',
      AGENT_BIND_HOST: '127.0.0.1',
      TRITON_GRPC_URL: emulator.grpcAddress,
      TRITON_METRICS_URL: emulator.metricsUrl,
      TRITON_MODEL_REPOSITORY: repository,
      MODEL_DATA_URL: `file://${models}/`,
      AGENT_METRICS_INTERVAL_MS: String(AGENT_METRICS_MS),
      AGENT_NVIDIA_SMI: nvidiaSmi,
    }),
    flags.log ? createLogger('warn', false, process.stderr) : silentLogger(),
  );
  await agent.start();

  const residentBytes: number[] = [];
  const firstLoadAt = new Map<number, number>();
  /** (charge / true bytes − 1) of resident, grown models, at every sample. */
  const chargeErrors: number[] = [];
  const convergedAt = new Map<number, number>();
  const started = performance.now();
  const sampler = setInterval(() => {
    const now = performance.now() - started;
    let bytes = 0;
    for (const name of emulator.loadedModels()) bytes += emulator.placement(name).reduce((a, b) => a + b, 0);
    residentBytes.push(bytes);
    const estimator = agent.registry.footprints?.estimator;
    const errors: number[] = [];
    for (let i = 0; i < specs.length; i++) {
      const held = Math.max(...emulator.placement(tritonNameFor(`m${i}`)));
      if (held <= 0) continue;
      const record = agent.registry.get(`m${i}`) as { footprintKey?: string; state?: string } | undefined;
      const key = record?.footprintKey;
      const belief = key ? estimator?.belief(key) : undefined;
      // Charges of resident models against what they really hold, once grown (their first request done).
      if (belief && record?.state === 'ready' && held >= specs[i].trueBytes * 0.99)
        errors.push((agent.registry.ledger?.chargeOf(`m${i}`) ?? 0) / held - 1);
      if (convergedAt.has(i)) continue;
      if (!firstLoadAt.has(i)) firstLoadAt.set(i, now);
      if (belief && Math.abs(belief.bytes - held) <= 0.05 * held) convergedAt.set(i, now);
    }
    if (errors.length > 0) chargeErrors.push(...errors);
  }, 250);

  let failed = 0;
  let insufficient = 0;
  const statuses = new Map<string, number>();
  const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] });
  const invoke = async (model: number) => {
    const res = await fetch(`${agent.url}/endpoints/bench/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Amzn-SageMaker-Target-Model': `m${model}` },
      body,
    }).catch(
      (err: unknown) => `no answer (${(err as { cause?: { code?: string } }).cause?.code ?? String(err)})`,
    );
    let status = typeof res === 'string' ? res : String(res.status);
    if (typeof res !== 'string') {
      const text = await res.text();
      // SageMaker Runtime wraps the container's own status (507) in a 424 ModelError.
      if (res.status === 424) {
        const original = (JSON.parse(text) as { OriginalStatusCode?: number }).OriginalStatusCode;
        if (original !== undefined) status = String(original);
      }
    }
    if (status !== '200') {
      failed++;
      if (status === '507') insufficient++;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (const a of arrivals) {
    const wait = t0 + a.at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    inflight.push(invoke(a.model));
  }
  await Promise.all(inflight);
  clearInterval(sampler);

  let loads = 0;
  let oomLoads = 0;
  let oomRequests = 0;
  for (let i = 0; i < specs.length; i++) {
    const c = emulator.counters(tritonNameFor(`m${i}`));
    loads += c.loads;
    oomLoads += c.loadFailures;
    oomRequests += c.inferFailures;
  }
  const converge = [...convergedAt].map(([i, at]) => (at - (firstLoadAt.get(i) ?? at)) / 1000);
  const result = {
    gpus,
    rps,
    oracle,
    requests: arrivals.length,
    residentMeanBytes: residentBytes.reduce((a, b) => a + b, 0) / Math.max(1, residentBytes.length),
    failed,
    insufficient,
    statuses: [...statuses].map(([k, n]) => `${n}× ${k}`).join(', '),
    loads,
    oomPerThousandLoads: (1000 * (oomLoads + oomRequests)) / Math.max(1, loads),
    oomLoads,
    oomRequests,
    chargeUnder: quantile(chargeErrors, 0.1),
    chargeMedian: quantile(chargeErrors, 0.5),
    chargeOver: quantile(chargeErrors, 0.9),
    convergeP50: quantile(converge, 0.5),
    convergeP90: quantile(converge, 0.9),
    converged: convergedAt.size,
    measuredModels: firstLoadAt.size,
    overCapacity: emulator.gpus.some((g) => g.peakBytes() > g.totalBytes),
  };
  await agent.stop(100);
  await side.stop();
  return result;
}

async function main(): Promise<void> {
  const r = rng(7);
  // Files of 64 MiB to 1 GiB (log-uniform); footprints 0.8 to 3 × the file; growth a quarter on top.
  const specs: ModelSpec[] = Array.from({ length: MODELS }, () => {
    const fileBytes = Math.round((64 * 16 ** r() * MiB) / MiB) * MiB;
    const factor = Math.round((0.8 + 2.2 * r()) * 100) / 100;
    const load = Math.round(fileBytes * factor);
    return { fileBytes, factor, trueBytes: load + Math.ceil(load * GROWTH) };
  });
  const cdf: number[] = [];
  let sum = 0;
  for (let k = 0; k < MODELS; k++) cdf.push((sum += 1 / (k + 1)));
  const rank = Array.from({ length: MODELS }, (_, i) => i).sort(() => r() - 0.5);
  const trace = (rps: number) => {
    const arrivals: { at: number; model: number }[] = [];
    const tr = rng(rps * 31);
    for (let t = 0; ;) {
      t += (-Math.log(1 - tr()) / rps) * 1000;
      if (t >= SECONDS * 1000) break;
      const x = tr() * sum;
      let k = 0;
      while (cdf[k] < x) k++;
      arrivals.push({ at: t, model: rank[k] });
    }
    return arrivals;
  };
  const rows: string[] = [];
  for (const gpus of GPU_COUNTS)
    for (const rps of RATES) {
      const arrivals = trace(rps);
      const oracle = ONLY === 'agent' ? undefined : await run(gpus, rps, true, specs, arrivals);
      console.error(`${gpus} GPU(s), ${rps} req/s: oracle done`);
      const agent = ONLY === 'oracle' ? oracle : await run(gpus, rps, false, specs, arrivals);
      if (!agent || !oracle) {
        console.log(JSON.stringify(agent ?? oracle));
        continue;
      }
      console.error(`${gpus} GPU(s), ${rps} req/s: agent done`);
      rows.push(
        `| ${gpus} × 16 GiB | ${rps} | ${arrivals.length} | ${(agent.residentMeanBytes / GiB).toFixed(1)} / ${(oracle.residentMeanBytes / GiB).toFixed(1)} | **${(agent.residentMeanBytes / oracle.residentMeanBytes).toFixed(3)}** | ${agent.failed}${agent.statuses ? ` (${agent.statuses})` : ''} / ${oracle.failed} | ${agent.insufficient} / ${oracle.insufficient} | ${agent.oomPerThousandLoads.toFixed(1)} (${agent.oomLoads} loads, ${agent.oomRequests} requests in ${agent.loads} loads) / ${oracle.oomPerThousandLoads.toFixed(1)} | ${agent.convergeP50.toFixed(1)} / ${agent.convergeP90.toFixed(1)} (${agent.converged} of ${agent.measuredModels}) | ${pct(agent.chargeUnder)} / ${pct(agent.chargeMedian)} / ${pct(agent.chargeOver)} | ${agent.overCapacity || oracle.overCapacity ? 'OVER' : 'no'} |`,
      );
    }
  console.log(
    `\n${MODELS} PyTorch models (footprint 0.8–3 × file, +${GROWTH * 100} % at the first inference), Zipf 1.0, Poisson arrivals for ${SECONDS} s, the emulator and the agent at their defaults; agent / oracle (told every true footprint)\n`,
  );
  console.log(
    '| GPUs | req/s | requests | resident GiB, mean (agent / oracle) | share of oracle | failed (agent / oracle) | 507s | Triton OOM per 1,000 loads | s to converge within 5 %, p50 / p90 (models) | charge vs truth, p10 / p50 / p90 | over capacity |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const row of rows) console.log(row);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
