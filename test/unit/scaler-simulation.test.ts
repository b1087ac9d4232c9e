import { simulateBusy } from '../../bench/multigpu/busy-models';
import { makeModels } from '../../bench/eviction-sim/traces';

// The scaler's decisions driven period by period with the agent's admission, ledger and policy over a
// seeded workload (the simulation bench:multigpu-sim prints): what adaptive placement is for, end to end.
describe('the scaler in the multi-GPU simulation (bench/multigpu/busy-models.ts)', () => {
  test('busy models get a second GPU and every request is answered; packed on one GPU each, requests are lost', async () => {
    const total = makeModels(1000, 1).reduce((a, m) => a + m.sizeBytes, 0);
    const bytes = Math.round(total * 0.05);
    const adaptive = await simulateBusy('adaptive', 4, bytes);
    const pack = await simulateBusy('pack', 4, bytes);
    // Two busy models, each needing 1.3 GPUs of compute: both grow, nothing waits past 60 s.
    expect(adaptive.grown).toBeGreaterThanOrEqual(2);
    expect(adaptive.timedOut).toBe(0);
    expect(adaptive.answered / adaptive.requests).toBeGreaterThan(0.99);
    expect(pack.grown).toBe(0);
    expect(pack.timedOut).toBeGreaterThan(0);
  });
});
