import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { startStack, type Stack } from '../support/agent-harness';
import { tempDir } from '../support/model-repo';

/**
 * docs/local.md's ResNet-50 recipe, literally, on a machine without a GPU or torch: pack (only the
 * PyTorch artifact: no TensorRT plan was built), validate (pack.sh runs it), the agent with
 * MODEL_DATA_URL=file://…/dist/, and the example client with its defaults and no AWS credentials.
 * Stand-in weights replace export_resnet50.py's output (the emulator does not read them).
 */
const ROOT = path.join(__dirname, '..', '..');
jest.setTimeout(90_000);

const hasPython = spawnSync('python3', ['-c', 'import boto3, PIL'], { encoding: 'utf8' }).status === 0;
const run = hasPython || process.env.CI === 'true' ? test : test.skip;

/** Runs a command to its end without blocking this process's event loop (the agent answers from it). */
function exec(
  cmd: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('the local ResNet-50 recipe of docs/local.md', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let stack: Stack | undefined;
  beforeEach(async () => {
    work = await tempDir('recipe-');
  });
  afterEach(async () => {
    await stack?.stop();
    await work.cleanup();
  });

  run(
    'pack → validate → agent with MODEL_DATA_URL=file://…/dist/ → the example client, PyTorch by default',
    async () => {
      const workspace = path.join(work.dir, 'workspace');
      const dist = path.join(work.dir, 'dist');
      await fs.mkdir(workspace);
      await fs.writeFile(path.join(workspace, 'model.pt'), Buffer.alloc(1 << 20, 1));
      // Without the AWS variables a developer's shell may carry: the recipe needs none.
      const env: Record<string, string | undefined> = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')),
      );
      const packed = await exec(path.join(ROOT, 'triton-models', 'pack.sh'), [], {
        ...env,
        WORKSPACE: workspace,
        OUT: dist,
      });
      expect(packed.status).toBe(0);
      expect(packed.stdout).toMatch(/skipped resnet_trt_v0\.tar\.gz/);
      // pack.sh validated what it packed with the agent's own validator.
      expect(packed.stdout).toMatch(/resnet_pt_v0\.tar\.gz.*valid/);
      expect(await fs.readdir(dist)).toEqual(['resnet_pt_v0.tar.gz']);

      stack = await startStack({ env: { MODEL_DATA_URL: `file://${dist}/` } });
      const image = path.join(work.dir, 'dog.png');
      const made = await exec(
        'python3',
        [
          '-c',
          'import sys; from PIL import Image; Image.new("RGB", (320, 240), (90, 140, 30)).save(sys.argv[1])',
          image,
        ],
        env,
      );
      expect(made.status).toBe(0);
      const client = await exec(
        'python3',
        ['examples/invoke_resnet.py', '--endpoint-url', stack.url, '--image', image, '--dist', dist],
        { ...env, PYTHONDONTWRITEBYTECODE: '1' },
      );
      expect([client.status, client.stderr]).toEqual([
        0,
        expect.stringMatching(/asking for resnet_pt_v0\.tar\.gz only/),
      ]);
      const headings = client.stdout.split('\n').filter((l) => /^\S+ \((json|binary)\):$/.test(l));
      expect(headings).toEqual(['resnet_pt_v0.tar.gz (json):', 'resnet_pt_v0.tar.gz (binary):']);
      // Loaded lazily from the packed file, as the docs say.
      expect(stack.emulator.loadedModels()).toHaveLength(1);
    },
  );
});
