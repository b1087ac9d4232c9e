/**
 * bench/multigpu: an emulated 4 × 16 GiB instance, 400 models of 0.5–3 GiB, Zipf 1.0 traffic, the agent at
 * its default settings but for the placement under test. For each placement: models resident at the end
 * and on average, the Triton load seconds the traffic cost (cold-load seconds), the hit ratio, and the
 * most any device was ever asked to hold.
 *
 *   npm run bench:multigpu              3,000 requests per placement
 *   npm run bench:multigpu -- --quick   800
 */
import * as path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Agent } from '../../src/agent';
import { loadConfig } from '../../src/config';
import { silentLogger } from '../../src/observability';
import { startEmulatedTriton } from '../support/emulated-triton';
import { identityConfig, writeModel } from '../../test/support/model-repo';

const quick = process.argv.includes('--quick');
const REQUESTS = quick ? 800 : 3000;
const MODELS = 400;
const GPUS = 4;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** Load time grows with size, as it does for real engines: 100 ms per GiB. */
const LOAD_MS_PER_GIB = 100;
const CONCURRENCY = 8;
/** Each inference takes this long in the emulated GPU. */
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

async function run(placement: 'adaptive' | 'pack' | 'triton-default', sizes: number[], trace: number[]) {
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
    await writeModel(path.join(models, `m${i}`), `m${i}`, {
      config: identityConfig(`m${i}`, [{ type: 'TYPE_INT32', dims: [1] }], 0, params),
      versions: { '1': { 'model.py': 100 } },
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
  let next = 0;
  let failed = 0;
  const residentSamples: number[] = [];
  const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] });
  const worker = async () => {
    while (next < trace.length) {
      const m = trace[next++];
      const res = await fetch(`${agent.url}/endpoints/bench/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'X-Amzn-SageMaker-Target-Model': `m${m}` },
        body,
      });
      await res.arrayBuffer();
      if (res.status !== 200) failed++;
      if (next % 50 === 0) residentSamples.push(emulator.loadedModels().length);
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (Date.now() - started) / 1000;
  const text = await (await fetch(`${agent.url}/metrics`)).text();
  const families = new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
  const loading = families.get('sagemaker_model_loading_time_seconds')?.metrics[0];
  const hits = Number(
    families.get('sagemaker_model_cache_hit_total')?.metrics.reduce((a, m) => a + Number(m.value ?? 0), 0) ??
      0,
  );
  const spread = emulator
    .loadedModels()
    .map((n) => emulator.placement(n).filter((b) => b > 0).length)
    .filter((k) => k > 1);
  const counts = new Map<number, number>();
  for (const m of trace) counts.set(m, (counts.get(m) ?? 0) + 1);
  const top = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  const hottest = emulator
    .placement(agent.registry.get(`m${top}`)?.tritonName ?? '')
    .filter((b) => b > 0).length;
  const result = {
    placement,
    spread: spread.length,
    hottest,
    residentEnd: emulator.loadedModels().length,
    residentMean: residentSamples.reduce((a, b) => a + b, 0) / Math.max(1, residentSamples.length),
    loads: Number(loading?.count ?? 0),
    coldLoadSeconds: Number(loading?.sum ?? 0),
    hitRatio: hits / trace.length,
    failed,
    peakGiB: Math.max(...emulator.gpus.map((g) => g.peakBytes())) / GiB,
    seconds,
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
  const trace = Array.from({ length: REQUESTS }, () => {
    const x = r() * sum;
    let k = 0;
    while (cdf[k] < x) k++;
    return rank[k];
  });
  const rows = [];
  for (const placement of ['triton-default', 'pack', 'adaptive'] as const)
    rows.push(await run(placement, sizes, trace));
  const base = rows[0];
  console.log(
    `\n${GPUS} × 16 GiB emulated GPUs, ${MODELS} models of 0.5–3 GiB, ${REQUESTS} Zipf 1.0 requests at concurrency ${CONCURRENCY}, agent defaults\n`,
  );
  console.log(
    '| placement | resident at end | resident (mean) | vs triton-default | Triton loads | cold-load s | vs triton-default | hit ratio | failed | device peak GiB |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const x of rows) {
    console.log(
      `| ${x.placement} | ${x.residentEnd} | ${x.residentMean.toFixed(1)} | ${(x.residentMean / base.residentMean).toFixed(2)}× | ${x.loads} | ${x.coldLoadSeconds.toFixed(1)} | ${(x.coldLoadSeconds / base.coldLoadSeconds).toFixed(2)}× | ${x.hitRatio.toFixed(3)} | ${x.failed} | ${x.peakGiB.toFixed(2)} | ${x.spread} | ${x.hottest} |`,
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
