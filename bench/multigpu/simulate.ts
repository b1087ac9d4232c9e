/**
 * bench/multigpu/simulate: the agent's own admission, GPU ledger and default eviction policy replayed over
 * the simulator's traces on several devices, to show what placement costs and what fragmentation costs.
 * Loads and unloads take no time here; cold-load seconds are the models' load costs.
 *
 *   npm run bench:multigpu-sim              4 GPUs, 200,000 requests per trace
 *   npm run bench:multigpu-sim -- --quick   40,000 (and 30 simulated minutes of busy models, not 120)
 *
 * Placements, all on 4 devices of the same size:
 *   one pool      an ideal GPU of 4× the memory: what no fragmentation would give
 *   pack          each model on one device, best fit, victims from the device that needs the room (the agent)
 *   triton-default  every model on every device: the instance holds what one device holds. Backends that
 *                   create a model's instances one after another (all but python and onnxruntime, so
 *                   PyTorch and TensorRT) spend DEVICES times a model's load cost on each of its loads; those
 *                   that create them in parallel spend it once. Both are shown (the same decisions: every
 *                   cost scaled alike leaves the policy's choices unchanged).
 *
 * Then busy models (busy-models.ts): the same admission, ledger and policy with the agent's scaler
 * (`decideScaling`) driven period by period over a workload where a few models need more than one GPU's
 * compute, against packing each model on one GPU and Triton's default of every model on every GPU.
 */
import { loadConfig } from '../../src/config';
import { policyFromSettings, type ModelRecord, type Placement } from '../../src/models';
import { busyTable } from './busy-models';
import { SimClock, admitAtOnce, simAdmission, simLedger } from './sim-parts';
import { benchFlags } from '../support/flags';
import { driftTrace, makeModels, zipfTrace, type SimModel, type Trace } from '../eviction-sim/traces';

const quick = benchFlags('bench:multigpu-sim', {
  quick: { type: 'boolean', help: '40,000 requests per trace and 30 simulated minutes of busy models' },
}).quick;
const COUNT = quick ? 40_000 : 200_000;
const DEVICES = 4;
const MODELS = 1000;
const RATE = 100;

interface Outcome {
  coldSeconds: number;
  hits: number;
  refused: number;
}

async function replay(
  trace: Trace,
  models: SimModel[],
  deviceBytes: number,
  devices: number,
  placement: Placement['kind'],
): Promise<Outcome> {
  const clock = new SimClock();
  const ledger = simLedger(clock, devices, deviceBytes);
  const policy = policyFromSettings(loadConfig({ TRITON_MODEL_REPOSITORY: '/models' }));
  if (!policy) throw new Error('the default settings have eviction on');
  const admission = simAdmission(
    ledger,
    policy,
    clock,
    (name, exclude) => name !== exclude.name && ledger.stateOf(name) === 'resident',
  );
  const records = models.map(
    (m) => ({ name: m.name, placement: { kind: placement }, victims: [] }) as unknown as ModelRecord,
  );
  const out: Outcome = { coldSeconds: 0, hits: 0, refused: 0 };
  for (let i = 0; i < trace.requests.length; i++) {
    clock.t = trace.times[i];
    const m = models[trace.requests[i]];
    policy.onAccess(m.name, m.sizeBytes, m.loadCostMs, clock.t);
    if (ledger.stateOf(m.name) === 'resident') {
      out.hits++;
      continue;
    }
    out.coldSeconds += m.loadCostMs / 1000;
    if (!(await admitAtOnce(admission, records[trace.requests[i]], m.sizeBytes))) {
      out.refused++;
      continue;
    }
    ledger.settle(m.name);
    policy.onAdmit(m.name, clock.t);
  }
  return out;
}

async function main(): Promise<void> {
  const models = makeModels(MODELS, 1);
  const total = models.reduce((a, m) => a + m.sizeBytes, 0);
  const traces = [zipfTrace(MODELS, 1.0, COUNT, RATE, 2), driftTrace(MODELS, COUNT, RATE, 3)];
  console.log(
    `\n${DEVICES} devices, ${MODELS} models (50 MB – 5 GB), ${COUNT} requests at ${RATE}/s, the agent's default policy; cold-load seconds\n`,
  );
  console.log(
    '| trace | each device holds | one pool (ideal) | pack | triton-default, parallel instance loads | pack vs that | triton-default, serial instance loads (PyTorch, TensorRT) | pack vs that | fragmentation (pack vs one pool) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const trace of traces) {
    for (const share of [0.02, 0.05]) {
      const deviceBytes = Math.round(total * share);
      const pool = await replay(trace, models, deviceBytes * DEVICES, 1, 'all');
      const pack = await replay(trace, models, deviceBytes, DEVICES, 'choose');
      const all = await replay(trace, models, deviceBytes, DEVICES, 'all');
      console.log(
        `| ${trace.name} | ${(share * 100).toFixed(0)}% of the models' bytes | ${pool.coldSeconds.toFixed(0)} | ${pack.coldSeconds.toFixed(0)} | ${all.coldSeconds.toFixed(0)} | ${(pack.coldSeconds / all.coldSeconds).toFixed(2)}× | ${(all.coldSeconds * DEVICES).toFixed(0)} | ${(pack.coldSeconds / (all.coldSeconds * DEVICES)).toFixed(2)}× | ${(pack.coldSeconds / pool.coldSeconds).toFixed(2)}× |`,
      );
    }
  }
  console.log(await busyTable(quick ? 30 : 120, [0.02, 0.05]));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
