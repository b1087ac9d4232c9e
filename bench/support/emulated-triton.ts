import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { TritonEmulator, type TritonEmulatorOptions } from '../../test/support/triton-emulator';

/** A Triton emulator on its own temporary repository, with a folder beside it for artifacts. */
export interface EmulatedTriton {
  emulator: TritonEmulator;
  repository: string;
  /** Where a bench lays out artifacts (as SageMaker does under /opt/ml/models). */
  models: string;
  /** Stops the emulator and removes its folders. */
  stop(): Promise<void>;
}

export async function startEmulatedTriton(
  prefix: string,
  options: Omit<TritonEmulatorOptions, 'modelRepository'>,
): Promise<EmulatedTriton> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const repository = path.join(root, 'repository');
  const models = path.join(root, 'models');
  await fs.mkdir(repository);
  await fs.mkdir(models);
  const emulator = await TritonEmulator.start({ ...options, modelRepository: repository });
  return {
    emulator,
    repository,
    models,
    stop: async () => {
      await emulator.stop();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}
