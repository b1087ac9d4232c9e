import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Copy, DockerfileParser, Label, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import ts from 'typescript';
import { parse as parseYaml } from 'yaml';
import { startStack } from '../support/agent-harness';

const ROOT = path.join(__dirname, '..', '..');
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

/** Instruction arguments as written (quotes kept), joined by single spaces. */
const argsOf = (i: Instruction) =>
  i
    .getArguments()
    .map((a) => a.getValue())
    .join(' ');

describe('one Triton release, agreed on everywhere (deploy/triton-release.json)', () => {
  const pins = JSON.parse(read('deploy/triton-release.json')) as Record<string, string>;
  const release = pins.tritonRelease;

  test('the image, its SageMaker variant, the plan builder and the export script name the same release', () => {
    const docker = read('Dockerfile');
    expect(docker).toContain(`ARG TRITON_IMAGE=${pins.tritonImage}\n`);
    expect(docker).toContain(`ARG SAGEMAKER_TRITON_IMAGE=${pins.sagemakerTritonImage}\n`);
    expect(pins.tritonImage.endsWith(`:${release}-py3`)).toBe(true);
    expect(pins.sagemakerTritonImage.endsWith(`:${release}-py3`)).toBe(true);
    // The plan builder defaults to the TensorRT of the same release; the export script checks torch.
    expect(read('triton-models/build_trt_plan.sh')).toContain('triton-release.json');
    expect(read('triton-models/export_resnet50.py')).toContain('triton-release.json');
    // libtorch of the release = the torch the export asks for.
    expect(pins.torch).toBe(pins.libtorch);
  });

  test("the export script refuses a torch other than the release's libtorch (a newer one may save ops it lacks)", () => {
    const check = spawnSync(
      'python3',
      [
        '-c',
        [
          'import sys, types, runpy',
          `fake = types.ModuleType("torch"); fake.__version__ = "9.9.0+cpu"; sys.modules["torch"] = fake`,
          'sys.argv = ["export_resnet50.py", "--out", "/nonexistent/out"]',
          'runpy.run_path("triton-models/export_resnet50.py", run_name="__main__")',
        ].join('\n'),
      ],
      { cwd: ROOT, encoding: 'utf8' },
    );
    expect(check.status).not.toBe(0);
    expect(check.stderr).toContain(`Triton ${release} loads TorchScript with libtorch ${pins.libtorch}`);
    expect(check.stderr).toContain(`torch==${pins.torch}.* torchvision==${pins.torchvision}.*`);
  });

  test('the deploy script sets the SageMaker inference AMI whose driver runs that release', () => {
    const dry = spawnSync(
      'python3',
      [
        'deploy/sagemaker/deploy_endpoint.py',
        '--dry-run',
        '--name',
        'e',
        '--image',
        '123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:1',
        '--model-data-url',
        's3://bucket/prefix/',
        '--role-arn',
        'arn:aws:iam::123456789012:role/R',
      ],
      { cwd: ROOT, encoding: 'utf8' },
    );
    expect(dry.status).toBe(0);
    const steps = JSON.parse(dry.stdout) as { operation: string; params: Record<string, unknown> }[];
    const config = steps.find((s) => s.operation === 'create_endpoint_config');
    expect(config?.params.ProductionVariants).toEqual([
      expect.objectContaining({ InferenceAmiVersion: pins.inferenceAmiVersion }),
    ]);
  });

  test('the README states the release, its driver floor and the AMI, and which image to use for SageMaker', () => {
    const readme = read('README.md');
    expect(readme).toContain(`Triton ${release}`);
    expect(readme).toContain(pins.inferenceAmiVersion);
    expect(readme).toContain('TRITON_BASE=sagemaker');
    expect(readme).toMatch(/driver/i);
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  const dockerfile = DockerfileParser.parse(text);
  const initialArgs = new Map(
    dockerfile.getInitialARGs().map((a) => [a.getProperty()?.getName(), a.getProperty()?.getValue() ?? '']),
  );
  const resolve = (image: string) =>
    image.replace(/\$\{?(\w+)\}?/g, (_m, v: string) => initialArgs.get(v) ?? '');
  const froms = dockerfile.getFROMs();
  /** The final stage's instructions: everything after the last FROM. */
  const finalStage = dockerfile
    .getInstructions()
    .filter((i) => i.getRange().start.line > froms[froms.length - 1].getRange().start.line);
  const final = (keyword: string) => finalStage.filter((i) => i.getKeyword() === keyword);

  test('lints clean with dockerfile-utils (and the linter does catch mistakes)', () => {
    expect(validate(text)).toEqual([]);
    const broken = text
      .replace('EXPOSE 8080', 'EXPOSE http')
      .replace(/^FROM \$\{NODE_IMAGE\} AS deps$/m, 'FROM');
    expect(validate(broken).length).toBeGreaterThanOrEqual(2);
  });

  test('multi-stage: build and production-dependency stages on pinned Node.js 22, final stage on a pinned Triton', () => {
    expect(froms.map((f) => f.getBuildStage())).toEqual([
      'build',
      'deps',
      'triton-nvidia',
      'triton-sagemaker',
      'runtime',
    ]);
    const images = froms.map((f) => resolve(f.getImage() ?? ''));
    expect(images[0]).toMatch(/^node:22\.\d+\.\d+-[a-z]+(-slim)?$/);
    expect(images[1]).toBe(images[0]);
    expect(images[2]).toMatch(/^nvcr\.io\/nvidia\/tritonserver:\d{2}\.\d{2}-py3$/);
    expect(images[3]).toMatch(
      /^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com\/sagemaker-tritonserver:\d{2}\.\d{2}-py3$/,
    );
    // TRITON_BASE picks one of the two (NVIDIA's by default).
    expect(images[4]).toBe('triton-nvidia');
    // The runtime stage gets production dependencies only and Node.js from the build stage.
    const depsStage = dockerfile
      .getInstructions()
      .filter(
        (i) =>
          i.getRange().start.line > froms[1].getRange().start.line &&
          i.getRange().start.line < froms[2].getRange().start.line,
      );
    expect(depsStage.some((i) => i.getKeyword() === 'RUN' && /npm ci --omit=dev/.test(argsOf(i)))).toBe(true);
    const copiesFrom = final('COPY')
      .filter((c): c is Copy => c instanceof Copy)
      .map((c) => [
        c
          .getFlags()
          .find((f) => f.getName() === 'from')
          ?.getValue(),
        argsOf(c),
      ]);
    expect(copiesFrom).toContainEqual(['deps', '/src/node_modules ./node_modules']);
    expect(copiesFrom).toContainEqual(['build', '/src/dist ./dist']);
    expect(copiesFrom).toContainEqual(['build', '/usr/local/bin/node /usr/local/bin/node']);
  });

  test("SageMaker's labels, the serve entry point, non-root, port 8080", () => {
    const labels = new Map(
      final('LABEL')
        .filter((l): l is Label => l instanceof Label)
        .flatMap((l) => l.getProperties().map((p) => [p.getName(), p.getValue()])),
    );
    expect(labels.get('com.amazonaws.sagemaker.capabilities.multi-models')).toBe('true');
    expect(labels.get('com.amazonaws.sagemaker.capabilities.accept-bind-to-port')).toBe('true');
    // `docker run <image> serve`: the entry point runs its arguments; `serve` is on PATH and the default.
    expect(final('ENTRYPOINT').map(argsOf)).toEqual(['["/opt/nvidia/nvidia_entrypoint.sh"]']);
    expect(final('CMD').map(argsOf)).toEqual(['["serve"]']);
    expect(final('RUN').map(argsOf).join(' ')).toContain(
      'ln -s /opt/agent/scripts/serve /usr/local/bin/serve',
    );
    expect(final('COPY').map(argsOf)).toContain('scripts/serve ./scripts/serve');
    const user = final('USER').map(argsOf);
    expect(user).toHaveLength(1);
    const runAs = finalStage.find((i) => i.getKeyword() === 'ARG' && argsOf(i).startsWith('RUN_AS='));
    expect(runAs && argsOf(runAs)).toBe('RUN_AS=triton-server');
    expect(user[0]).toBe('${RUN_AS}');
    expect(final('EXPOSE').map(argsOf)).toEqual(['8080']);
    expect(final('ENV').map(argsOf).join(' ')).toContain('TRITON_MANAGED=true');
  });

  test('every file the build copies from the context exists and passes .dockerignore', () => {
    const patterns = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    // Docker's rule: the last pattern that matches a path decides. The file uses `*` and `!path` only.
    expect(patterns.every((p) => p === '*' || /^![\w./-]+$/.test(p))).toBe(true);
    const included = (p: string) => {
      let inc = true;
      for (const pat of patterns) {
        if (pat === '*') inc = false;
        else {
          const allowed = pat.slice(1).replace(/\/$/, '');
          if (p === allowed || p.startsWith(`${allowed}/`)) inc = true;
        }
      }
      return inc;
    };
    const sources = dockerfile
      .getCOPYs()
      .filter((c) => !c.getFlags().some((f) => f.getName() === 'from'))
      .flatMap((c) =>
        c
          .getArguments()
          .slice(0, -1)
          .map((a) => a.getValue()),
      );
    expect(sources.length).toBeGreaterThan(5);
    for (const s of sources) {
      expect([s, fs.existsSync(path.join(ROOT, s))]).toEqual([s, true]);
      expect([s, included(s)]).toEqual([s, true]);
    }
    expect(included('node_modules')).toBe(false);
    expect(included('triton-models/dist/resnet_pt_v0.tar.gz')).toBe(false);
    expect(fs.statSync(path.join(ROOT, 'scripts', 'serve')).mode & 0o111).not.toBe(0);
  });
});

describe('npm run build (what the image ships)', () => {
  test('compiles src only: no tests, benchmarks or scripts in the production output', () => {
    const r = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
        '-p',
        'tsconfig.build.json',
        '--listFilesOnly',
      ],
      { cwd: ROOT, encoding: 'utf8' },
    );
    expect(r.status).toBe(0);
    const ours = r.stdout
      .split('\n')
      .filter((f) => f && !f.includes(`${path.sep}node_modules${path.sep}`))
      .map((f) => path.relative(ROOT, f));
    expect(ours).toContain(path.join('src', 'main.ts'));
    expect(ours).toContain(path.join('src', 'cli.ts'));
    expect(ours.filter((f) => !f.startsWith(`src${path.sep}`))).toEqual([]);
  });

  test('every package src imports is a production dependency (the image installs no others)', () => {
    const { dependencies } = JSON.parse(read('package.json')) as Record<string, Record<string, string>>;
    const walk = (d: string): string[] =>
      fs
        .readdirSync(d, { withFileTypes: true })
        .flatMap((e) =>
          e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.ts') ? [path.join(d, e.name)] : [],
        );
    const imported = new Map<string, string>();
    for (const file of walk(path.join(ROOT, 'src'))) {
      for (const i of ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true).importedFiles) {
        const m = i.fileName;
        if (m.startsWith('.') || m.startsWith('node:')) continue;
        imported.set(
          m.startsWith('@') ? m.split('/').slice(0, 2).join('/') : m.split('/')[0],
          path.relative(ROOT, file),
        );
      }
    }
    expect(imported.size).toBeGreaterThan(5);
    expect([...imported].filter(([name]) => !(name in dependencies))).toEqual([]);
  });
});

