/**
 * bench/overhead micro-benchmarks, each against its bare baseline in the same process and run,
 * interleaved, after a warm-up; medians of the rounds:
 *
 *   JSON decode   the agent's decodeInvokeBody of a ResNet-50 image sent as KServe JSON, against a bare
 *                 JSON.parse plus a Float32Array fill of the same body (flat `data`, and nested 1x3x224x224)
 *   JSON encode   the agent's response encoder for ResNet-50's 1000 FP32 scores, against JSON.stringify of
 *                 the same values in the same envelope
 *   request log   one request line at info: winston (the json format with a timestamp, as the agent used it)
 *                 against the agent's logger, both writing to a sink that discards
 *
 *   npm run bench:overhead -- --micro
 */
import { Writable } from 'node:stream';
import winston from 'winston';
import { decodeInvokeBody, encodeInvokeResponse, type ModelIO } from '../../src/inference';
import { createLogger } from '../../src/observability';
import type { ModelInferResponse } from '../../src/triton';

const ROUNDS = 7;

function image(): Float32Array {
  const a = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < a.length; i++) a[i] = Math.fround((((i * 7919) % 256) / 255 - 0.45) / 0.225);
  return a;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Time per call in microseconds of `fn`, run for about `ms`, in batches with a turn of the event loop
 * between them (so a logger that writes on the next turn does write, and pays for it, inside the timing).
 */
async function timeIt(fn: () => unknown, ms: number): Promise<number> {
  const start = performance.now();
  let n = 0;
  while (performance.now() - start < ms) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
    await nextTurn();
  }
  return ((performance.now() - start) * 1000) / n;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

/** Interleaved rounds of each contender; returns the median microseconds per call of each. */
async function compare(
  contenders: Record<string, () => unknown>,
  ms: number,
): Promise<Record<string, number>> {
  for (const fn of Object.values(contenders)) await timeIt(fn, ms); // warm-up
  const samples: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(contenders)) (samples[name] ??= []).push(await timeIt(fn, ms));
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
}

function table(title: string, baseline: string, results: Record<string, number>): void {
  console.log(`\n${title}\n`);
  console.log('| contender | µs per call | ratio to baseline |');
  console.log('| --- | ---: | ---: |');
  for (const [name, us] of Object.entries(results)) {
    console.log(`| ${name} | ${us.toFixed(1)} | ${(us / results[baseline]).toFixed(2)} |`);
  }
}

export async function runMicro(): Promise<void> {
  const io: ModelIO = {
    maxBatchSize: 128,
    inputs: [{ name: 'INPUT__0', datatype: 'FP32', shape: [-1, 3, 224, 224] }],
    outputs: [{ name: 'OUTPUT__0', datatype: 'FP32', shape: [-1, 1000] }],
  };
  const pixels = Array.from(image());
  const nested = [
    [0, 1, 2].map((c) =>
      Array.from({ length: 224 }, (_, y) => pixels.slice((c * 224 + y) * 224, (c * 224 + y + 1) * 224)),
    ),
  ];
  const flatBody = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'INPUT__0', shape: [1, 3, 224, 224], datatype: 'FP32', data: pixels }],
    }),
  );
  const nestedBody = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'INPUT__0', shape: [1, 3, 224, 224], datatype: 'FP32', data: nested }],
    }),
  );
  const bareFlat = () => {
    const doc = JSON.parse(flatBody.toString('utf8')) as { inputs: { data: number[] }[] };
    const data = doc.inputs[0].data;
    const out = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = data[i];
    return out;
  };
  const bareNested = () => {
    const doc = JSON.parse(nestedBody.toString('utf8')) as { inputs: { data: number[][][][] }[] };
    const out = new Float32Array(3 * 224 * 224);
    let k = 0;
    for (const b of doc.inputs[0].data)
      for (const c of b) for (const row of c) for (const v of row) out[k++] = v;
    return out;
  };
  table(
    `JSON decode: ResNet-50 image, ${(flatBody.length / 1e6).toFixed(1)} MB of KServe JSON`,
    'bare JSON.parse + Float32Array fill, flat data (baseline)',
    await compare(
      {
        'bare JSON.parse + Float32Array fill, flat data (baseline)': bareFlat,
        'agent decodeInvokeBody, flat data': () => decodeInvokeBody(flatBody, 'application/json', io),
        'bare JSON.parse + Float32Array fill, nested 1x3x224x224': bareNested,
        'agent decodeInvokeBody, nested 1x3x224x224': () =>
          decodeInvokeBody(nestedBody, 'application/json', io),
      },
      300,
    ),
  );

  const scores = new Float32Array(1000).map((_, i) => Math.fround(Math.sin(i) * 10));
  const response: ModelInferResponse = {
    model_name: 'resnet-0123456789ab',
    model_version: '1',
    id: '',
    parameters: {},
    outputs: [{ name: 'OUTPUT__0', datatype: 'FP32', shape: [1, 1000], parameters: {} }],
    raw_output_contents: [Buffer.from(scores.buffer)],
  };
  table(
    'JSON encode: ResNet-50 scores (1x1000 FP32)',
    'bare JSON.stringify (baseline)',
    await compare(
      {
        'bare JSON.stringify (baseline)': () => {
          const raw = response.raw_output_contents[0];
          const values = Array.from(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4));
          return Buffer.from(
            `{"model_name":"resnet","model_version":"1","outputs":[{"name":"OUTPUT__0","datatype":"FP32","shape":[1,1000],"data":${JSON.stringify(values)}}]}`,
          );
        },
        'agent encodeInvokeResponse': () => encodeInvokeResponse(response, 'resnet', new Set()),
      },
      200,
    ),
  );

  const discard = new Writable({ write: (_chunk, _enc, cb) => cb() });
  const w = winston.createLogger({
    level: 'info',
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    transports: [new winston.transports.Stream({ stream: discard })],
  });
  const ours = createLogger('info', false, { write: () => true });
  const fields = () => ({
    requestId: '4f0c2a7e-9d1b-4c55-8e0e-0f3c1d2b9a77',
    method: 'POST',
    path: '/models/resnet_pt_v0.tar.gz/invoke',
    status: 200,
    ms: 3.214,
    model: 'resnet_pt_v0.tar.gz',
    waitMs: 0,
    tritonMs: 2.871,
    overheadMs: 0.343,
    cold: false,
  });
  table(
    'Request log: one info line with the request fields',
    'winston json + timestamp (baseline)',
    await compare(
      {
        'winston json + timestamp (baseline)': () => w.info('request', fields()),
        'agent logger': () => ours.info('request', fields()),
      },
      200,
    ),
  );
}

if (require.main === module) void runMicro();
