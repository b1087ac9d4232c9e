/**
 * bench/soak: mixed traffic over 200 PyTorch models whose footprints nobody declared, on the Triton
 * emulator with its realistic memory model (footprint ≠ file size, growth at the first inference, release
 * lag, whole-MiB figures, no memory_usage for PyTorch) and a GPU that holds about 20 of them, for a fixed
 * time. Reports requests, retries, errors, latency, loads, evictions and the GPU's peak use,
 * and exits non-zero if any request was lost (never answered correctly) or the GPU went over capacity.
 *
 *   npm run bench:soak                     10 minutes, 16 concurrent clients
 *   npm run bench:soak -- --minutes 1 --clients 8
 *
 * Not part of CI. Traffic: Zipf(1.0) popularity whose hot set drifts every 30 s, invocations through the
 * SageMaker Runtime route (lazy loading from a file:// MODEL_DATA_URL), plus GET /models and /ping.
 * Every answer is checked: the identity models echo a value unique to the request.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { identityConfig, tempDir } from '../../test/support/model-repo';
import { startStack } from '../../test/support/agent-harness';
import { rng } from '../eviction-sim/traces';
import { benchFlags, numberFlag } from '../support/flags';

const CMD = 'bench:soak';
const flags = benchFlags(CMD, {
  minutes: { type: 'string', default: '10', help: 'how long the soak runs' },
  'triton-metrics-ms': { type: 'string', default: '2000', help: "Triton's --metrics-interval-ms" },
  clients: { type: 'string', default: '16', help: 'closed-loop clients' },
});
const minutes = numberFlag(CMD, 'minutes', flags.minutes, 0.01);
/** Triton's --metrics-interval-ms (its default is 2000). */
const tritonMetricsMs = numberFlag(CMD, 'triton-metrics-ms', flags['triton-metrics-ms'], 1);
const clients = numberFlag(CMD, 'clients', flags.clients, 1);
const MODELS = 200;
const MiB = 1024 * 1024;

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function main(): Promise<void> {
  const data = await tempDir('soak-models-');
  const r = rng(11);
  // PyTorch models whose weight files are 8 to 20 MiB and whose GPU footprint is 0.8 to 3 × the file (the
  // emulator's memory model: what a load takes is not the file's size), growing by a quarter at their first
  // inference. Nothing is declared: the agent starts from 1.25 × the file and learns from Triton's samples.
  // SageMaker-extracted directories with sparse weight files (sizes without the disk use).
  let footprints = 0;
  for (let i = 0; i < MODELS; i++) {
    const fileBytes = (8 + Math.floor(r() * 13)) * MiB;
    const factor = 0.8 + r() * 2.2;
    footprints += fileBytes * factor * 1.25;
    const params = `parameters { key: "emulator_memory_factor" value { string_value: "${factor.toFixed(3)}" } }`;
    const config = identityConfig(`m${i}`, [{ type: 'TYPE_INT32', dims: [1] }], 0, params).replace(
      'backend: "python"',
      'backend: "pytorch"',
    );
    const modelDir = path.join(data.dir, `m${i}`, `m${i}`);
    await fs.mkdir(path.join(modelDir, '1'), { recursive: true });
    await fs.writeFile(path.join(modelDir, 'config.pbtxt'), config);
    const weights = path.join(modelDir, '1', 'model.pt');
    await fs.writeFile(weights, '');
    await fs.truncate(weights, fileBytes);
  }
  const meanMiB = footprints / MODELS / MiB;
  // A GPU for about 20 of them, as grown.
  const gpuBytes = Math.round((20 * footprints) / MODELS / MiB) * MiB;
  // The agent runs with its defaults; Triton (the emulator) with its default 2 s metrics interval.
  const stack = await startStack({
    emulator: {
      gpuMemoryBytes: gpuBytes,
      loadLatencyMs: 40,
      inferLatencyMs: 3,
      memoryReleaseLagMs: 150,
      metricsIntervalMs: tritonMetricsMs,
    },
    defaults: true,
    env: {
      MODEL_DATA_URL: `file://${data.dir}/`,
      // The emulated GPU is about 1 GiB: the default 1 GiB of headroom would leave nothing.
      AGENT_GPU_HEADROOM_BYTES: '0',
      LOG_LEVEL: 'warn',
    },
  });

  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, stack.emulator.gpu.usedBytes())), 20);
  const stats = { requests: 0, ok: 0, retries: 0, lost: 0, wrong: 0, other: 0, insufficient: 0, lists: 0 };
  const latencies: number[] = [];
  const failures = new Map<string, number>();
  const deadline = Date.now() + minutes * 60_000;
  const started = Date.now();
  let seq = 0;
  const ranks = Array.from({ length: MODELS }, (_, i) => i);
  const cdf: number[] = [];
  let sum = 0;
  for (let k = 0; k < MODELS; k++) cdf.push((sum += 1 / (k + 1)));

  const pick = (rand: () => number) => {
    const x = rand() * sum;
    let k = 0;
    while (cdf[k] < x) k++;
    const shift = Math.floor((Date.now() - started) / 30_000) * 7; // the hot set drifts every 30 s
    return ranks[(k + shift) % MODELS];
  };

  const client = async (id: number) => {
    const rand = rng(100 + id);
    while (Date.now() < deadline) {
      if (rand() < 0.02) {
        const res = await fetch(`${stack.url}/models?max_results=50`);
        if (res.status === 200) stats.lists++;
        await res.arrayBuffer();
        continue;
      }
      const m = pick(rand);
      const value = ++seq;
      stats.requests++;
      const t0 = Date.now();
      let answered = false;
      for (let attempt = 0; attempt < 20 && !answered; attempt++) {
        const res = await fetch(`${stack.url}/endpoints/soak/invocations`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'X-Amzn-SageMaker-Target-Model': `m${m}`,
          },
          body: JSON.stringify({
            inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [value] }],
          }),
        });
        const text = await res.text();
        if (res.status === 200) {
          const got = (JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0].data[0];
          if (got !== value) stats.wrong++;
          else stats.ok++;
          answered = true;
        } else if (res.status === 429 || res.status === 503) {
          stats.retries++;
          await new Promise((res2) => setTimeout(res2, 100));
        } else {
          // SageMaker Runtime wraps the container's own status (a 507) in a 424 ModelError.
          let status = res.status;
          if (status === 424)
            status = (JSON.parse(text) as { OriginalStatusCode?: number }).OriginalStatusCode ?? status;
          if (status === 507) stats.insufficient++;
          const key = `${status} ${text.slice(0, 700)}`;
          failures.set(key, (failures.get(key) ?? 0) + 1);
          stats.other++;
          stats.retries++;
          await new Promise((res2) => setTimeout(res2, 100));
        }
      }
      if (!answered) stats.lost++;
      latencies.push(Date.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
  clearInterval(sampler);
  peak = Math.max(peak, stack.emulator.gpu.peakBytes());

  let loads = 0;
  let loadFailures = 0;
  let evictions = 0;
  let inferFailures = 0;
  for (let i = 0; i < MODELS; i++) {
    const c = stack.emulator.counters(stack.agent.registry.get(`m${i}`)?.tritonName ?? '');
    loads += c.loads;
    loadFailures += c.loadFailures;
    evictions += stack.agent.registry.get(`m${i}`)?.evictions ?? 0;
    inferFailures += c.inferFailures;
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `soak: ${minutes} min, ${clients} clients, ${MODELS} PyTorch models (footprints undeclared, ${meanMiB.toFixed(0)} MiB on average once grown), GPU ${gpuBytes / MiB} MiB (~20 models), agent defaults, Triton metrics every ${tritonMetricsMs} ms`,
  );
  console.log(
    '| requests | answered correctly | wrong answers | lost | failed answers (507) | retried 429/503 | req/s | p50 ms | p99 ms |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  console.log(
    `| ${stats.requests} | ${stats.ok} | ${stats.wrong} | ${stats.lost} | ${stats.other} (${stats.insufficient}) | ${stats.retries - stats.other} | ${(stats.requests / seconds).toFixed(0)} | ${percentile(latencies, 50)} | ${percentile(latencies, 99)} |`,
  );
  console.log(
    `Triton loads ${loads} (out of memory in Triton: ${loadFailures} loads, ${inferFailures} requests, each retried by the agent), evictions ${evictions}, list pages ${stats.lists}`,
  );
  console.log(
    `GPU peak ${(peak / MiB).toFixed(0)} MiB of ${gpuBytes / MiB} MiB (${((100 * peak) / gpuBytes).toFixed(1)}%)`,
  );
  for (const [k, n] of failures) console.log(`  other answer x${n}: ${k}`);
  await stack.stop();
  await data.cleanup();
  const ok = stats.lost === 0 && stats.wrong === 0 && stats.other === 0 && peak <= gpuBytes;
  console.log(
    ok
      ? 'soak: PASS (no request lost or failed, no 507, no wrong answer, GPU never over capacity)'
      : 'soak: FAIL',
  );
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