interface ComposeService {
  image?: string;
  build?: unknown;
  profiles?: string[];
  ports?: { published: number | string; target: number }[];
  environment?: Record<string, string>;
  deploy?: { resources?: { reservations?: { devices?: { driver: string; capabilities: string[] }[] } } };
  depends_on?: Record<string, { condition: string }>;
  volumes?: ({ source?: string; target: string } | string)[];
  command?: string[] | string;
}

/** Bind mounts as { source, target }, from either the short (`src:target:mode`) or the long form. */
function mounts(svc: ComposeService): { source: string; target: string }[] {
  return (svc.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source ?? '', target: v.target };
    const [source, target] = v.split(':');
    return { source, target };
  });
}

/** `docker-compose` from Debian's package, installed by .ci/run. */
function composeBinary(): string | undefined {
  const r = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? 'docker-compose' : undefined;
}

const compose = composeBinary();
if (!compose && process.env.CI === 'true') {
  // In CI a missing compose implementation is a failure, never a silent skip.
  test('docker-compose is installed (.ci/run installs it)', () => {
    expect(compose).toBeDefined();
  });
}
const describeCompose = compose ? describe : describe.skip;

describeCompose('docker-compose.yml, validated by docker-compose config', () => {
  const config = (profile: string, file = path.join(ROOT, 'docker-compose.yml')) =>
    spawnSync(compose as string, ['--profile', profile, '-f', file, 'config'], {
      cwd: path.dirname(file),
      encoding: 'utf8',
      env: { ...process.env, COMPOSE_PROJECT_NAME: 'mme' },
    });
  const parsed = new Map<string, Record<string, ComposeService>>();
  const services = (profile: string): Record<string, ComposeService> => {
    const cached = parsed.get(profile);
    if (cached) return cached;
    const r = config(profile);
    expect(r.stderr).not.toMatch(/ERROR/);
    expect(r.status).toBe(0);
    const out = (parseYaml(r.stdout) as { services: Record<string, ComposeService> }).services;
    parsed.set(profile, out);
    return out;
  };

  test('the configuration is valid, and an invalid one is refused', () => {
    expect(config('gpu').status).toBe(0);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compose-'));
    try {
      const bad = path.join(dir, 'docker-compose.yml');
      fs.writeFileSync(bad, read('docker-compose.yml').replace('count: 1', 'count: [1]'));
      const r = config('gpu', bad);
      expect(r.status).not.toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('profiles: gpu and cpu pick one of the two agents; the other services always run', () => {
    const s = services('gpu');
    expect(Object.fromEntries(Object.entries(s).map(([name, svc]) => [name, svc.profiles ?? []]))).toEqual({
      agent: ['gpu'],
      'agent-cpu': ['cpu'],
      grafana: [],
      minio: [],
      'models-bucket': [],
      prometheus: [],
    });
  });

  test('the gpu profile reserves an NVIDIA GPU for the agent, on port 8080', () => {
    const s = services('gpu');
    expect(s.agent.deploy?.resources?.reservations?.devices).toEqual([
      { driver: 'nvidia', count: 1, capabilities: ['gpu'] },
    ]);
    expect(s.agent.ports).toEqual([expect.objectContaining({ published: 8080, target: 8080 })]);
    expect(s.agent.command).toEqual(['serve']);
    expect(s.agent.depends_on?.['models-bucket']).toEqual({ condition: 'service_completed_successfully' });
  });

  test('the cpu profile runs the same image without a GPU and without eviction', () => {
    const s = services('cpu');
    expect(s['agent-cpu'].deploy).toBeUndefined();
    expect(s['agent-cpu'].image).toBe(services('gpu').agent.image);
    expect(s['agent-cpu'].environment).toMatchObject({ AGENT_EVICTION_POLICY: 'none' });
  });

  test('MODEL_DATA_URL names the bucket and prefix the one-shot job uploads to, on the MinIO service', () => {
    const s = services('gpu');
    const env = s.agent.environment ?? {};
    const m = /^s3:\/\/([^/]+)\/(.+\/)$/.exec(env.MODEL_DATA_URL ?? '');
    expect(m).not.toBeNull();
    const [, bucket, prefix] = m as RegExpExecArray;
    expect(env).toMatchObject({ AWS_ENDPOINT_URL_S3: 'http://minio:9000', S3_FORCE_PATH_STYLE: 'true' });
    const script = ([] as string[]).concat(s['models-bucket'].command ?? []).join('\n');
    expect(script).toContain(`mc mb --ignore-existing local/${bucket}`);
    expect(script).toContain(`mc cp /artifacts/*.tar.gz local/${bucket}/${prefix}`);
    expect(script).toContain(
      `mc alias set local ${env.AWS_ENDPOINT_URL_S3} ${env.AWS_ACCESS_KEY_ID} ${env.AWS_SECRET_ACCESS_KEY}`,
    );
    const mount = mounts(s['models-bucket'])[0];
    expect(path.relative(ROOT, mount.source)).toBe(path.join('triton-models', 'dist'));
    expect(mount.target).toBe('/artifacts');
  });

  test("Prometheus scrapes the agent and the Triton ports serve gives it; Grafana's dashboard is provisioned", () => {
    const s = services('gpu');
    const env = s.agent.environment ?? {};
    // The Triton metrics port the serve script chooses for this environment.
    const printed = spawnSync(path.join(ROOT, 'scripts', 'serve'), ['--print-env'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      encoding: 'utf8',
    });
    const tritonMetrics = new URL(/TRITON_METRICS_URL=(.*)/.exec(printed.stdout)?.[1] ?? '').port;
    const prom = parseYaml(read('deploy/compose/prometheus/prometheus.yml')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(
      prom.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((x) => x.targets)]),
    );
    expect(targets.agent).toEqual(expect.arrayContaining(['agent:8080', 'agent-cpu:8080']));
    expect(targets.triton).toEqual(
      expect.arrayContaining([`agent:${tritonMetrics}`, `agent-cpu:${tritonMetrics}`]),
    );
    const binds = mounts(s.prometheus).concat(mounts(s.grafana));
    expect(binds.length).toBe(3);
    for (const v of binds) expect([v.source, fs.existsSync(v.source)]).toEqual([v.source, true]);
    const home = s.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '';
    const hostPath = binds
      .filter((v) => home.startsWith(`${v.target}/`))
      .map((v) => path.join(v.source, home.slice(v.target.length + 1)))[0];
    const dashboard = JSON.parse(fs.readFileSync(hostPath, 'utf8')) as {
      panels: { title: string; datasource: { uid: string }; targets: { expr: string }[] }[];
    };
    const datasources = parseYaml(read('deploy/compose/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string; url: string }[];
    };
    expect(datasources.datasources[0].url).toBe('http://prometheus:9090');
    for (const p of dashboard.panels) expect(p.datasource.uid).toBe(datasources.datasources[0].uid);
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join(' | ');
    for (const topic of [
      'loaded models',
      'cold loads',
      'loading wait',
      'evictions',
      'gpu memory',
      'latency split',
    ])
      expect(titles).toContain(topic);
  });

  test('every image is pinned to a version', () => {
    for (const profile of ['gpu', 'cpu']) {
      for (const [name, svc] of Object.entries(services(profile))) {
        if (svc.build) continue;
        expect([name, svc.image]).toEqual([name, expect.stringMatching(/:(v?\d[\w.-]*|RELEASE\.[\w.-]+)$/)]);
      }
    }
  });
});

describe('the Grafana dashboard', () => {
  test("queries only metrics the agent and Triton (the emulator's copy of its names) expose", async () => {
    const dashboard = JSON.parse(read('deploy/compose/grafana/dashboards/sagemaker-mme-agent.json')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const functions = new Set(['histogram_quantile', 'sum', 'rate', 'max', 'avg', 'by', 'le', 'increase']);
    const used = new Set(
      dashboard.panels
        .flatMap((p) =>
          p.targets.map((t) => t.expr.replace(/\{[^}]*\}|\[[^\]]*\]|\b(by|without)\s*\([^)]*\)/g, ' ')),
        )
        .flatMap((e) => e.match(/[a-z_][a-z0-9_]*/g) ?? [])
        .filter((w) => !functions.has(w) && w.includes('_')),
    );
    expect(used.size).toBeGreaterThan(10);
    const stack = await startStack();
    try {
      const names = new Set<string>();
      for (const url of [`${stack.url}/metrics`, stack.emulator.metricsUrl]) {
        const text = await (await fetch(url)).text();
        for (const m of text.matchAll(/^# TYPE (\S+) (\w+)/gm)) {
          names.add(m[1]);
          if (m[2] === 'histogram') for (const x of ['_bucket', '_sum', '_count']) names.add(m[1] + x);
        }
      }
      expect([...used].filter((n) => !names.has(n))).toEqual([]);
    } finally {
      await stack.stop();
    }
  });
});
