import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { launchPostArtifacts, request, startStack, type Stack } from '../support/agent-harness';
import { tempDir } from '../support/model-repo';
import { S3Harness } from '../support/s3-harness';

/**
 * The Python scripts as a new user runs them: real subprocesses, failures read from their stderr. No test
 * reaches AWS: every run gets AWS_ENDPOINT_URL on a closed loopback port unless it names a loopback
 * stand-in, no credentials unless it sets them, and no config or credentials file.
 */
const ROOT = path.join(__dirname, '..', '..');
const DEPLOY = 'deploy/sagemaker/deploy_endpoint.py';
const UPLOAD = 'triton-models/upload.py';
const INVOKE = 'examples/invoke_resnet.py';

// Child processes (boto3's import, Pillow's preprocessing in pure Python) are slow on a busy 2-core machine.
jest.setTimeout(90_000);

/** boto3 and Pillow are installed by .ci/run; without them these tests cannot run. */
const hasPython = spawnSync('python3', ['-c', 'import boto3, PIL'], { encoding: 'utf8' }).status === 0;
const run = hasPython || process.env.CI === 'true' ? test : test.skip;
if (!hasPython && process.env.CI !== 'true')
  console.warn('skipping the Python script tests: pip install boto3 pillow');

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stderr's non-empty lines. */
  lines: string[];
}

let closedUrl = '';

/** The machine's environment without any AWS setting, plus `extra`. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('AWS_') && !k.startsWith('S3_')) env[k] = v;
  return {
    ...env,
    PYTHONDONTWRITEBYTECODE: '1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/nonexistent/aws-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
    AWS_MAX_ATTEMPTS: '1',
    // The safety net: whatever a script calls goes to a closed loopback port, never to AWS.
    AWS_ENDPOINT_URL: closedUrl,
    ...extra,
  };
}

/** Runs a script asynchronously (the loopback servers answer from this process's event loop). */
function python(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', args, {
      cwd: ROOT,
      env: cleanEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (status) =>
      resolve({ status, stdout, stderr, lines: stderr.split('\n').filter((l) => l.trim()) }),
    );
  });
}

