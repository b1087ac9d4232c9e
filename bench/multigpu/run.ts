/**
 * bench/multigpu: an emulated 4 × 16 GiB instance, 400 models of 0.5–3 GiB, Zipf 1.0 traffic arriving at a
 * steady rate (Poisson, open loop: clients do not slow down when the endpoint does), the agent at its
 * default settings but for the placement under test. For each placement: models resident, the Triton load
 * seconds the traffic cost (cold-load seconds) over the whole run and over its second half (steady state,
 * after each model's unavoidable first load), the hit ratio, latency, the most GPUs the hottest model was
 * on, and the most any device was ever asked to hold.
 *
 *   npm run bench:multigpu                           10 requests/s for 120 s per placement, PyTorch models
 *   npm run bench:multigpu -- --quick                45 s
 *   npm run bench:multigpu -- --rps 300              heavier traffic: the hottest models need more instances
 *   npm run bench:multigpu -- --backend onnxruntime  a backend that loads a model's instances in parallel
 */
import * as path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Agent } from '../../src/agent';
import { loadConfig } from '../../src/config';
import { silentLogger } from '../../src/observability';
import { startEmulatedTriton } from '../support/emulated-triton';
import { benchFlags, numberFlag } from '../support/flags';
import { identityConfig, writeModel } from '../../test/support/model-repo';

type Placement = 'adaptive' | 'pack' | 'triton-default';
const CMD = 'bench:multigpu';
const flags = benchFlags(CMD, {
  quick: { type: 'boolean', help: '45 s per placement' },
  rps: { type: 'string', default: '10', help: 'request rate' },
  seconds: { type: 'string', default: '', help: 'seconds per placement (default 120, 45 with --quick)' },
  backend: { type: 'string', default: 'pytorch', help: "'pytorch' or 'onnxruntime'" },
  placements: {
    type: 'string',
    default: 'triton-default,pack,adaptive',
    help: 'placements, comma-separated',
  },
});
const RPS = numberFlag(CMD, 'rps', flags.rps, 0.001);
const SECONDS = numberFlag(CMD, 'seconds', flags.seconds || (flags.quick ? '45' : '120'), 1);
const BACKEND = flags.backend as 'pytorch' | 'onnxruntime';
const PLACEMENTS = flags.placements.split(',') as Placement[];
for (const [name, value, allowed] of [
  ['backend', [BACKEND], ['pytorch', 'onnxruntime']],
  ['placements', PLACEMENTS, ['triton-default', 'pack', 'adaptive']],
] as const) {
  const wrong = value.filter((v) => !(allowed as readonly string[]).includes(v));
  if (wrong.length > 0) {
    process.stderr.write(`${CMD}: --${name} takes ${allowed.join(', ')}; got '${wrong.join(',')}'\n`);
    process.exit(2);
  }
}

const MODELS = 400;
const GPUS = 4;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** One instance's load time grows with size, as it does for real engines: 100 ms per GiB. */
const LOAD_MS_PER_GIB = 100;
/** Each inference takes this long on one instance; an instance runs one at a time. */
const INFER_MS = 20;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Family {
  name: string;
  metrics: { value?: string; count?: string; sum?: string }[];
}

const FILE = { pytorch: 'model.pt', onnxruntime: 'model.onnx' } as const;
const PLATFORM = { pytorch: 'pytorch_libtorch', onnxruntime: 'onnxruntime_onnx' } as const;

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

