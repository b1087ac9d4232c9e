import { ConfigError, SETTINGS, loadConfig, settingsTable } from '../../src/config';

describe('loadConfig', () => {
  test('defaults', () => {
    const c = loadConfig({ TRITON_MODEL_REPOSITORY: '/models/' });
    expect(c).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      multiModel: true,
      defaultModelName: undefined,
      tritonGrpcUrl: '127.0.0.1:8001',
      tritonMetricsUrl: 'http://127.0.0.1:8002/metrics',
      modelRepository: '/models',
      stagingDir: '/models/.staging',
      stageMode: 'symlink',
      maxBodyBytes: 8 * 1024 * 1024,
      invokeTimeoutMs: 60000,
      unloadTimeoutMs: 350000,
      logLevel: 'info',
    });
  });

  test("SageMaker's names are read", () => {
    const c = loadConfig({
      TRITON_MODEL_REPOSITORY: '/r',
      SAGEMAKER_BIND_TO_PORT: '9090',
      SAGEMAKER_MULTI_MODEL: 'false',
      SAGEMAKER_TRITON_DEFAULT_MODEL_NAME: 'resnet',
      TRITON_GRPC_URL: 'grpc://triton:8001',
    });
    expect(c).toMatchObject({
      port: 9090,
      multiModel: false,
      defaultModelName: 'resnet',
      tritonGrpcUrl: 'triton:8001',
    });
  });

  test('every problem is reported at once, with the variable name', () => {
    let err: unknown;
    try {
      loadConfig({
        SAGEMAKER_BIND_TO_PORT: '80a',
        TRITON_GRPC_URL: 'localhost',
        AGENT_STAGE_MODE: 'hardlink',
        LOG_LEVEL: 'loud',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toContain("SAGEMAKER_BIND_TO_PORT must be a whole number, got '80a'");
    expect(msg).toContain("TRITON_GRPC_URL must be host:port (e.g. 127.0.0.1:8001), got 'localhost'");
    expect(msg).toContain('TRITON_MODEL_REPOSITORY is required');
    expect(msg).toContain("AGENT_STAGE_MODE must be one of symlink, copy, got 'hardlink'");
    expect(msg).toContain("LOG_LEVEL must be one of error, warn, info, debug, got 'loud'");
  });

  test.each([
    ['SAGEMAKER_BIND_TO_PORT', '70000'],
    ['SAGEMAKER_MULTI_MODEL', 'maybe'],
    ['TRITON_METRICS_URL', 'ftp://x/metrics'],
    ['TRITON_MODEL_REPOSITORY', 'relative/path'],
    ['AGENT_MAX_BODY_BYTES', '0'],
  ])('%s=%s is refused', (key, value) => {
    expect(() => loadConfig({ TRITON_MODEL_REPOSITORY: '/r', [key]: value })).toThrow(new RegExp(key));
  });

  test('the settings table lists every setting', () => {
    const table = settingsTable();
    for (const s of SETTINGS) expect(table).toContain(`\`${s.env}\``);
  });
});

test('docs/settings.md shows the current settings table (npm run readme-settings)', async () => {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const readme = await fs.readFile(path.join(__dirname, '..', '..', 'docs', 'settings.md'), 'utf8');
  // Prettier pads markdown tables; compare without the padding.
  const norm = (t: string) => t.replace(/-{3,}/g, '---').replace(/[ \t]+/g, ' ');
  expect(norm(readme)).toContain(norm(settingsTable()));
});
