/**
 * bench/coldload: what the agent adds to a cold load, at its DEFAULT settings, against the Triton
 * emulator's own load and unload times measured in the same run (Triton's default metrics interval,
 * 2000 ms; loads take 20 ms, unloads are immediate, memory is free as soon as an unload finishes).
 *
 *   npm run bench:coldload            15 rounds per scenario
 *   npm run bench:coldload -- --quick 5 rounds
 *
 * Scenarios (agent and baseline interleaved round by round, each on its own emulated GPU):
 *   beside    POST /models of a model while another is resident   vs  RepositoryModelLoad
 *   swap      invoke of an evicted model, five models round-robin
 *             on a GPU that holds three (evict one, load one)      vs  unload + wait for the index + load + infer
 *   parallel  20 POST /models at once of models that all fit      vs  20 RepositoryModelLoad at once
 *   pressure  300 random invokes, concurrency 5, ten 16 MiB models on a 64 MiB GPU (every one fits alone):
 *             requests that fail, and loads the emulated GPU refused for lack of memory
 */
import * as path from 'node:path';
import { Agent } from '../../src/agent';
import { loadConfig } from '../../src/config';
import { silentLogger } from '../../src/observability';
import { TritonClient } from '../../src/triton';
import { identityConfig, writeModel } from '../../test/support/model-repo';
import type { TritonEmulator } from '../../test/support/triton-emulator';
import { startEmulatedTriton, type EmulatedTriton } from '../support/emulated-triton';
import { benchFlags } from '../support/flags';

const flags = benchFlags('bench:coldload', { quick: { type: 'boolean', help: '5 rounds, not 15' } });
const ROUNDS = flags.quick ? 5 : 15;
const MiB = 1024 * 1024;
const LOAD_MS = 20;
/** Triton's default --metrics-interval-ms. */
const TRITON_METRICS_MS = 2000;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)];
};
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

type Side = EmulatedTriton;

function side(gpuMiB: number): Promise<Side> {
  return startEmulatedTriton('coldload-', {
    metricsIntervalMs: TRITON_METRICS_MS,
    loadLatencyMs: LOAD_MS,
    gpuMemoryBytes: gpuMiB * MiB,
  });
}

/** A model whose weights file is `mib` MiB: the agent estimates its footprint from that, as for real. */
async function model(dir: string, name: string, mib: number): Promise<string> {
  const config = identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }]);
  await writeModel(path.join(dir, name), name, {
    config,
    versions: { '1': { 'model.py': Math.round(mib * MiB) } },
  });
  return path.join(dir, name);
}

/** The same model placed straight into a repository, for the baseline's direct loads. */
async function repositoryModel(repository: string, name: string, mib: number): Promise<void> {
  const config = identityConfig(name, [{ type: 'TYPE_INT32', dims: [1] }]);
  await writeModel(repository, name, { config, versions: { '1': { 'model.py': Math.round(mib * MiB) } } });
}

async function startAgent(s: Side): Promise<Agent> {
  // Defaults for everything but where things are.
  const config = loadConfig({
    SAGEMAKER_BIND_TO_PORT: '0',
    AGENT_BIND_HOST: '127.0.0.1',
    TRITON_GRPC_URL: s.emulator.grpcAddress,
    TRITON_METRICS_URL: s.emulator.metricsUrl,
    TRITON_MODEL_REPOSITORY: s.repository,
    AGENT_GPU_HEADROOM_BYTES: '0',
  });
  const agent = new Agent(config, silentLogger());
  await agent.start();
  return agent;
}

async function post(agent: Agent, p: string, body: unknown): Promise<number> {
  const res = await fetch(agent.url + p, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

const invokeBody = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1], data: [1] }] };