async function run(placement: Placement, sizes: number[], arrivals: { at: number; model: number }[]) {
  const side = await startEmulatedTriton('multigpu-', { gpuCount: GPUS, gpuMemoryBytes: 16 * GiB });
  const { emulator, repository, models } = side;
  for (let i = 0; i < MODELS; i++) {
    const bytes = sizes[i];
    const params = [
      `parameters { key: "emulator_gpu_bytes" value { string_value: "${bytes}" } }`,
      `parameters { key: "gpu_memory_bytes" value { string_value: "${bytes}" } }`,
      `parameters { key: "emulator_load_ms" value { string_value: "${Math.round((bytes / GiB) * LOAD_MS_PER_GIB)}" } }`,
      `parameters { key: "emulator_infer_ms" value { string_value: "${INFER_MS}" } }`,
    ].join('\n');
    const config = identityConfig(`m${i}`, [{ type: 'TYPE_INT32', dims: [1] }], 0, params).replace(
      'backend: "python"',
      `platform: "${PLATFORM[BACKEND]}"`,
    );
    await writeModel(path.join(models, `m${i}`), `m${i}`, {
      config,
      versions: { '1': { [FILE[BACKEND]]: 100 } },
    });
  }
  const config = loadConfig({
    SAGEMAKER_BIND_TO_PORT: '0',
    AGENT_BIND_HOST: '127.0.0.1',
    TRITON_GRPC_URL: emulator.grpcAddress,
    TRITON_METRICS_URL: emulator.metricsUrl,
    TRITON_MODEL_REPOSITORY: repository,
    MODEL_DATA_URL: `file://${models}/`,
    AGENT_GPU_PLACEMENT: placement,
  });
  const agent = new Agent(config, silentLogger());
  await agent.start();
  const counts = new Map<number, number>();
  for (const a of arrivals) counts.set(a.model, (counts.get(a.model) ?? 0) + 1);
  const hottest = [...counts].sort((a, b) => b[1] - a[1]).map(([m]) => m);
  const gpusOf = (m: number) =>
    emulator.placement(agent.registry.get(`m${m}`)?.tritonName ?? '').filter((b) => b > 0).length;

  const scrape = async () => {
    const text = await (await fetch(`${agent.url}/metrics`)).text();
    const families = new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
    const loading = families.get('sagemaker_model_loading_time_seconds')?.metrics[0];
    const hits = (families.get('sagemaker_model_cache_hit_total')?.metrics ?? []).reduce(
      (a, m) => a + Number(m.value ?? 0),
      0,
    );
    return { loads: Number(loading?.count ?? 0), seconds: Number(loading?.sum ?? 0), hits };
  };

  let failed = 0;
  let done = 0;
  const statuses = new Map<string, number>();
  const latency: number[] = [];
  const hotLatency: number[] = [];
  const residentSamples: number[] = [];
  let hottestMaxGpus = 0;
  let spreadMax = 0;
  const sampler = setInterval(() => {
    residentSamples.push(emulator.loadedModels().length);
    hottestMaxGpus = Math.max(hottestMaxGpus, gpusOf(hottest[0]));
    spreadMax = Math.max(
      spreadMax,
      emulator.loadedModels().filter((n) => emulator.placement(n).filter((b) => b > 0).length > 1).length,
    );
  }, 500);
  const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] });
  const invoke = async (model: number) => {
    const t0 = performance.now();
    const res = await fetch(`${agent.url}/endpoints/bench/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'X-Amzn-SageMaker-Target-Model': `m${model}` },
      body,
    }).catch((err: unknown) => {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return `no answer (${cause?.code ?? cause?.message ?? String(err)})`;
    });
    if (typeof res !== 'string') await res.arrayBuffer();
    const ms = performance.now() - t0;
    latency.push(ms);
    if (model === hottest[0]) hotLatency.push(ms);
    const status = typeof res === 'string' ? res : String(res.status);
    if (status !== '200') {
      failed++;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    done++;
  };

  const started = performance.now();
  const inflight: Promise<void>[] = [];
  let half: Awaited<ReturnType<typeof scrape>> | undefined;
  for (const a of arrivals) {
    const wait = started + a.at - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (!half && a.at >= (SECONDS * 1000) / 2) half = await scrape();
    inflight.push(invoke(a.model));
  }
  await Promise.all(inflight);
  clearInterval(sampler);
  const end = await scrape();
  const h = half ?? { loads: 0, seconds: 0, hits: 0 };
  const secondHalf = arrivals.filter((a) => a.at >= (SECONDS * 1000) / 2).length;
  const result = {
    placement,
    residentMean: residentSamples.reduce((a, b) => a + b, 0) / Math.max(1, residentSamples.length),
    loads: end.loads,
    coldLoadSeconds: end.seconds,
    coldLoadSecondsSteady: end.seconds - h.seconds,
    hitRatio: end.hits / arrivals.length,
    hitRatioSteady: (end.hits - h.hits) / Math.max(1, secondHalf),
    p50: quantile(latency, 0.5),
    p99: quantile(latency, 0.99),
    hotP99: quantile(hotLatency, 0.99),
    hottestMaxGpus,
    spreadMax,
    failed,
    done,
    statuses: [...statuses].map(([k, n]) => `${n}× ${k}`).join(', '),
    peakGiB: Math.max(...emulator.gpus.map((g) => g.peakBytes())) / GiB,
    overCapacity: emulator.gpus.some((g) => g.peakBytes() > g.totalBytes),
  };
  await agent.stop(100);
  await side.stop();
  return result;
}

async function main(): Promise<void> {
  const r = rng(11);
  // Log-uniform sizes from 0.5 to 3 GiB, whole MiB.
  const sizes = Array.from({ length: MODELS }, () => Math.round((0.5 * 6 ** r() * GiB) / MiB) * MiB);
  const cdf: number[] = [];
  let sum = 0;
  for (let k = 0; k < MODELS; k++) cdf.push((sum += 1 / (k + 1)));
  const rank = Array.from({ length: MODELS }, (_, i) => i).sort(() => r() - 0.5);
  // Poisson arrivals at RPS for SECONDS, each to a Zipf 1.0 model.
  const arrivals: { at: number; model: number }[] = [];
  for (let t = 0; ;) {
    t += (-Math.log(1 - r()) / RPS) * 1000;
    if (t >= SECONDS * 1000) break;
    const x = r() * sum;
    let k = 0;
    while (cdf[k] < x) k++;
    arrivals.push({ at: t, model: rank[k] });
  }
  const rows = [];
  for (const placement of PLACEMENTS) {
    rows.push(await run(placement, sizes, arrivals));
    console.error(`${placement} done`);
  }
  const base = rows.find((x) => x.placement === 'triton-default') ?? rows[0];
  console.log(
    `\n${GPUS} × 16 GiB emulated GPUs, ${MODELS} ${BACKEND} models of 0.5–3 GiB, ${arrivals.length} Zipf 1.0 requests at ${RPS}/s for ${SECONDS} s, agent defaults\n`,
  );
  console.log(
    '| placement | resident (mean) | vs triton-default | Triton loads | cold-load s | vs triton-default | 2nd half cold-load s | vs triton-default | hit ratio (2nd half) | p50 ms | p99 ms | hottest model: p99 ms, most GPUs | models on > 1 GPU (most) | failed | device peak GiB |',
  );
  console.log(
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const x of rows) {
    console.log(
      `| ${x.placement} | ${x.residentMean.toFixed(1)} | ${(x.residentMean / base.residentMean).toFixed(2)}× | ${x.loads} | ${x.coldLoadSeconds.toFixed(1)} | ${(x.coldLoadSeconds / base.coldLoadSeconds).toFixed(2)}× | ${x.coldLoadSecondsSteady.toFixed(1)} | ${(x.coldLoadSecondsSteady / base.coldLoadSecondsSteady).toFixed(2)}× | ${x.hitRatio.toFixed(3)} (${x.hitRatioSteady.toFixed(3)}) | ${x.p50.toFixed(0)} | ${x.p99.toFixed(0)} | ${x.hotP99.toFixed(0)}, ${x.hottestMaxGpus} | ${x.spreadMax} | ${x.failed} of ${x.done}${x.statuses ? ` (${x.statuses})` : ''} | ${x.peakGiB.toFixed(2)}${x.overCapacity ? ' OVER' : ''} |`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
