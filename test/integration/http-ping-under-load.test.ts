import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { identityConfig, tempDir, writeModel } from '../support/model-repo';

/**
 * Issue 13: no single request may hold the event loop. The largest request the agent accepts is sent
 * twice, as binary FP32 asking for a JSON answer (the case that once built 369 MB of JSON
 * synchronously) and as a JSON body, while a loop of GET /ping measures how long the agent makes other
 * requests wait. The agent (src/main.ts, default settings) and the Triton stand-in each run as their own
 * process, as in production, so the measure is the agent's alone; the clients here keep their own work
 * small (bodies built once, responses counted, not collected).
 */
const PING_BOUND_MS = 100;
/**
 * The agent's default body limit (AGENT_MAX_BODY_BYTES), which this test does not set: SageMaker's real-time
 * invocations carry at most 6 MB. The largest request it accepts still goes through the JSON decoding thread
 * and the stepwise JSON encoder, so this guards the agent's handling of the largest request it serves. (At
 * 64 MiB, a limit a user may set for local use, the gRPC client's copies of the message hold the loop for
 * 90 to 170 ms on a loaded 2-core machine: measured, see BENCHMARKS.md.)
 */
const MAX_BODY = 8 * 1024 * 1024;

/** Starts a TypeScript entry point as its own process; resolves with the first capture of `pattern`. */
function startProcess(
  script: string,
  args: string[],
  env: Record<string, string>,
  patterns: RegExp[],
): { child: ChildProcess; found: Promise<string[]> } {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const found = new Promise<string[]>((resolve, reject) => {
    const values: (string | undefined)[] = patterns.map(() => undefined);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      patterns.forEach((p, i) => {
        const m = p.exec(line);
        if (m && values[i] === undefined) values[i] = m[1];
      });
      if (values.every((v) => v !== undefined)) resolve(values as string[]);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return { child, found };
}

interface Answer {
  status: number;
  bytes: number;
  /** The body when it is small (an error), else undefined. */
  small: string | undefined;
}

const keepAlive = new http.Agent({ keepAlive: true });

/** One request with node:http; the response is counted, and kept only when small. */
function send(
  port: number,
  method: string,
  p: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: p, headers, agent: keepAlive },
      (res) => {
        let bytes = 0;
        const kept: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          if (bytes <= 65536) kept.push(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            bytes,
            small: bytes <= 65536 ? Buffer.concat(kept).toString() : undefined,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('one large request does not stall the agent', () => {
  let root: { dir: string; cleanup: () => Promise<void> };
  let emulator: ChildProcess;
  let agent: ChildProcess;
  let port: number;

  beforeAll(async () => {
    root = await tempDir('mme-large-');
    const repository = path.join(root.dir, 'repository');
    await fs.mkdir(repository);
    const models = path.join(root.dir, 'models');
    await writeModel(models, 'big', {
      config: identityConfig('big', [{ type: 'TYPE_FP32', dims: [-1] }]),
      versions: { '1': { 'model.py': 1 } },
    });
    const e = startProcess(
      path.join(__dirname, '../support/triton-emulator/cli.ts'),
      [
        '--model-repository',
        repository,
        '--grpc-port',
        '0',
        '--metrics-port',
        '0',
        '--metrics-interval-ms',
        '50',
      ],
      {},
      [/Started GRPCInferenceService at \S*:(\d+)/, /Started Metrics Service at \S*:(\d+)/],
    );
    emulator = e.child;
    const [grpcPort, metricsPort] = await e.found;
    const a = startProcess(
      path.join(__dirname, '../../src/main.ts'),
      [],
      {
        SAGEMAKER_BIND_TO_PORT: '0',
        AGENT_BIND_HOST: '127.0.0.1',
        TRITON_GRPC_URL: `127.0.0.1:${grpcPort}`,
        TRITON_METRICS_URL: `http://127.0.0.1:${metricsPort}/metrics`,
        TRITON_MODEL_REPOSITORY: repository,
        AGENT_METRICS_INTERVAL_MS: '150',
      },
      [/"message":"agent listening".*"port":(\d+)/, /"message":"(agent ready)"/],
    );
    agent = a.child;
    port = Number((await a.found)[0]);
    const load = await send(
      port,
      'POST',
      '/models',
      JSON.stringify({ model_name: 'big', url: path.join(models, 'big') }),
      {
        'content-type': 'application/json',
      },
    );
    expect(load.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    keepAlive.destroy();
    const exited = (c: ChildProcess | undefined) =>
      c && c.exitCode === null
        ? new Promise<void>((resolve) => c.once('exit', () => resolve()))
        : Promise.resolve();
    const done = Promise.all([exited(agent), exited(emulator)]);
    agent?.kill('SIGTERM');
    emulator?.kill('SIGTERM');
    await done;
    await root?.cleanup();
  });

  /**
   * Runs `work` while pinging in a loop; returns its result and the slowest ping. Over the bound, the run
   * is repeated once and the better one kept: a stall the agent causes comes back on every run, while a
   * pause of a busy shared machine (other test processes, a 2-core CI box) seldom hits both.
   */
  async function whilePinging<T>(
    work: () => Promise<T>,
  ): Promise<{ result: T; slowest: number; pings: number }> {
    const first = await pingDuring(work);
    if (first.slowest < PING_BOUND_MS) return first;
    const second = await pingDuring(work);
    return second.slowest < first.slowest ? second : first;
  }

  async function pingDuring<T>(
    work: () => Promise<T>,
  ): Promise<{ result: T; slowest: number; pings: number }> {
    let running = true;
    let slowest = 0;
    let pings = 0;
    const loop = (async () => {
      while (running) {
        const t0 = performance.now();
        const r = await send(port, 'GET', '/ping');
        if (r.status !== 200) throw new Error(`/ping answered ${r.status}`);
        slowest = Math.max(slowest, performance.now() - t0);
        pings++;
      }
    })();
    try {
      return { result: await work(), slowest, pings };
    } finally {
      running = false;
      await loop;
    }
  }

  test('the largest allowed requests, binary in with JSON out and JSON in, while /ping keeps answering', async () => {
    // A small request of each kind first: what is measured is size, not the first use of a code path.
    const small = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], data: [1, 2] }] }),
    );
    expect(
      (await send(port, 'POST', '/models/big/invoke', small, { 'content-type': 'application/json' })).status,
    ).toBe(200);
    const smallRaw = Buffer.from(new Float32Array([1, 2]).buffer);
    const smallHeader = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 8 } }],
      }),
    );
    const warm = await send(port, 'POST', '/models/big/invoke', Buffer.concat([smallHeader, smallRaw]), {
      'content-type': `application/vnd.sagemaker-triton.binary+json;json-header-size=${smallHeader.length}`,
    });
    expect(warm.status).toBe(200);

    // 1. Binary FP32 in, JSON out (the case that once built hundreds of MB of JSON in one go): the JSON
    // answer is encoded in steps, under the default AGENT_MAX_JSON_RESPONSE_BYTES.
    const header = (size: number) =>
      Buffer.from(
        JSON.stringify({
          inputs: [
            { name: 'INPUT0', datatype: 'FP32', shape: [size / 4], parameters: { binary_data_size: size } },
          ],
        }),
      );
    const rawBytes = (MAX_BODY - header(MAX_BODY).length) & ~3;
    const raw = Buffer.alloc(rawBytes);
    const values = new Float32Array(raw.buffer, raw.byteOffset, rawBytes / 4);
    for (let i = 0; i < values.length; i++) values[i] = i / 3;
    const h = header(rawBytes);
    const binaryBody = Buffer.concat([h, raw]);
    expect(binaryBody.length).toBeLessThanOrEqual(MAX_BODY);
    const binary = await whilePinging(() =>
      send(port, 'POST', '/models/big/invoke', binaryBody, {
        'content-type': `application/vnd.sagemaker-triton.binary+json;json-header-size=${h.length}`,
      }),
    );
    if (binary.result.status === 400) {
      // Over the JSON response bound: refused with a clear error, never a 500 or a stall.
      expect(String(JSON.parse(binary.result.small ?? '{}').error)).toMatch(
        /AGENT_MAX_JSON_RESPONSE_BYTES.*binary/,
      );
    } else {
      expect(binary.result.status).toBe(200);
      // Every value comes back as JSON text: more bytes than the binary tensor.
      expect(binary.result.bytes).toBeGreaterThan(rawBytes);
    }

    // 2. A JSON body of the largest allowed size, binary output asked for: decoded off the event loop.
    // Values as clients write float32 pixels (about 12 characters each).
    const element = '0.123456789,';
    const count = Math.floor((MAX_BODY - 200) / element.length);
    const jsonBody = Buffer.from(
      `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[${count}],"data":[${element.repeat(count - 1)}0.123456789]}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]}`,
    );
    expect(jsonBody.length).toBeLessThanOrEqual(MAX_BODY);
    const json = await whilePinging(() =>
      send(port, 'POST', '/models/big/invoke', jsonBody, { 'content-type': 'application/json' }),
    );
    expect(json.result.status).toBe(200);
    expect(json.result.bytes).toBeGreaterThan(count * 4);

    // The one latency assertion the issue asks for, against its bound.
    expect(binary.pings).toBeGreaterThan(0);
    expect(json.pings).toBeGreaterThan(0);
    if (process.env.PING_REPORT)
      console.log({
        binarySlowestMs: binary.slowest,
        jsonSlowestMs: json.slowest,
        pings: [binary.pings, json.pings],
      });
    expect(binary.slowest).toBeLessThan(PING_BOUND_MS);
    expect(json.slowest).toBeLessThan(PING_BOUND_MS);
  }, 120_000);
});
