import { inspectArtifact, type ArtifactLayout, type Stager } from '../artifacts';
import { messageOf } from '../errors';
import { keptGpus, placeOnGpus } from '../model-config';
import type { Logger } from '../observability';
import { waitForChange, type Clock } from '../time';
import { TritonError, type TritonControl } from '../triton';
import type { Admission } from './admission';
import type { GpuLedger } from './gpu-ledger';
import { isTensorrt, type ModelRecord } from './model-record';

/** What a move between GPUs uses. */
export interface MoveDeps {
  ledger: GpuLedger;
  admission: Admission;
  stager: Stager;
  triton: TritonControl;
  logger: Logger;
  clock: Clock;
  /** Longest the move waits for the room its victims free. */
  roomWaitMs: number;
  loadTimeoutMs: number;
  /** Aborts the wait for room when the agent stops. */
  stopping: AbortSignal;
}

/**
 * Starts moving a resident model's GPU instances to `devices` (see `Lifecycle.rescale`, which makes it the
 * model's one transition). What must hold at once happens before this returns: the checks, the victims'
 * eviction, the room held for the copies. Undefined when the move cannot start (nothing changed);
 * otherwise the move, resolving true when it moved and false when the model stays where it was.
 */
export function startMove(
  deps: MoveDeps,
  record: ModelRecord,
  devices: number[],
  victims: readonly string[],
): Promise<boolean> | undefined {
  const { ledger, admission, stager, triton, logger, clock } = deps;
  const old = record.devices;
  const staged = record.staged;
  if (
    record.state !== 'ready' ||
    !record.artifact ||
    !staged ||
    !record.artifactConfig ||
    old === 'all' ||
    devices.length === 0
  )
    return undefined;
  const bytes = ledger.chargeOf(record.name);
  const next = placeOnGpus(record.artifactConfig, devices);
  const tensorrt = isTensorrt(record.platform);
  const kept = tensorrt || !record.stagedConfig ? new Set<number>() : keptGpus(record.stagedConfig, next);
  // Where a second copy exists while Triton updates the model: every GPU of the new set whose instance
  // is not kept (an added GPU, or one that stays but whose instances are built anew).
  const copies = devices.filter((d) => !kept.has(d));
  const roomNow = copies.every((d) => ledger.freeOn(d) >= bytes);
  if (!roomNow && victims.length === 0) return undefined;
  // The victims' charges turn `freeing` now, and the room they leave is this model's from here on.
  if (!roomNow) admission.evictFor(record, victims);
  const transient = `${record.name}\u0000rescale`;
  if (copies.length > 0) ledger.reserve(transient, bytes, copies, { transient: true });
  const artifactDir = record.artifact.dir;
  const work = (async (): Promise<boolean> => {
    // A move is never urgent: it waits briefly for room, and a DELETE behind it is not held long.
    const deadline = clock.now() + deps.roomWaitMs;
    // Held room is usable once nothing on a GPU with a copy is charged beyond its capacity.
    for (;;) {
      // The held room follows the model's charge (a footprint learned meanwhile).
      if (copies.length > 0)
        ledger.reserve(transient, ledger.chargeOf(record.name), copies, { transient: true });
      if (copies.every((d) => ledger.freeOn(d) >= 0)) break;
      const left = deadline - clock.now();
      if (left <= 0 || deps.stopping.aborted) {
        ledger.cancel(transient);
        logger.info('no room freed in time to move a model between GPUs', { model: record.name, devices });
        return false;
      }
      const change = Promise.race([ledger.next(), ledger.nextSample()]);
      await waitForChange(clock, change, Math.min(left, ledger.untilSettled()), deps.stopping).catch(
        () => undefined,
      );
    }
    let layout: ArtifactLayout | undefined;
    let asked = false;
    try {
      layout = await inspectArtifact(artifactDir);
      await stager.place(layout, staged, devices);
      asked = true;
      await triton.load(record.tritonName, { deadlineMs: deps.loadTimeoutMs });
    } catch (err) {
      const answered = !asked || (err instanceof TritonError && err.answered);
      if (!answered && layout) {
        // No answer: Triton may still be updating the model (a deadline or a dropped connection does not
        // stop it), so its config is left alone and both placements are charged until a later move.
        const both = [...new Set([...old, ...devices])].sort((a, b) => a - b);
        ledger.cancel(transient);
        ledger.move(record.name, both);
        record.devices = both;
        record.stagedConfig = next;
        logger.warn('a move to other GPUs got no answer; counting the model on both sets of GPUs', {
          model: record.name,
          devices: both,
          error: messageOf(err),
        });
        return false;
      }
      // Triton refused the update and kept the old instances; what it allocated meanwhile is released.
      ledger.release(transient);
      if (layout && old.length > 0) await stager.place(layout, staged, old).catch(() => undefined);
      logger.warn('could not move a model to other GPUs; it stays where it was', {
        model: record.name,
        devices,
        error: messageOf(err),
      });
      return false;
    }
    // The held copies were transient: the model's own charge now covers the new set. A TensorRT engine
    // stays on a GPU the model left until the model unloads, so those stay charged.
    const charged = ledger.devicesOf(record.name);
    const retained = tensorrt && charged !== undefined && charged !== 'all' ? charged : [];
    ledger.release(transient);
    ledger.move(
      record.name,
      [...new Set([...devices, ...retained])].sort((a, b) => a - b),
    );
    record.devices = devices;
    record.stagedConfig = next;
    logger.info('model moved to other GPUs', { model: record.name, from: old, to: devices });
    return true;
  })();
  return work;
}
