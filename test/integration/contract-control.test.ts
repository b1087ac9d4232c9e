import * as net from 'node:net';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { parsePbtxt, readModelConfig } from '../../src/model-config';
import { TritonClient } from '../../src/triton';
import { tritonNameFor } from '../../src/artifacts';
import { validateArtifact } from '../../src/validate';
import { identityConfig, resnetPtConfig } from '../support/model-repo';
import { nextEvent } from '../support/wait';
import {
  MiB,
  launchPostArtifacts,
  repositoryDirs,
  request,
  sagemakerArtifact,
  startStack,
  type Stack,
} from '../support/agent-harness';

const identity = (name: string) => ({
  config: identityConfig(name, [{ type: 'TYPE_INT32', dims: [2] }]),
  versions: { '1': { 'model.py': 10 } },
});

describe('SageMaker MME control routes', () => {
  let stack: Stack;
  let triton: TritonClient;

  beforeEach(async () => {
    stack = await startStack({ emulator: { gpuMemoryBytes: 16 * MiB } });
    triton = new TritonClient({ address: stack.emulator.grpcAddress });
  });

  afterEach(async () => {
    triton.close();
    await stack.stop();
  });

  const load = (name: string, url: string, headers: Record<string, string> = {}) =>
    request(stack.url, 'POST', '/models', { model_name: name, url }, headers);

  /** Nothing of a failed load may remain: no repository directory, no Triton model, no registry entry. */
  async function expectUntouched(name: string) {
    expect(await repositoryDirs(stack.repository)).toEqual([]);
    expect(await fs.readdir(path.join(stack.repository, '.staging'))).toEqual([]);
    expect(stack.emulator.loadedModels()).toEqual([]);
    expect((await request(stack.url, 'GET', `/models/${encodeURIComponent(name)}`)).status).toBe(404);
  }

  describe('GET /ping', () => {
    test('200 with an empty body while Triton is live', async () => {
      const r = await request(stack.url, 'GET', '/ping');
      expect(r.status).toBe(200);
      expect(r.body.length).toBe(0);
    });

    test('fails when Triton is down, recovers when it is back', async () => {
      await stack.emulator.crash();
      const down = await request(stack.url, 'GET', '/ping');
      expect(down.status).toBe(503);
      expect(down.json()).toEqual({ error: 'Triton is not live' });
      await stack.emulator.restart();
      expect((await request(stack.url, 'GET', '/ping')).status).toBe(200);
    });

    test('answers while a load is in progress', async () => {
      const url = await sagemakerArtifact(stack.models, 'h1', 'resnet', {
        config: resnetPtConfig(),
        versions: { '1': { 'model.pt': 10 } },
      });
      const release = stack.emulator.hangNextLoad(tritonNameFor('slow'));
      const held = nextEvent(stack.emulator.events, 'load-started', {
        filter: (m) => m === tritonNameFor('slow'),
        timeoutMs: 10_000,
        what: 'the load of slow in Triton',
      });
      const loading = load('slow', url);
      await held;
      const ping = await request(stack.url, 'GET', '/ping');
      expect(ping.status).toBe(200);
      release();
      expect((await loading).status).toBe(200);
    });

    test('wrong method is 405 with Allow', async () => {
      const r = await request(stack.url, 'POST', '/ping');
      expect(r.status).toBe(405);
      expect(r.headers.get('allow')).toBe('GET, HEAD');
      expect(r.json().error).toMatch(/method POST is not allowed/);
    });

    test('an absolute-form target routes by its path as written: no dot-segment shortcut to another route', async () => {
      const raw = async (target: string) => {
        const socket = net.connect(Number(new URL(stack.url).port), '127.0.0.1');
        socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        let text = '';
        for await (const chunk of socket) text += String(chunk);
        return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      };
      expect(await raw('http://x/ping')).toBe(200);
      expect(await raw('http://x/models/nope/../ping')).toBe(404);
      expect(await raw('/models/nope/../ping')).toBe(404);
      expect(await raw('file:///ping')).toBe(404);
    });

    test('no route under /endpoints/ answers in SageMaker Runtime’s shape', async () => {
      const r = await request(stack.url, 'POST', '/endpoints/demo/invocations-response-stream', '{}', {
        'content-type': 'application/json',
      });
      expect(r.status).toBe(404);
      expect(r.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
      expect(r.json().Message).toMatch(/no route for POST/);
    });
  });

  describe('POST /models', () => {
    test('stages under a unique Triton name with a renamed config and loads it', async () => {
      const url = await sagemakerArtifact(stack.models, 'abc123', 'resnet', {
        config: resnetPtConfig(),
        versions: { '1': { 'model.pt': MiB } },
      });
      const r = await load('abc123', url, { 'X-Amzn-SageMaker-Target-Model': 'resnet_pt_v0.tar.gz' });
      expect(r.status).toBe(200);
      expect(r.json()).toEqual({ modelName: 'abc123', modelUrl: url });
      const tritonName = tritonNameFor('abc123');
      expect(await repositoryDirs(stack.repository)).toEqual([tritonName]);
      const config = readModelConfig(
        parsePbtxt(await fs.readFile(path.join(stack.repository, tritonName, 'config.pbtxt'), 'utf8')),
      );
      expect(config.name).toBe(tritonName);
      expect(config.inputs[0].name).toBe('INPUT__0');
      expect(await triton.modelReady(tritonName)).toBe(true);
      // The directory SageMaker owns is untouched.
      expect(await fs.readdir(url)).toEqual(['resnet']);
    });

    test('flat layout: config.pbtxt directly in the model directory', async () => {
      const url = await sagemakerArtifact(stack.models, 'flat1', 'model', identity('whatever'), true);
      expect((await load('flat1', url)).status).toBe(200);
      expect(await triton.modelReady(tritonNameFor('flat1'))).toBe(true);
    });

    test('409 when the name is already loaded, also for concurrent loads', async () => {
      const url = await sagemakerArtifact(stack.models, 'dup', 'm', identity('m'));
      const [a, b] = await Promise.all([load('dup', url), load('dup', url)]);
      expect([a.status, b.status].sort()).toEqual([200, 409]);
      const again = await load('dup', url);
      expect(again.status).toBe(409);
      expect(again.json()).toEqual({ error: "model 'dup' is already loaded" });
      expect(stack.emulator.counters(tritonNameFor('dup')).loads).toBe(1);
    });

    test.each([
      ['invalid JSON', '{"model_name":', 400, /not valid JSON/],
      ['not an object', '[1]', 400, /must be a JSON object/],
      ['missing model_name', JSON.stringify({ url: '/x' }), 400, /"model_name" must be a non-empty string/],
      ['missing url', JSON.stringify({ model_name: 'x' }), 400, /"url" must be a non-empty string/],
      [
        'relative url',
        JSON.stringify({ model_name: 'x', url: 'models/x' }),
        400,
        /is not an absolute path, a file:\/\/ URL or an s3:\/\/ URL/,
      ],
      ['url in /proc', JSON.stringify({ model_name: 'x', url: '/proc/self' }), 400, /leads into \/proc/],
      [
        'missing directory',
        JSON.stringify({ model_name: 'x', url: '/nonexistent/model' }),
        400,
        /model artifact not found: \/nonexistent\/model/,
      ],
      [
        'control characters',
        JSON.stringify({ model_name: 'a\nb', url: '/x' }),
        400,
        /control character \(U\+000A\)/,
      ],
      [
        'a C1 control (NEL)',
        JSON.stringify({ model_name: 'a\u0085b', url: '/x' }),
        400,
        /control character \(U\+0085\) at position 1/,
      ],
      [
        'a bidi override',
        JSON.stringify({ model_name: 'invoice\u202Egpj.exe', url: '/x' }),
        400,
        /bidirectional formatting character \(U\+202E\) at position 7/,
      ],
      ['a bidi isolate', JSON.stringify({ model_name: 'x\u2066y', url: '/x' }), 400, /U\+2066/],
    ])('400 for %s', async (_label, body, status, message) => {
      const r = await request(stack.url, 'POST', '/models', body, { 'content-type': 'application/json' });
      expect(r.status).toBe(status);
      expect(r.json().error).toMatch(message);
      await expectUntouched('x');
    });

    test.each([
      ['GET', '/models/a%00b'],
      ['GET', '/models/a%00b/status'],
      ['DELETE', '/models/a%00b'],
      ['POST', '/models/a%00b/invoke'],
      ['GET', '/models/a%E2%80%AEb'],
    ])('%s %s: a name no model can have is a 400 naming the character, not a 404', async (method, route) => {
      const r = await request(stack.url, method, route, method === 'POST' ? '{}' : undefined, {
        'content-type': 'application/json',
      });
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(
        /"model name" contains a (control|bidirectional formatting) character \(U\+(0000|202E)\) at position 1/,
      );
    });

    test('415 for a non-JSON content type', async () => {
      const r = await request(stack.url, 'POST', '/models', 'model_name=x', {
        'content-type': 'application/x-www-form-urlencoded',
      });
      expect(r.status).toBe(415);
    });

    test.each([
      [
        'a typo in the platform',
        'platform: "pytorch_libtorh"',
        /unexpected platform type 'pytorch_libtorh' for resnet/,
      ],
      [
        'a backend paired with another platform',
        'platform: "tensorrt_plan"\nbackend: "pytorch"',
        /unexpected 'platform' and 'backend' pair, got:tensorrt_plan, pytorch/,
      ],
    ])(
      '400 for %s, in Triton’s words, and validate refuses it with the same words',
      async (_l, head, words) => {
        const config = resnetPtConfig().replace('platform: "pytorch_libtorch"', head);
        const url = await sagemakerArtifact(stack.models, `typo${head.length}`, 'resnet', {
          config,
          versions: { '1': { 'model.pt': 1 } },
        });
        const r = await load(`typo${head.length}`, url);
        expect(r.status).toBe(400);
        expect(r.json().error).toMatch(words);
        await expectUntouched(`typo${head.length}`);
        const report = await validateArtifact(url);
        expect(report.valid).toBe(false);
        expect(report.findings.map((f) => f.message).join('\n')).toMatch(words);
      },
    );

    test('a folder whose model.pt links out of it (to /etc/passwd) is refused as the same layout in an archive is, with validate’s words', async () => {
      const url = await sagemakerArtifact(stack.models, 'linked', 'resnet', {
        config: resnetPtConfig(),
        versions: { '1': { 'model.pt': 1 } },
      });
      const file = path.join(url, 'resnet', '1', 'model.pt');
      await fs.rm(file);
      await fs.symlink('/etc/passwd', file);
      const words = "resnet/1/model.pt links to '/etc/passwd', outside the artifact";
      const r = await load('linked', url);
      expect(r.status).toBe(400);
      expect(r.json().error).toContain(words);
      await expectUntouched('linked');
      const report = await validateArtifact(url);
      expect(report.valid).toBe(false);
      expect(report.findings.map((f) => `${f.where} ${f.message}`)).toContainEqual(
        expect.stringContaining(words),
      );
    });

    test('400 naming the line of a broken config.pbtxt, nothing staged', async () => {
      const url = await sagemakerArtifact(stack.models, 'broken', 'resnet', {
        config:
          'name: "resnet"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\ninput { name: "I" data_type: TYPE_FLOAT32 dims: 1 }',
        versions: { '1': { 'model.pt': 1 } },
      });
      const r = await load('broken', url);
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(/resnet\/config\.pbtxt:4:\d+: unknown enumeration value TYPE_FLOAT32/);
      await expectUntouched('broken');
    });

    test('400 for a model without a version directory, or two models and no ensemble', async () => {
      const noVersion = await sagemakerArtifact(stack.models, 'nov', 'resnet', {
        config: resnetPtConfig(),
        versions: {},
      });
      expect((await load('nov', noVersion)).json().error).toMatch(/no numeric version directory/);
      const two = await sagemakerArtifact(stack.models, 'two', 'a', identity('a'));
      await sagemakerArtifact(stack.models, 'two', 'b', identity('b'));
      const r = await load('two', two);
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(/holds 2 models \(a, b\) and no ensemble/);
      await expectUntouched('two');
    });

    test("400 with Triton's reason when Triton rejects the model; files removed", async () => {
      const url = await sagemakerArtifact(stack.models, 'nofile', 'resnet', {
        config: resnetPtConfig(),
        versions: { '1': { 'weights.bin': 1 } },
      });
      const r = await load('nofile', url);
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(
        /model 'nofile' failed to load: load failed for model '.*': version 1 is at UNAVAILABLE state: Unavailable: unable to find/,
      );
      await expectUntouched('nofile');
    });

    test('507 when Triton runs out of GPU memory; files removed, other models untouched', async () => {
      const ok = await sagemakerArtifact(stack.models, 'ok', 'm', identity('m'));
      expect((await load('ok', ok)).status).toBe(200);
      const url = await sagemakerArtifact(stack.models, 'big', 'resnet', {
        config: resnetPtConfig({ gpuBytes: 64 * MiB }),
        versions: { '1': { 'model.pt': 1 } },
      });
      const r = await load('big', url);
      expect(r.status).toBe(507);
      expect(r.json().error).toMatch(/CUDA out of memory/);
      expect((await request(stack.url, 'GET', '/models/big')).status).toBe(404);
      // The agent may have evicted 'ok' to try to make room; it is still registered and answers.
      expect((await request(stack.url, 'GET', '/models/ok')).status).toBe(200);
      const inv = await request(stack.url, 'POST', '/models/ok/invoke', {
        inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [2], data: [1, 2] }],
      });
      expect(inv.status).toBe(200);
      expect(await repositoryDirs(stack.repository)).toEqual([tritonNameFor('ok')]);
      expect(stack.emulator.loadedModels()).toEqual([tritonNameFor('ok')]);
    });

    test('the two launch-post artifacts both named resnet load side by side', async () => {
      const { pt, trt } = await launchPostArtifacts(stack.models);
      expect((await load('resnet_pt_v0.tar.gz', pt)).status).toBe(200);
      expect((await load('resnet_trt_v0.tar.gz', trt)).status).toBe(200);
      const names = await repositoryDirs(stack.repository);
      expect(names).toHaveLength(2);
      expect(names.every((n) => n.startsWith('resnet_'))).toBe(true);
      expect((await triton.modelMetadata(tritonNameFor('resnet_pt_v0.tar.gz'))).platform).toBe(
        'pytorch_libtorch',
      );
      expect((await triton.modelMetadata(tritonNameFor('resnet_trt_v0.tar.gz'))).platform).toBe(
        'tensorrt_plan',
      );
    });

    test('an ensemble artifact: members renamed with the same prefix, unloaded together', async () => {
      const url = path.join(stack.models, 'ens1', 'model');
      await sagemakerArtifact(stack.models, 'ens1', 'pre', {
        config: identityConfig('pre', [{ type: 'TYPE_FP32', dims: [3] }]),
        versions: { '1': { 'model.py': 1 } },
      });
      await sagemakerArtifact(stack.models, 'ens1', 'pipeline', {
        config: `name: "pipeline"
platform: "ensemble"
input { name: "X" data_type: TYPE_FP32 dims: [3] }
output { name: "Y" data_type: TYPE_FP32 dims: [3] }
ensemble_scheduling { step { model_name: "pre" model_version: -1 input_map { key: "INPUT0" value: "X" } output_map { key: "OUTPUT0" value: "Y" } } }`,
        versions: { '1': {} },
      });
      expect((await load('ens1', url)).status).toBe(200);
      const top = tritonNameFor('ens1');
      expect(await repositoryDirs(stack.repository)).toEqual([top, `${top}--pre`]);
      const staged = readModelConfig(
        parsePbtxt(await fs.readFile(path.join(stack.repository, top, 'config.pbtxt'), 'utf8')),
      );
      expect(staged.ensembleSteps[0].modelName).toBe(`${top}--pre`);
      const inv = await request(stack.url, 'POST', '/models/ens1/invoke', {
        inputs: [{ name: 'X', datatype: 'FP32', shape: [3], data: [1, 2, 3] }],
      });
      expect(inv.status).toBe(200);
      expect(inv.json().outputs).toEqual([{ name: 'Y', datatype: 'FP32', shape: [3], data: [1, 2, 3] }]);
      expect((await request(stack.url, 'DELETE', '/models/ens1')).status).toBe(200);
      expect(stack.emulator.loadedModels()).toEqual([]);
      expect(await repositoryDirs(stack.repository)).toEqual([]);
    });

    test('model names are opaque: slashes and dots never escape the repository', async () => {
      const url = await sagemakerArtifact(stack.models, 'n1', 'm', identity('m'));
      for (const name of ['dir/resnet_pt_v0.tar.gz', '../../etc/passwd', '.', '..']) {
        expect((await load(name, url)).status).toBe(200);
      }
      // '.' and '..' cannot be addressed in a URL path (clients normalise them away); the others can.
      for (const name of ['dir/resnet_pt_v0.tar.gz', '../../etc/passwd']) {
        const get = await request(stack.url, 'GET', `/models/${encodeURIComponent(name)}`);
        expect(get.status).toBe(200);
        expect(get.json().modelName).toBe(name);
      }
      const listed = (await request(stack.url, 'GET', '/models')).json().models as { modelName: string }[];
      expect(listed.map((m) => m.modelName)).toEqual([
        '.',
        '..',
        '../../etc/passwd',
        'dir/resnet_pt_v0.tar.gz',
      ]);
      const dirs = await repositoryDirs(stack.repository);
      expect(dirs).toHaveLength(4);
      for (const d of dirs) expect(d).toMatch(/^[A-Za-z0-9_.-]+-[0-9a-f]{12}$/);
      // Nothing was written outside the repository.
      expect((await fs.readdir(path.dirname(stack.repository))).sort()).toEqual([
        'opt-ml-models',
        'repository',
      ]);
    });
  });

  describe('GET /models and GET|DELETE /models/<name>', () => {
    test('list with working pagination in a stable order', async () => {
      const url = await sagemakerArtifact(stack.models, 'p', 'm', identity('m'));
      const names = ['e', 'b', 'a', 'd', 'c'];
      for (const n of names) expect((await load(n, url)).status).toBe(200);
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const q = `?max_results=2${token ? `&next_page_token=${encodeURIComponent(token)}` : ''}`;
        const r = await request(stack.url, 'GET', `/models${q}`);
        expect(r.status).toBe(200);
        const body = r.json() as {
          models: { modelName: string; modelUrl: string }[];
          nextPageToken?: string;
        };
        expect(body.models.length).toBeLessThanOrEqual(2);
        for (const m of body.models) expect(m.modelUrl).toBe(url);
        seen.push(...body.models.map((m) => m.modelName));
        token = body.nextPageToken;
        pages++;
      } while (token);
      expect(pages).toBe(3);
      expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
      const all = (await request(stack.url, 'GET', '/models')).json();
      expect(all).toEqual({
        models: ['a', 'b', 'c', 'd', 'e'].map((n) => ({ modelName: n, modelUrl: url })),
      });
      expect((await request(stack.url, 'GET', '/models?max_results=0')).status).toBe(400);
      expect((await request(stack.url, 'GET', '/models?next_page_token=garbage')).status).toBe(400);
    });

    test.each([
      ['max_results[]=2'],
      ['max_results=2&max_results=3'],
      ['max_results[a]=2'],
      ['next_page_token[]=x'],
      // Past the query parser's default of 1,000 pairs, a repeated key is still seen.
      [`${'x=1&'.repeat(1000)}max_results=1&max_results=2`],
    ])('400 for an array-style query parameter: %s', async (q) => {
      const r = await request(stack.url, 'GET', `/models?${q}`);
      expect(r.status).toBe(400);
      expect(r.json().error).toMatch(
        /query parameter '(max_results|next_page_token)' must be given once, as a plain value/,
      );
    });

    test('GET and DELETE of an unknown model are 404', async () => {
      const get = await request(stack.url, 'GET', '/models/nope');
      expect(get.status).toBe(404);
      expect(get.json()).toEqual({ error: "model 'nope' is not loaded" });
      expect((await request(stack.url, 'DELETE', '/models/nope')).status).toBe(404);
      const status = await request(stack.url, 'GET', '/models/nope/status');
      expect(status.status).toBe(404);
      expect(status.json()).toEqual({ error: "model 'nope' is not known" });
    });

    test('DELETE unloads, waits for Triton, removes the staged directory, keeps the SageMaker directory', async () => {
      stack.emulator.setLatency({ unloadMs: 100 });
      const url = await sagemakerArtifact(stack.models, 'del', 'm', identity('m'));
      await load('del', url);
      const r = await request(stack.url, 'DELETE', '/models/del');
      expect(r.status).toBe(200);
      // Resources are reclaimed by the time DELETE answers.
      expect(await triton.repositoryIndex()).not.toContainEqual(
        expect.objectContaining({ state: 'UNLOADING' }),
      );
      expect(stack.emulator.loadedModels()).toEqual([]);
      expect(await repositoryDirs(stack.repository)).toEqual([]);
      expect(await fs.readdir(url)).toEqual(['m']);
      expect((await request(stack.url, 'GET', '/models/del')).status).toBe(404);
      // It can be loaded again.
      expect((await load('del', url)).status).toBe(200);
    });

    test('wrong methods are 405 and unknown routes 404', async () => {
      expect((await request(stack.url, 'PUT', '/models')).status).toBe(405);
      expect((await request(stack.url, 'POST', '/models/x')).status).toBe(405);
      expect((await request(stack.url, 'GET', '/models/x/invoke')).status).toBe(405);
      expect((await request(stack.url, 'GET', '/invocations')).status).toBe(405);
      const r = await request(stack.url, 'GET', '/v2/health/ready');
      expect(r.status).toBe(404);
      expect(r.json()).toEqual({ error: 'no route for GET /v2/health/ready' });
    });
  });

  describe('errors are always JSON (issue 8)', () => {
    /** Sends `text` as written on a fresh connection; resolves with all the agent answers until it closes. */
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(new URL(stack.url).port), '127.0.0.1', () => socket.write(text));
        let data = '';
        socket.on('data', (c) => (data += c.toString()));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });

    test("regression: what Node's HTTP parser refuses is JSON too (headers too large, a bad method)", async () => {
      const big = await raw(
        `GET /models/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(20_000)}\r\n\r\n`,
      );
      expect(big).toMatch(/^HTTP\/1.1 431 /);
      expect(JSON.parse(big.split('\r\n\r\n')[1])).toEqual({ error: 'request headers are too large' });
      const bad = await raw('FOO /models HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(bad).toMatch(/^HTTP\/1.1 400 /);
      expect(JSON.parse(bad.split('\r\n\r\n')[1]).error).toMatch(/^malformed HTTP request/);
      // On SageMaker Runtime's route the same refusals come in its shape: a ValidationError.
      const runtimeBad = await raw('POST /endpoints/e/invocations HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
      expect(runtimeBad).toMatch(/^HTTP\/1.1 400 /);
      expect(runtimeBad).toMatch(/\r\nx-amzn-ErrorType: ValidationError\r\n/);
      expect(JSON.parse(runtimeBad.split('\r\n\r\n')[1]).Message).toMatch(/^malformed HTTP request/);
      const runtimeBig = await raw(
        `POST /endpoints/e/invocations HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(20_000)}\r\n\r\n`,
      );
      expect(runtimeBig).toMatch(/^HTTP\/1.1 400 /);
      expect(runtimeBig).toMatch(/\r\nx-amzn-ErrorType: ValidationError\r\n/);
      expect(JSON.parse(runtimeBig.split('\r\n\r\n')[1])).toEqual({
        Message: 'request headers are too large',
      });
    });

    test('a request without Host and an Expect other than 100-continue are JSON errors with a request id', async () => {
      const parse = (answer: string) => {
        const [head, body] = answer.split('\r\n\r\n');
        return { head, json: JSON.parse(body) as Record<string, unknown> };
      };
      const noHost = parse(await raw('GET /ping HTTP/1.1\r\n\r\n'));
      expect(noHost.head).toMatch(/^HTTP\/1.1 400 /);
      expect(noHost.head).toMatch(/\r\nx-amzn-requestid: \S+/i);
      expect(noHost.json).toEqual({ error: 'an HTTP/1.1 request needs a Host header' });
      // HTTP/1.0 has no Host requirement.
      expect(await raw('GET /ping HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1.1 200 /);
      const expectation = parse(
        await raw('POST /models/x/invoke HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n'),
      );
      expect(expectation.head).toMatch(/^HTTP\/1.1 417 /);
      expect(expectation.head).toMatch(/\r\nx-amzn-requestid: \S+/i);
      expect(expectation.json.error).toMatch(/Expect header '200-ok' cannot be met/);
      // The Runtime route answers in its own shape.
      const runtime = parse(
        await raw(
          'POST /endpoints/e/invocations HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n',
        ),
      );
      expect(runtime.head).toMatch(/^HTTP\/1.1 400 /);
      expect(runtime.head).toMatch(/\r\nx-amzn-errortype: ValidationError/i);
      // 100-continue is met as before.
      const continued = await raw(
        'GET /ping HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
      );
      expect(continued).toMatch(/^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 /);
      // What Node meets, the agent serves: 100-continue among others, and any Expect on HTTP/1.0.
      const twice = await raw(
        'GET /ping HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
      );
      expect(twice).toMatch(/^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 /);
      expect(await raw('GET /ping HTTP/1.0\r\nExpect: 200-ok\r\n\r\n')).toMatch(/^HTTP\/1.1 200 /);
      // Runtime-shaped answers follow the router's case rules.
      const upper = parse(await raw('POST /Endpoints/e/invocations HTTP/1.1\r\nContent-Length: 0\r\n\r\n'));
      expect(upper.head).toMatch(/\r\nx-amzn-errortype: /i);
    });

    test('regression: a malformed percent-escape in the path is a 400 JSON error, not an HTML stack trace', async () => {
      for (const [method, p] of [
        ['GET', '/models/%ZZ'],
        ['DELETE', '/models/%E0%A4%A'],
        ['GET', '/models/%ZZ/status'],
        ['POST', '/models/%ZZ/invoke'],
      ]) {
        const r = await request(stack.url, method, p, method === 'POST' ? '{}' : undefined);
        expect([method, p, r.status]).toEqual([method, p, 400]);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        const body = r.body.toString();
        expect(body).not.toMatch(/<html|<pre|node_modules|at .*\(/i);
        expect(JSON.parse(body).error).toMatch(/malformed percent-escape/);
      }
    });

    test('a malformed percent-escape in an endpoint name is a ValidationError on the Runtime route', async () => {
      const r = await request(stack.url, 'POST', '/endpoints/%ZZ/invocations', '{}');
      expect(r.status).toBe(400);
      expect(r.headers.get('x-amzn-errortype')).toBe('ValidationError');
      expect(String(r.json().Message)).toMatch(/malformed percent-escape/);
    });

    test('regression: the 413 of POST /models names its fixed 1 MiB limit, not AGENT_MAX_BODY_BYTES', async () => {
      const big = JSON.stringify({ model_name: 'x', url: '/x', pad: 'p'.repeat(MiB) });
      const r = await request(stack.url, 'POST', '/models', big, { 'content-type': 'application/json' });
      expect(r.status).toBe(413);
      const error = String(r.json().error);
      expect(error).toMatch(/limit of 1048576 bytes \(the fixed limit of POST \/models\)/);
      expect(error).not.toMatch(/AGENT_MAX_BODY_BYTES/);
    });

    test("every response carries a request id: SageMaker's when it sends one, else a fresh one", async () => {
      const given = await request(stack.url, 'GET', '/models', undefined, { 'X-Amzn-RequestId': 'req-123' });
      expect(given.headers.get('x-amzn-requestid')).toBe('req-123');
      const a = await request(stack.url, 'GET', '/ping');
      const b = await request(stack.url, 'GET', '/nope');
      expect(a.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
      expect(b.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
      expect(a.headers.get('x-amzn-requestid')).not.toBe(b.headers.get('x-amzn-requestid'));
      // An id that cannot go into a header or a log line as it is is replaced, not echoed.
      const odd = await request(stack.url, 'GET', '/models', undefined, { 'X-Amzn-RequestId': 'a b' });
      expect(odd.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
});
