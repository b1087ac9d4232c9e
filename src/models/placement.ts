import type { InstanceGroup } from '../triton';

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
  { kind: 'cpu' } | { kind: 'all' } | { kind: 'fixed'; devices: number[] } | { kind: 'choose' };

/**
 * The placement of a model from its config's instance groups. An artifact's own choice is respected:
 * CPU-only models are never placed on a GPU, and GPU groups that name their GPUs keep them.
 */
export function placementOf(groups: readonly InstanceGroup[], mode: PlacementMode): Placement {
  const onGpu = groups.filter((g) => g.kind === 'KIND_GPU' || g.kind === 'KIND_AUTO');
  if (groups.length > 0 && onGpu.length === 0) return { kind: 'cpu' };
  if (onGpu.length > 0 && onGpu.every((g) => g.gpus.length > 0))
    return { kind: 'fixed', devices: [...new Set(onGpu.flatMap((g) => g.gpus))].sort((a, b) => a - b) };
  return mode === 'triton-default' ? { kind: 'all' } : { kind: 'choose' };
}
