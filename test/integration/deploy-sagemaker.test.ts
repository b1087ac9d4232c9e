import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

// Child processes (tsx compiling the agent, Python, tritonserver's stand-in) are slow on a busy 2-core machine.
jest.setTimeout(90_000);
const DEPLOY = path.join(ROOT, 'deploy', 'sagemaker');

/** boto3 and botocore are installed by .ci/run; without them the Python tests cannot run. */
const hasBoto3 = spawnSync('python3', ['-c', 'import boto3, botocore'], { encoding: 'utf8' }).status === 0;

describe('deploy/sagemaker (Python, botocore Stubber)', () => {
  // In CI a missing dependency is a failure, never a silent skip; elsewhere say what to install.
  const run = hasBoto3 || process.env.CI === 'true' ? test : test.skip;
  if (!hasBoto3 && process.env.CI !== 'true')
    console.warn('skipping deploy/sagemaker tests: pip install boto3');

  run('deploy_endpoint.py: every request shape, rollback, bad arguments, dry run, delete', () => {
    const r = spawnSync('python3', ['-m', 'unittest', 'discover', '-s', DEPLOY, '-p', 'test_*.py', '-v'], {
      cwd: DEPLOY,
      encoding: 'utf8',
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', AWS_EC2_METADATA_DISABLED: 'true' },
    });
    const ran = /Ran (\d+) tests?/.exec(r.stderr);
    expect({ status: r.status, tail: r.stderr.slice(-3000) }).toEqual({
      status: 0,
      tail: expect.stringMatching(/\nOK\s*$/),
    });
    expect(Number(ran?.[1])).toBeGreaterThanOrEqual(7);
  });
});
