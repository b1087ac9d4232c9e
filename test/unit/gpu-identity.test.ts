import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { cudaOrdinals, parseNvidiaSmi, readGpuMap } from '../../src/triton';
import { tempDir } from '../support/model-repo';

/** Four GPUs as nvidia-smi lists them on a p4d-like host: UUIDs random, bus ids not in UUID order. */
const SMI = [
  '0, GPU-f1e2d3c4-0000-4000-8000-000000000000, 00000000:10:1C.0',
  '1, GPU-0a0b0c0d-0000-4000-8000-000000000000, 00000000:10:1D.0',
  '2, GPU-77777777-0000-4000-8000-000000000000, 00000000:20:1C.0',
  '3, GPU-33333333-0000-4000-8000-000000000000, 00000000:20:1D.0',
].join('\n');

const ordinalsOf = (visible?: string) => {
  const map = cudaOrdinals(parseNvidiaSmi(SMI), visible);
  return map.kind === 'known' ? map.gpus.map((g) => [g.ordinal, g.uuid.slice(4, 12)]) : map.reason;
};

describe('GPU identity: UUID to CUDA ordinal', () => {
  test('CUDA counts GPUs in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID), never in UUID order', () => {
    expect(ordinalsOf()).toEqual([
      [0, 'f1e2d3c4'],
      [1, '0a0b0c0d'],
      [2, '77777777'],
      [3, '33333333'],
    ]);
    // Listed in another order, the bus ids still decide.
    const shuffled = SMI.split('\n').reverse().join('\n');
    const map = cudaOrdinals(parseNvidiaSmi(shuffled), undefined);
    expect(map.kind === 'known' && map.gpus.map((g) => g.uuid.slice(4, 12))).toEqual([
      'f1e2d3c4',
      '0a0b0c0d',
      '77777777',
      '33333333',
    ]);
  });

  test('CUDA_VISIBLE_DEVICES as CUDA reads it: indices, UUIDs or their prefixes; the list ends at an unknown entry', () => {
    expect(ordinalsOf('2,0')).toEqual([
      [0, '77777777'],
      [1, 'f1e2d3c4'],
    ]);
    expect(ordinalsOf('GPU-33333333,GPU-0a0b')).toEqual([
      [0, '33333333'],
      [1, '0a0b0c0d'],
    ]);
    expect(ordinalsOf('1,9,2')).toEqual([[0, '0a0b0c0d']]);
    expect(ordinalsOf('')).toEqual([]);
    expect(ordinalsOf('MIG-1234')).toMatch(/MIG device/);
    expect(ordinalsOf('1,1')).toMatch(/twice/);
  });

  test('nvidia-smi missing, failing or saying something else: unknown, with the reason (never a guessed order)', async () => {
    const dir = await tempDir('smi-');
    try {
      const missing = await readGpuMap({
        bin: path.join(dir.dir, 'nope'),
        visibleDevices: undefined,
        timeoutMs: 5000,
      });
      expect(missing.kind).toBe('unknown');
      const failing = path.join(dir.dir, 'failing');
      await fs.writeFile(
        failing,
        '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver" >&2\nexit 9\n',
        {
          mode: 0o755,
        },
      );
      const failed = await readGpuMap({ bin: failing, visibleDevices: undefined, timeoutMs: 5000 });
      expect(failed.kind === 'unknown' && failed.reason).toMatch(
        /could not communicate with the NVIDIA driver/,
      );
      const odd = path.join(dir.dir, 'odd');
      await fs.writeFile(odd, '#!/bin/sh\necho "No devices were found"\n', { mode: 0o755 });
      expect(await readGpuMap({ bin: odd, visibleDevices: undefined, timeoutMs: 5000 })).toMatchObject({
        kind: 'unknown',
      });
      const slow = path.join(dir.dir, 'slow');
      await fs.writeFile(slow, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
      expect((await readGpuMap({ bin: slow, visibleDevices: undefined, timeoutMs: 200 })).kind).toBe(
        'unknown',
      );
      const good = path.join(dir.dir, 'good');
      await fs.writeFile(good, `#!/bin/sh\ncat <<'EOF'\n${SMI}\nEOF\n`, { mode: 0o755 });
      const map = await readGpuMap({ bin: good, visibleDevices: '3', timeoutMs: 5000 });
      expect(map.kind === 'known' && [...map.ordinals]).toEqual([
        ['GPU-33333333-0000-4000-8000-000000000000', 0],
      ]);
    } finally {
      await dir.cleanup();
    }
  });
});
