import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { validateArtifact } from '../../src/validate';
import { startStack, type Stack } from '../support/agent-harness';
import { tempDir } from '../support/model-repo';
import { S3Harness } from '../support/s3-harness';
import { classifierScores } from '../support/triton-emulator';

const ROOT = path.join(__dirname, '..', '..');

// Child processes (tsx compiling the agent, Python, tritonserver's stand-in) are slow on a busy 2-core machine.
jest.setTimeout(90_000);

/** The example client needs boto3 and Pillow (installed by .ci/run). */
const hasPython = spawnSync('python3', ['-c', 'import boto3, PIL'], { encoding: 'utf8' }).status === 0;
const run = hasPython || process.env.CI === 'true' ? test : test.skip;
if (!hasPython && process.env.CI !== 'true')
  console.warn('skipping the examples test: pip install boto3 pillow');

function python(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('python3', args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
  });
  if (r.status !== 0) throw new Error(`python3 ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function pythonAsync(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', args, {
      cwd: ROOT,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`python3 ${args.join(' ')} exited ${code}: ${stderr}`)),
    );
  });
}

describe('the launch post end to end: pack.sh, validate, upload.py, invoke_resnet.py through the agent', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let stack: Stack | undefined;
  let s3: S3Harness | undefined;
  beforeEach(async () => {
    work = await tempDir('examples-');
  });
  afterEach(async () => {
    await stack?.stop();
    await s3?.stop();
    await work.cleanup();
  });

  run('both artifacts, JSON and binary+json, top-5 as the emulator computes it', async () => {
    // Stand-in weights (the emulator checks the files exist and sizes GPU memory from them).
    const workspace = path.join(work.dir, 'workspace');
    const dist = path.join(work.dir, 'dist');
    await fs.mkdir(workspace);
    await fs.writeFile(path.join(workspace, 'model.pt'), Buffer.alloc(1 << 20, 1));
    await fs.writeFile(path.join(workspace, 'model.plan'), Buffer.alloc(1 << 20, 2));
    const packed = spawnSync(path.join(ROOT, 'triton-models', 'pack.sh'), [], {
      encoding: 'utf8',
      env: { ...process.env, WORKSPACE: workspace, OUT: dist, VALIDATE: '0' },
    });
    expect(packed.status).toBe(0);
    for (const name of ['resnet_pt_v0.tar.gz', 'resnet_trt_v0.tar.gz']) {
      const listing = spawnSync('tar', ['-tzf', path.join(dist, name)], { encoding: 'utf8' }).stdout;
      expect(listing.split('\n').filter(Boolean).sort()).toEqual(
        [
          'resnet/',
          'resnet/1/',
          'resnet/config.pbtxt',
          `resnet/1/${name.includes('trt') ? 'model.plan' : 'model.pt'}`,
        ].sort(),
      );
      const report = await validateArtifact(path.join(dist, name));
      expect([name, report.valid, report.findings]).toEqual([name, true, []]);
    }

    // A photo-like image, preprocessed by the example itself (Pillow), and its request body for curl.
    const image = path.join(work.dir, 'photo.jpg');
    python([
      '-c',
      'import random,sys; from PIL import Image; random.seed(7); im=Image.new("RGB",(320,240)); ' +
        'im.putdata([(random.randrange(256),random.randrange(256),random.randrange(256)) for _ in range(320*240)]); ' +
        'im.save(sys.argv[1])',
      image,
    ]);
    const requests = path.join(work.dir, 'requests');
    python(['examples/invoke_resnet.py', '--image', image, '--save-request', requests]);
    const body = JSON.parse(await fs.readFile(path.join(requests, 'resnet_pt_v0.json'), 'utf8')) as {
      inputs: { name: string; shape: number[]; data: number[] }[];
    };
    expect(body.inputs[0]).toMatchObject({ name: 'INPUT__0', shape: [1, 3, 224, 224] });
    const binary = await fs.readFile(path.join(requests, 'resnet_trt_v0.bin'));
    const contentType = await fs.readFile(path.join(requests, 'resnet_trt_v0.content-type'), 'utf8');
    const headerSize = Number(/json-header-size=(\d+)$/.exec(contentType)?.[1]);
    expect(binary.length - headerSize).toBe(4 * 3 * 224 * 224);

    // The expected top-5: the emulator's documented stand-in function on the same input, ordered as the
    // client orders (score descending, then class index).
    const labels = (await fs.readFile(path.join(ROOT, 'examples', 'imagenet_classes.txt'), 'utf8')).split(
      '\n',
    );
    const scores = classifierScores(Float32Array.from(body.inputs[0].data), 1000);
    const expected = [...scores.keys()]
      .sort((a, b) => scores[b] - scores[a] || a - b)
      .slice(0, 5)
      .map((i) => labels[i]);

    // Uploaded with the upload script to an S3-compatible store, then loaded lazily by TargetModel from
    // there, as the compose stack does with MinIO.
    s3 = await S3Harness.start(['models']);
    const uploaded = await pythonAsync(
      [
        'triton-models/upload.py',
        's3://models/resnet-mme-gpu/',
        ...['pt', 'trt'].map((k) => path.join(dist, `resnet_${k}_v0.tar.gz`)),
      ],
      s3.env(),
    );
    expect(uploaded.trim().split('\n')).toEqual([
      's3://models/resnet-mme-gpu/resnet_pt_v0.tar.gz',
      's3://models/resnet-mme-gpu/resnet_trt_v0.tar.gz',
    ]);
    stack = await startStack({ env: { ...s3.env(), MODEL_DATA_URL: 's3://models/resnet-mme-gpu/' } });
    // Asynchronously: the agent answers from this process's event loop. By default the client asks for
    // each artifact pack.sh packed into --dist: here both.
    const out = await pythonAsync(
      ['examples/invoke_resnet.py', '--endpoint-url', stack.url, '--image', image, '--dist', dist],
      {
        AWS_ACCESS_KEY_ID: 'local',
        AWS_SECRET_ACCESS_KEY: 'local',
        AWS_EC2_METADATA_DISABLED: 'true',
      },
    );
    const answers = new Map<string, string[]>();
    let current = '';
    for (const line of out.split('\n')) {
      const head = /^(\S+) \((json|binary)\):$/.exec(line);
      if (head) answers.set((current = `${head[1]} ${head[2]}`), []);
      else if (line.trim()) answers.get(current)?.push(line.trim().replace(/^\d+\.\d+%\s+/, ''));
    }
    expect(Object.fromEntries(answers)).toEqual({
      'resnet_pt_v0.tar.gz json': expected,
      'resnet_pt_v0.tar.gz binary': expected,
      'resnet_trt_v0.tar.gz json': expected,
      'resnet_trt_v0.tar.gz binary': expected,
    });
  });
});