/** The exit status and stderr of a run, for one assertion that shows both when it fails. */
const outcome = (r: Ran) => ({ status: r.status, stderr: r.lines });

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A loopback stand-in for an AWS service: records each request and answers every one the same way. */
class FakeAws {
  readonly seen: Seen[] = [];
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(answer: {
    status: number;
    headers?: Record<string, string>;
    body: string;
  }): Promise<FakeAws> {
    const holder: { fake?: FakeAws } = {};
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        holder.fake?.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
        res.writeHead(answer.status, {
          'content-length': Buffer.byteLength(answer.body),
          ...answer.headers,
        });
        res.end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fake = new FakeAws(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    holder.fake = fake;
    return fake;
  }

  /** The region each request was signed for (SigV4's credential scope). */
  regions(): string[] {
    return this.seen.map(
      (s) => /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(String(s.headers.authorization))?.[1] ?? '?',
    );
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** SageMaker and Application Auto Scaling speak JSON 1.1: the error's type in `__type`. */
const json11Error = (type: string, message: string) => ({
  status: 400,
  headers: { 'content-type': 'application/x-amz-json-1.1' },
  body: JSON.stringify({ __type: type, message }),
});

/** SageMaker Runtime speaks restJson1: the error's type in `x-amzn-ErrorType`. */
const runtimeError = (type: string, message: string) => ({
  status: 400,
  headers: { 'content-type': 'application/json', 'x-amzn-ErrorType': type },
  body: JSON.stringify({ Message: message }),
});

/** S3 answers errors in XML. */
const s3Error = (status: number, code: string, message: string) => ({
  status,
  headers: { 'content-type': 'application/xml' },
  body: `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`,
});

/** The arguments of an argparse --help text whose help names neither a default nor that it is required. */
function argumentsWithoutDefault(help: string): string[] {
  const entries: string[] = [];
  let inSection = false;
  for (const line of help.split('\n')) {
    if (/^(positional arguments|options):$/.test(line)) inSection = true;
    else if (!line.trim()) inSection = false;
    else if (inSection && /^ {2}\S/.test(line)) entries.push(line.trim());
    else if (inSection) entries[entries.length - 1] += ` ${line.trim()}`;
  }
  expect(entries.length).toBeGreaterThan(2);
  return entries.filter((e) => !e.startsWith('-h, --help') && !/default|required/i.test(e));
}

let work: { dir: string; cleanup: () => Promise<void> };
let fakes: FakeAws[] = [];
beforeAll(async () => {
  work = await tempDir('python-scripts-');
  // A port nothing listens on: taken, then released.
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  await new Promise((resolve) => probe.close(resolve));
});
afterEach(async () => {
  await Promise.all(fakes.map((f) => f.stop()));
  fakes = [];
});
afterAll(async () => {
  await work.cleanup();
});

async function fake(answer: Parameters<typeof FakeAws.start>[0]): Promise<FakeAws> {
  const f = await FakeAws.start(answer);
  fakes.push(f);
  return f;
}

describe('deploy/sagemaker/deploy_endpoint.py', () => {
  const base = [
    DEPLOY,
    '--name',
    'resnet-mme',
    '--image',
    '123456789012.dkr.ecr.us-east-1.amazonaws.com/triton-sagemaker-mme-agent:0.1.0',
    '--model-data-url',
    's3://my-bucket/resnet-mme-gpu/',
    '--role-arn',
    'arn:aws:iam::123456789012:role/SageMakerExecutionRole',
  ];
  const keys = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' };
  const denied = json11Error(
    'AccessDeniedException',
    'User: arn:aws:iam::123456789012:user/me is not authorized to perform: sagemaker:CreateModel',
  );

  run(
    "only AWS_REGION set (as the docs' docker run sets it): no NoRegionError, the calls go to that region",
    async () => {
      const sagemaker = await fake(denied);
      const r = await python(base, {
        ...keys,
        AWS_REGION: 'eu-west-1',
        AWS_ENDPOINT_URL_SAGEMAKER: sagemaker.url,
      });
      expect(sagemaker.regions()).toEqual(['eu-west-1']);
      expect(r.stderr).not.toContain('NoRegionError');
      expect(outcome(r)).toEqual({ status: 1, stderr: [expect.stringContaining('CreateModel refused')] });
    },
  );

  run(
    'the region comes from --region, else AWS_REGION, else AWS_DEFAULT_REGION, else the profile',
    async () => {
      const sagemaker = await fake(denied);
      const profile = path.join(work.dir, 'aws-config');
      await fs.writeFile(profile, '[default]\nregion = ap-south-1\n');
      const env = { ...keys, AWS_ENDPOINT_URL_SAGEMAKER: sagemaker.url };
      const runs = [
        await python([...base, '--region', 'us-west-2'], {
          ...env,
          AWS_REGION: 'eu-west-1',
          AWS_DEFAULT_REGION: 'eu-west-2',
        }),
        await python(base, { ...env, AWS_REGION: 'eu-west-1', AWS_DEFAULT_REGION: 'eu-west-2' }),
        await python(base, { ...env, AWS_DEFAULT_REGION: 'eu-west-2', AWS_CONFIG_FILE: profile }),
        await python(base, { ...env, AWS_CONFIG_FILE: profile }),
      ];
      expect(runs.map((r) => r.status)).toEqual([1, 1, 1, 1]);
      expect(sagemaker.regions()).toEqual(['us-west-2', 'eu-west-1', 'eu-west-2', 'ap-south-1']);
    },
  );

  run(
    'no region anywhere: one line naming --region, AWS_REGION and AWS_DEFAULT_REGION, exit 2, no traceback',
    async () => {
      const r = await python(base, keys);
      expect(outcome(r)).toEqual({
        status: 2,
        stderr: [
          'deploy_endpoint: no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (e.g. AWS_REGION=us-east-1)',
        ],
      });
    },
  );

  run(
    'no credentials, half of them, or an unknown AWS_PROFILE: one line naming the fix, exit 2',
    async () => {
      const region = { AWS_REGION: 'us-east-1' };
      const runs = await Promise.all([
        python(base, region),
        python(base, { ...region, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE' }),
        python(base, { ...region, AWS_PROFILE: 'nope' }),
      ]);
      expect(runs.map(outcome)).toEqual([
        {
          status: 2,
          stderr: [
            expect.stringMatching(
              /^deploy_endpoint: no AWS credentials found: run `aws configure`.*AWS_SECRET_ACCESS_KEY$/,
            ),
          ],
        },
        {
          status: 2,
          stderr: [
            expect.stringMatching(
              /^deploy_endpoint: incomplete AWS credentials .*missing: AWS_SECRET_ACCESS_KEY/,
            ),
          ],
        },
        {
          status: 2,
          stderr: [
            expect.stringMatching(
              /^deploy_endpoint: The config profile \(nope\) could not be found: fix AWS_PROFILE/,
            ),
          ],
        },
      ]);
    },
  );

  run.each([
    [
      'access denied',
      denied,
      /CreateModel refused \(AccessDeniedException: .*\): the credentials need .*iam:PassRole/,
    ],
    [
      'credentials AWS does not know',
      json11Error('UnrecognizedClientException', 'The security token included in the request is invalid.'),
      /UnrecognizedClientException.*AWS does not accept these credentials; run `aws configure`/,
    ],
    [
      'a name already taken',
      json11Error(
        'ValidationException',
        'Cannot create already existing model "arn:aws:sagemaker:us-east-1:123456789012:model/resnet-mme".',
      ),
      /ValidationException.*: pick another --name, or remove the old one with --delete --name/,
    ],
  ])('AWS refusing the first call (%s): one line naming the fix, exit 1', async (_, answer, said) => {
    const sagemaker = await fake(answer);
    const r = await python(base, {
      ...keys,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_SAGEMAKER: sagemaker.url,
    });
    expect(outcome(r)).toEqual({ status: 1, stderr: [expect.stringMatching(said)] });
  });

  run('an unreachable AWS endpoint: one line, exit 1; --debug shows the traceback', async () => {
    const env = { ...keys, AWS_REGION: 'us-east-1' };
    const [plain, debug] = await Promise.all([python(base, env), python([...base, '--debug'], env)]);
    expect(outcome(plain)).toEqual({
      status: 1,
      stderr: [
        expect.stringMatching(
          /^deploy_endpoint: could not reach AWS \(Could not connect to the endpoint URL: .*\): check the network/,
        ),
      ],
    });
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(/^Traceback/m);
    expect(debug.stderr).toContain('botocore.exceptions.EndpointConnectionError');
  });

  run(
    '--help: multi-GPU instance types are accepted and said to be; every option names its default',
    async () => {
      const help = await python([DEPLOY, '--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).not.toMatch(/single-GPU/i);
      expect(help.stdout.replace(/\s+/g, ' ')).toContain('one GPU or several');
      expect(argumentsWithoutDefault(help.stdout)).toEqual([]);
      for (const type of ['ml.g4dn.xlarge', 'ml.g5.12xlarge', 'ml.p4d.24xlarge']) {
        const dry = await python([...base, '--dry-run', '--instance-type', type]);
        const steps = JSON.parse(dry.stdout) as {
          operation: string;
          params: { ProductionVariants?: unknown[] };
        }[];
        expect(
          steps.find((s) => s.operation === 'create_endpoint_config')?.params.ProductionVariants,
        ).toEqual([expect.objectContaining({ InstanceType: type })]);
      }
    },
  );
});

describe('triton-models/upload.py', () => {
  const keys = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' };
  let artifact = '';
  beforeAll(async () => {
    artifact = path.join(work.dir, 'resnet_pt_v0.tar.gz');
    await fs.writeFile(artifact, Buffer.alloc(4096, 1));
  });

  run('no credentials: one line naming the fix, exit 2, no traceback, nothing sent', async () => {
    const store = await fake(s3Error(500, 'InternalError', 'should not be called'));
    const r = await python([UPLOAD, 's3://my-bucket/resnet-mme-gpu/', artifact], {
      AWS_ENDPOINT_URL_S3: store.url,
    });
    expect(outcome(r)).toEqual({
      status: 2,
      stderr: [
        expect.stringMatching(
          /^upload: no AWS credentials found: run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
        ),
      ],
    });
    expect(store.seen).toEqual([]);
  });

  run('half the credentials or an unknown AWS_PROFILE: one line naming the fix, exit 2', async () => {
    const args = [UPLOAD, 's3://my-bucket/resnet-mme-gpu/', artifact];
    const runs = await Promise.all([
      python(args, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE' }),
      python(args, { AWS_PROFILE: 'nope' }),
    ]);
    expect(runs.map(outcome)).toEqual([
      {
        status: 2,
        stderr: [
          expect.stringMatching(
            /^upload: incomplete AWS credentials .*missing: AWS_SECRET_ACCESS_KEY.*: set both/,
          ),
        ],
      },
      {
        status: 2,
        stderr: [
          expect.stringMatching(/^upload: The config profile \(nope\) could not be found: fix AWS_PROFILE/),
        ],
      },
    ]);
  });

  run('access denied by the store: one line naming s3:PutObject on the prefix, exit 1', async () => {
    const store = await fake(s3Error(403, 'AccessDenied', 'Access Denied'));
    const r = await python([UPLOAD, 's3://my-bucket/resnet-mme-gpu', artifact], {
      ...keys,
      AWS_ENDPOINT_URL_S3: store.url,
    });
    expect(store.seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'PUT /my-bucket/resnet-mme-gpu/resnet_pt_v0.tar.gz',
    ]);
    expect(outcome(r)).toEqual({
      status: 1,
      stderr: [
        'upload: S3 refused s3://my-bucket/resnet-mme-gpu/resnet_pt_v0.tar.gz (AccessDenied: Access Denied): ' +
          'the credentials in use need s3:PutObject on s3://my-bucket/resnet-mme-gpu/* (and kms:GenerateDataKey if the bucket encrypts with KMS)',
      ],
    });
  });

  run(
    'a bucket that does not exist (a real S3-compatible server): one line naming `aws s3 mb`, exit 1',
    async () => {
      const s3 = await S3Harness.start(['models']);
      try {
        const r = await python([UPLOAD, 's3://no-such-bucket/resnet-mme-gpu/', artifact], s3.env());
        expect(outcome(r)).toEqual({
          status: 1,
          stderr: [
            "upload: bucket 'no-such-bucket' does not exist: create it (aws s3 mb s3://no-such-bucket) or fix the URL",
          ],
        });
      } finally {
        await s3.stop();
      }
    },
  );

  run(
    'an unreachable store: one line naming AWS_ENDPOINT_URL_S3, exit 1; --debug shows the traceback',
    async () => {
      const args = [UPLOAD, 's3://my-bucket/resnet-mme-gpu/', artifact];
      const env = { ...keys, AWS_ENDPOINT_URL_S3: closedUrl };
      const [plain, debug] = await Promise.all([python(args, env), python([...args, '--debug'], env)]);
      expect(outcome(plain)).toEqual({
        status: 1,
        stderr: [
          expect.stringMatching(
            /^upload: could not reach S3 \(.*\): check that the store is running and AWS_ENDPOINT_URL_S3$/,
          ),
        ],
      });
      expect(debug.stderr).toMatch(/^Traceback/m);
    },
  );

  run(
    'a file that is not there (a glob that matched nothing) or a folder: exit 2 before any upload',
    async () => {
      const store = await fake(s3Error(500, 'InternalError', 'should not be called'));
      const env = { ...keys, AWS_ENDPOINT_URL_S3: store.url };
      const runs = await Promise.all([
        python([UPLOAD, 's3://my-bucket/p/', artifact, 'triton-models/dist/*.tar.gz'], env),
        python([UPLOAD, 's3://my-bucket/p/', work.dir], env),
        python([UPLOAD, 'my-bucket/p/', artifact], env),
      ]);
      expect(runs.map(outcome)).toEqual([
        {
          status: 2,
          stderr: ['upload: no such file: triton-models/dist/*.tar.gz (run triton-models/pack.sh first)'],
        },
        {
          status: 2,
          stderr: [
            expect.stringMatching(/^upload: .* is a folder: pass the packed files, e\.g\. .*\*\.tar\.gz$/),
          ],
        },
        { status: 2, stderr: ["upload: 'my-bucket/p/' is not an S3 prefix: expected s3://bucket/prefix/"] },
      ]);
      expect(store.seen).toEqual([]);
    },
  );

  run('--help exits 0 and names every argument', async () => {
    const help = await python([UPLOAD, '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: upload\.py/);
    expect(argumentsWithoutDefault(help.stdout)).toEqual([]);
  });
});

describe('examples/invoke_resnet.py', () => {
  let image = '';
  beforeAll(async () => {
    image = path.join(work.dir, 'photo.png');
    const made = spawnSync(
      'python3',
      [
        '-c',
        'import sys; from PIL import Image; Image.new("RGB", (320, 240), (120, 60, 200)).save(sys.argv[1])',
        image,
      ],
      { encoding: 'utf8' },
    );
    expect(made.status).toBe(0);
  });

  /** The "<model> (<format>):" headings the client prints before each top-5. */
  const answered = (stdout: string) =>
    stdout
      .split('\n')
      .filter((l) => /^\S+ \((json|binary)\):$/.test(l))
      .map((l) => l.slice(0, -1));

  describe('against a local agent', () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack();
      const { pt, trt } = await launchPostArtifacts(stack.models);
      for (const [name, url] of [
        ['resnet_pt_v0.tar.gz', pt],
        ['resnet_trt_v0.tar.gz', trt],
      ])
        expect((await request(stack.url, 'POST', '/models', { model_name: name, url })).status).toBe(200);
    });
    afterAll(async () => {
      await stack.stop();
    });

    /** A dist folder as pack.sh leaves it, holding the given artifacts. */
    async function dist(name: string, artifacts: string[]): Promise<string> {
      const dir = path.join(work.dir, name);
      await fs.mkdir(dir, { recursive: true });
      for (const a of artifacts) await fs.writeFile(path.join(dir, a), 'packed');
      return dir;
    }

    run(
      'no TensorRT plan packed (pack.sh without a GPU): asks for the PyTorch artifact only and says so, with no credentials configured',
      async () => {
        const ptOnly = await dist('dist-pt', ['resnet_pt_v0.tar.gz']);
        const r = await python([INVOKE, '--endpoint-url', stack.url, '--image', image, '--dist', ptOnly]);
        expect(outcome(r)).toEqual({
          status: 0,
          stderr: [
            `invoke_resnet: asking for resnet_pt_v0.tar.gz only: no TensorRT artifact packed in ${ptOnly}; ` +
              '--models resnet_pt_v0.tar.gz resnet_trt_v0.tar.gz asks for both',
          ],
        });
        expect(answered(r.stdout)).toEqual(['resnet_pt_v0.tar.gz (json)', 'resnet_pt_v0.tar.gz (binary)']);
      },
    );

    run('a TensorRT plan packed: asks for both artifacts', async () => {
      const both = await dist('dist-both', ['resnet_pt_v0.tar.gz', 'resnet_trt_v0.tar.gz']);
      const r = await python([
        INVOKE,
        '--endpoint-url',
        stack.url,
        '--image',
        image,
        '--dist',
        both,
        '--format',
        'json',
      ]);
      expect(outcome(r)).toEqual({ status: 0, stderr: [] });
      expect(answered(r.stdout)).toEqual(['resnet_pt_v0.tar.gz (json)', 'resnet_trt_v0.tar.gz (json)']);
    });

    run(
      'a model the agent does not have: a one-line hint instead of a ValidationError traceback; the others still answered, exit 1',
      async () => {
        const r = await python([
          INVOKE,
          ...['--endpoint-url', stack.url, '--image', image, '--format', 'json'],
          ...['--models', 'resnet_trt_v1.tar.gz', 'resnet_pt_v0.tar.gz'],
        ]);
        expect(outcome(r)).toEqual({
          status: 1,
          stderr: [
            expect.stringMatching(
              /^invoke_resnet: resnet_trt_v1\.tar\.gz: no such model at the endpoint \(ValidationError: model 'resnet_trt_v1\.tar\.gz' is not loaded\): load it first \(POST \/models\) or start the agent with MODEL_DATA_URL .*; the TensorRT artifact exists only where/,
            ),
          ],
        });
        expect(answered(r.stdout)).toEqual(['resnet_pt_v0.tar.gz (json)']);
      },
    );

    run(
      'an agent loading lazily from MODEL_DATA_URL without the TensorRT artifact: the same one-line hint, exit 1',
      async () => {
        const prefix = path.join(work.dir, 'prefix-pt-only');
        await fs.mkdir(prefix);
        const lazy = await startStack({ env: { MODEL_DATA_URL: `file://${prefix}/` } });
        try {
          const r = await python([
            INVOKE,
            ...['--endpoint-url', lazy.url, '--image', image, '--models', 'resnet_trt_v0.tar.gz'],
          ]);
          expect(outcome(r)).toEqual({
            status: 1,
            stderr: [
              expect.stringMatching(
                /^invoke_resnet: resnet_trt_v0\.tar\.gz: no such model at the endpoint \(ValidationError: model artifact not found: .*resnet_trt_v0\.tar\.gz\): put it under the agent's MODEL_DATA_URL \(triton-models\/upload\.py for S3\), or pick another with --models; the TensorRT artifact exists only where/,
              ),
            ],
          });
          expect(answered(r.stdout)).toEqual([]);
        } finally {
          await lazy.stop();
        }
      },
    );

    run('nothing listening at --endpoint-url: one line naming how to start the agent, exit 1', async () => {
      const r = await python([
        INVOKE,
        '--endpoint-url',
        closedUrl,
        '--image',
        image,
        '--models',
        'resnet_pt_v0.tar.gz',
      ]);
      expect(outcome(r)).toEqual({
        status: 1,
        stderr: [
          `invoke_resnet: nothing answers at ${closedUrl}: start the agent (npm start, npm run demo or docker compose up) or fix --endpoint-url`,
        ],
      });
    });
  });

  describe('against SageMaker (a loopback stand-in for SageMaker Runtime)', () => {
    const keys = { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret' };
    const args = (...more: string[]) => [INVOKE, '--endpoint-name', 'resnet-mme', '--image', image, ...more];

    run(
      'no region, no credentials, or no endpoint named: one line each, exit 2, nothing called',
      async () => {
        const runtime = await fake(runtimeError('InternalFailure', 'should not be called'));
        const env = { AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: runtime.url };
        const runs = await Promise.all([
          python(args(), { ...env, ...keys }),
          python(args(), { ...env, AWS_REGION: 'us-east-1' }),
          python([INVOKE, '--image', image], { ...env, ...keys, AWS_REGION: 'us-east-1' }),
        ]);
        expect(runs.map(outcome)).toEqual([
          {
            status: 2,
            stderr: [
              'invoke_resnet: no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (e.g. AWS_REGION=us-east-1)',
            ],
          },
          {
            status: 2,
            stderr: [expect.stringMatching(/^invoke_resnet: no AWS credentials found: run `aws configure`/)],
          },
          {
            status: 2,
            stderr: [
              'invoke_resnet: which endpoint? --endpoint-name NAME for a SageMaker endpoint, or --endpoint-url http://localhost:8080 for a local agent',
            ],
          },
        ]);
        expect(runtime.seen).toEqual([]);
      },
    );

    run(
      'an endpoint that does not exist: one line naming --endpoint-name and the region (from AWS_REGION), exit 1 after one call',
      async () => {
        const runtime = await fake(
          runtimeError('ValidationError', 'Endpoint resnet-mme of account 123456789012 not found.'),
        );
        const r = await python(args('--models', 'resnet_pt_v0.tar.gz', 'resnet_trt_v0.tar.gz'), {
          ...keys,
          AWS_REGION: 'eu-west-1',
          AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: runtime.url,
        });
        expect(outcome(r)).toEqual({
          status: 1,
          stderr: [
            "invoke_resnet: no endpoint 'resnet-mme' in eu-west-1 (ValidationError: Endpoint resnet-mme of account 123456789012 not found.): " +
              'check --endpoint-name and --region (aws sagemaker list-endpoints --region eu-west-1)',
          ],
        });
        expect(runtime.regions()).toEqual(['eu-west-1']);
        expect(runtime.seen.map((s) => s.headers['x-amzn-sagemaker-target-model'])).toEqual([
          'resnet_pt_v0.tar.gz',
        ]);
      },
    );

    run(
      'a TargetModel SageMaker cannot download: a one-line hint per model naming upload.py, exit 1',
      async () => {
        const runtime = await fake(
          runtimeError(
            'ValidationError',
            'Failed to download model data(bucket: my-bucket, key: resnet-mme-gpu/resnet_trt_v0.tar.gz). Please ensure that there is an object located at the URL and that the role passed to CreateModel has permissions to download the model.',
          ),
        );
        const r = await python(
          args('--models', 'resnet_trt_v0.tar.gz', 'resnet_pt_v0.tar.gz', '--format', 'json'),
          {
            ...keys,
            AWS_DEFAULT_REGION: 'us-east-1',
            AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: runtime.url,
          },
        );
        expect(outcome(r)).toEqual({
          status: 1,
          stderr: [
            expect.stringMatching(
              /^invoke_resnet: resnet_trt_v0\.tar\.gz: no such model at the endpoint \(ValidationError: Failed to download model data.*\): upload it under the endpoint's ModelDataUrl \(triton-models\/upload\.py\)/,
            ),
            expect.stringMatching(/^invoke_resnet: resnet_pt_v0\.tar\.gz: no such model at the endpoint/),
          ],
        });
        expect(r.stderr).not.toContain('Traceback');
      },
    );
  });

  run(
    '--help says how to point it at a local agent and that boto3 needs dummy credentials there; every option names its default',
    async () => {
      const help = await python([INVOKE, '--help']);
      expect(help.status).toBe(0);
      const text = help.stdout.replace(/\s+/g, ' ');
      expect(text).toContain(
        '--endpoint-url URL send InvokeEndpoint to a local agent at URL instead of SageMaker, e.g. http://localhost:8080',
      );
      expect(text).toContain('AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local');
      expect(text).toContain('when no credentials are configured this client uses dummy ones');
      expect(argumentsWithoutDefault(help.stdout)).toEqual([]);
    },
  );
});
