import type { GpuSample } from '../../src/models';

/** A GPU sample of `count` empty devices of `totalBytes` each (tests and simulations start from it). */
export function emptyGpus(count: number, totalBytes: number, at = 0): GpuSample {
  return {
    at,
    devices: Array.from({ length: count }, (_, i) => ({
      uuid: `GPU-${i}`,
      ordinal: i,
      usedBytes: 0,
      totalBytes,
    })),
  };
}
