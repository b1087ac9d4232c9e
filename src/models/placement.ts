import type { InstanceGroup } from '../model-config';

/**
 * How the agent places a model's instances on a multi-GPU instance:
 * - `triton-default`: as Triton does by default, one instance on every GPU (each model takes memory on
 *   every device: the instance holds as many models as one GPU does);
 * - `pack`: each model on one GPU, the one it fits best, written into the staged config's instance_group;
 * - `adaptive`: as `pack`, and a model whose traffic one instance cannot keep up with gets instances on
 *   more GPUs (where there is room), and gives them back when it cools.
 */
export type PlacementMode = 'triton-default' | 'pack' | 'adaptive';

/** Where one model goes: nowhere on a GPU, every GPU, the GPUs its artifact names, or one the agent picks. */
export type Placement =
  | { kind: 'cpu' }
  /** `unpin`: the artifact named GPUs the agent was told to ignore; its config is rewritten to all of them. */
  | { kind: 'all'; unpin?: boolean }
  | { kind: 'fixed'; devices: number[] }
  /** `unpin`: as for 'all'; its GPUs are written even on an instance with one GPU. */
  | { kind: 'choose'; unpin?: boolean };

/** Whether an artifact's `instance_group` that names GPUs keeps them, or leaves them to the placement. */
export type ArtifactGpus = 'respect' | 'ignore';

/**
 * The placement of a model from its config's instance groups. CPU-only models are never placed on a GPU;
 * GPU groups that name their GPUs keep them, unless `artifactGpus` is `ignore` (configs copied from a
 * single-GPU setup often pin everything to GPU 0).
 */
export function placementOf(
  groups: readonly InstanceGroup[],
  mode: PlacementMode,
  artifactGpus: ArtifactGpus = 'respect',
): Placement {
  const onGpu = groups.filter((g) => g.kind === 'KIND_GPU' || g.kind === 'KIND_AUTO');
  if (groups.length > 0 && onGpu.length === 0) return { kind: 'cpu' };
  const pinned = onGpu.length > 0 && onGpu.some((g) => g.gpus.length > 0);
  if (pinned && artifactGpus === 'respect' && onGpu.every((g) => g.gpus.length > 0))
    return { kind: 'fixed', devices: [...new Set(onGpu.flatMap((g) => g.gpus))].sort((a, b) => a - b) };
  if (mode !== 'triton-default')
    return pinned && artifactGpus === 'ignore' ? { kind: 'choose', unpin: true } : { kind: 'choose' };
  return pinned && artifactGpus === 'ignore' ? { kind: 'all', unpin: true } : { kind: 'all' };
}