async function waitUnloaded(client: TritonClient, name: string): Promise<void> {
  for (;;) {
    const idx = await client.repositoryIndex();
    if (!idx.some((e) => e.name === name && ['READY', 'LOADING', 'UNLOADING'].includes(e.state))) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Loads of `names` the emulated GPU refused (out of memory), from the emulator's counters. */
function refusedLoads(emulator: TritonEmulator, agent: Agent, names: readonly string[]): number {
  return names.reduce(
    (acc, n) => acc + emulator.counters(agent.registry.get(n)?.tritonName ?? '').loadFailures,
    0,
  );
}

async function main(): Promise<void> {
  const results: { scenario: string; agent: number; baseline: number; unit: string }[] = [];

  // --- beside: a cold load while another model is resident -------------------------------------
  {
    const a = await side(16 * 1024);
    const b = await side(16 * 1024);
    const agent = await startAgent(a);
    const client = new TritonClient({ address: b.emulator.grpcAddress });
    expect200(
      await post(agent, '/models', { model_name: 'resident', url: await model(a.models, 'resident', 1) }),
    );
    await repositoryModel(b.repository, 'resident', 1).then(() => client.load('resident'));
    const agentMs: number[] = [];
    const baseMs: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const url = await model(a.models, `m${i}`, 1);
      let t0 = process.hrtime.bigint();
      expect200(await post(agent, '/models', { model_name: `m${i}`, url }));
      agentMs.push(ms(t0));
      await fetch(`${agent.url}/models/m${i}`, { method: 'DELETE' });
      await repositoryModel(b.repository, `m${i}`, 1);
      t0 = process.hrtime.bigint();
      await client.load(`m${i}`);
      baseMs.push(ms(t0));
      await client.unload(`m${i}`);
      await waitUnloaded(client, `m${i}`);
    }
    results.push({
      scenario: 'beside: cold load next to a resident model',
      agent: median(agentMs),
      baseline: median(baseMs),
      unit: 'ms',
    });
    await agent.stop(100);
    client.close();
    for (const s of [a, b]) await s.stop();
  }

  // --- swap: five models round-robin on a GPU that holds three -------------------------------------
  {
    const a = await side(100);
    const b = await side(100);
    const agent = await startAgent(a);
    const client = new TritonClient({ address: b.emulator.grpcAddress });
    const names = ['s0', 's1', 's2', 's3', 's4'];
    for (const n of names)
      expect200(await post(agent, '/models', { model_name: n, url: await model(a.models, n, 24) }));
    for (const n of names) await repositoryModel(b.repository, n, 24);
    const resident: string[] = [];
    const agentMs: number[] = [];
    const baseMs: number[] = [];
    for (let i = 0; i < ROUNDS * 2; i++) {
      const n = names[i % names.length];
      let t0 = process.hrtime.bigint();
      expect200(await post(agent, `/models/${n}/invoke`, invokeBody));
      agentMs.push(ms(t0));
      // The baseline does by hand what a swap needs: unload the oldest, wait for Triton's index, load, infer.
      t0 = process.hrtime.bigint();
      if (resident.length === 3) {
        const victim = resident.shift() as string;
        await client.unload(victim);
        await waitUnloaded(client, victim);
      }
      await client.load(n);
      resident.push(n);
      await client.infer({
        model_name: n,
        inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1] }],
        raw_input_contents: [Buffer.alloc(4)],
      });
      baseMs.push(ms(t0));
    }
    results.push({
      scenario: 'swap: invoke of an evicted model (evict + load)',
      agent: median(agentMs),
      baseline: median(baseMs),
      unit: 'ms',
    });
    const refused = refusedLoads(a.emulator, agent, names);
    results.push({
      scenario: 'swap: loads the GPU refused (out of memory)',
      agent: refused,
      baseline: 0,
      unit: 'loads',
    });
    await agent.stop(100);
    client.close();
    for (const s of [a, b]) await s.stop();
  }

  // --- parallel: 20 loads that all fit ----------------------------------------------------------------
  {
    const a = await side(16 * 1024);
    const b = await side(16 * 1024);
    const agent = await startAgent(a);
    const client = new TritonClient({ address: b.emulator.grpcAddress });
    const urls = await Promise.all(Array.from({ length: 20 }, (_, i) => model(a.models, `p${i}`, 0.1)));
    for (let i = 0; i < 20; i++) await repositoryModel(b.repository, `p${i}`, 0.1);
    let t0 = process.hrtime.bigint();
    const statuses = await Promise.all(
      urls.map((url, i) => post(agent, '/models', { model_name: `p${i}`, url })),
    );
    const agentMs = ms(t0);
    statuses.forEach(expect200);
    t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.load(`p${i}`)));
    const baseMs = ms(t0);
    results.push({
      scenario: 'parallel: 20 loads that fit, wall time',
      agent: agentMs,
      baseline: baseMs,
      unit: 'ms',
    });
    await agent.stop(100);
    client.close();
    for (const s of [a, b]) await s.stop();
  }

  // --- pressure: every model fits alone ---------------------------------------------------------------
  {
    const a = await side(64);
    const agent = await startAgent(a);
    const names = Array.from({ length: 10 }, (_, i) => `q${i}`);
    for (const n of names) await model(a.models, n, 12.8); // estimated 16 MiB (× 1.25), as it is in the emulator
    for (const n of names)
      expect200(await post(agent, '/models', { model_name: n, url: path.join(a.models, n) }));
    let failed = 0;
    let next = 0;
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const worker = async () => {
      while (next < 300) {
        next++;
        const n = names[Math.floor(rand() * names.length)];
        if ((await post(agent, `/models/${n}/invoke`, invokeBody)) !== 200) failed++;
      }
    };
    await Promise.all(Array.from({ length: 5 }, worker));
    const refused = refusedLoads(a.emulator, agent, names);
    results.push({
      scenario: 'pressure: requests that failed (of 300)',
      agent: failed,
      baseline: 0,
      unit: 'requests',
    });
    results.push({
      scenario: 'pressure: loads the GPU refused (out of memory)',
      agent: refused,
      baseline: 0,
      unit: 'loads',
    });
    results.push({
      scenario: 'pressure: GPU peak, MiB of 64',
      agent: a.emulator.gpu.peakBytes() / MiB,
      baseline: 64,
      unit: 'MiB',
    });
    await agent.stop(100);
    await a.stop();
  }

  console.log(
    `\ncold loads at the agent's default settings (emulator: ${LOAD_MS} ms loads, ${TRITON_METRICS_MS} ms metrics interval), median of ${ROUNDS} rounds\n`,
  );
  console.log('| scenario | agent | baseline | added |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const r of results) {
    const added = r.unit === 'ms' ? `${(r.agent - r.baseline).toFixed(1)} ms` : '';
    console.log(
      `| ${r.scenario} | ${r.agent.toFixed(r.unit === 'ms' ? 1 : 0)} ${r.unit} | ${r.baseline.toFixed(r.unit === 'ms' ? 1 : 0)} ${r.unit} | ${added} |`,
    );
  }
}

function expect200(status: number): void {
  if (status !== 200) throw new Error(`expected 200, got ${status}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
