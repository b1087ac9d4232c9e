/**
 * The Triton conformance suite (test/conformance) against the emulator: what the agent expects of Triton's
 * control plane, checked here in CI and by hand against a real tritonserver (`npm run conformance`).
 */
import { CHECKS, runConformance } from '../conformance/triton-conformance';
import { tempDir } from '../support/model-repo';
import { TritonEmulator } from '../support/triton-emulator';

describe('Triton conformance suite against the emulator', () => {
  let repo: { dir: string; cleanup: () => Promise<void> };
  let emulator: TritonEmulator;
  beforeAll(async () => {
    repo = await tempDir('conformance-');
    emulator = await TritonEmulator.start({ modelRepository: repo.dir, metricsIntervalMs: 20, gpuCount: 2 });
  });
  afterAll(async () => {
    await emulator.stop();
    await repo.cleanup();
  });

  test.each(CHECKS.map((c) => [c.name]))('%s', async (name) => {
    const [result] = await runConformance(
      { grpc: emulator.grpcAddress, metrics: emulator.metricsUrl, repository: repo.dir },
      name,
    );
    expect(result).toMatchObject({ name, outcome: 'passed' });
  });
});
