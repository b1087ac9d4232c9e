import { execFile } from 'node:child_process';

/**
 * Which CUDA device each GPU is.
 *
 * Triton labels its `nv_gpu_*` metrics with `gpu_uuid` only, and real UUIDs are random, so their order
 * says nothing about CUDA's ordinals — yet the agent writes ordinals into `instance_group.gpus` and reads
 * them back from `memory_usage.id`. The map comes from `nvidia-smi` (present in every NVIDIA container),
 * ordered by PCI bus id, with `CUDA_DEVICE_ORDER=PCI_BUS_ID` set for the managed tritonserver so that CUDA
 * counts the same way, and `CUDA_VISIBLE_DEVICES` applied as CUDA applies it. Where that cannot be known,
 * the answer is `unknown` and the agent treats its GPUs as one pool (never as a guessed order).
 */
export type GpuMap =
  | {
      readonly kind: 'known';
      /** CUDA ordinal of each visible GPU, by UUID. */
      readonly ordinals: ReadonlyMap<string, number>;
      /** The visible GPUs, by CUDA ordinal. */
      readonly gpus: readonly GpuIdentity[];
    }
  | { readonly kind: 'unknown'; readonly reason: string };

export interface GpuIdentity {
  /** CUDA's device ordinal, as Triton's `instance_group.gpus` means it. */
  ordinal: number;
  uuid: string;
  /** `00000000:3B:00.0` as nvidia-smi prints it. */
  pciBusId: string;
  /** nvidia-smi's own index (NVML's order, not necessarily CUDA's). */
  smiIndex: number;
}

/** The query the agent runs (and the stand-in in tests answers). */
export const NVIDIA_SMI_ARGS = ['--query-gpu=index,uuid,pci.bus_id', '--format=csv,noheader'] as const;

interface SmiRow {
  smiIndex: number;
  uuid: string;
  pciBusId: string;
}

/** Rows of `nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv,noheader`; throws on anything else. */
export function parseNvidiaSmi(text: string): SmiRow[] {
  const rows: SmiRow[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length !== 3 || !/^\d+$/.test(cells[0]) || !/^GPU-[0-9A-Fa-f-]+$/.test(cells[1]))
      throw new Error(`unexpected nvidia-smi line '${line.slice(0, 120)}'`);
    rows.push({ smiIndex: Number(cells[0]), uuid: cells[1], pciBusId: cells[2] });
  }
  if (new Set(rows.map((r) => r.uuid)).size !== rows.length) throw new Error('nvidia-smi lists a UUID twice');
  return rows;
}

/** PCI bus ids compare as their numbers (domain, bus, device, function), not as text of varying case. */
function pciKey(id: string): string {
  const m = /^([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)\.([0-9a-f]+)$/i.exec(id);
  if (!m) return id.toLowerCase();
  return m
    .slice(1)
    .map((p) => parseInt(p, 16).toString(16).padStart(8, '0'))
    .join(':');
}

/**
 * The CUDA ordinals of nvidia-smi's GPUs under `CUDA_DEVICE_ORDER=PCI_BUS_ID` and `visible` (the value of
 * `CUDA_VISIBLE_DEVICES`, undefined when unset), as CUDA reads it: a comma-separated list of indices (into
 * the PCI-ordered list) or UUIDs (a unique prefix is enough); the list ends at the first entry that names
 * no device; MIG devices cannot be mapped to a GPU's memory figures, so they make the map unknown.
 */
export function cudaOrdinals(rows: readonly SmiRow[], visible: string | undefined): GpuMap {
  const byPci = [...rows].sort((a, b) => (pciKey(a.pciBusId) < pciKey(b.pciBusId) ? -1 : 1));
  let chosen: SmiRow[];
  if (visible === undefined) {
    chosen = byPci;
  } else {
    chosen = [];
    for (const raw of visible.split(',')) {
      const entry = raw.trim();
      if (/^MIG-/i.test(entry))
        return { kind: 'unknown', reason: `CUDA_VISIBLE_DEVICES names a MIG device (${entry})` };
      let row: SmiRow | undefined;
      if (/^\d+$/.test(entry)) row = byPci[Number(entry)];
      else if (/^GPU-/i.test(entry)) {
        const matches = byPci.filter((r) => r.uuid.toLowerCase().startsWith(entry.toLowerCase()));
        row = matches.length === 1 ? matches[0] : undefined;
      }
      // CUDA stops at the first entry that is not a device.
      if (!row) break;
      if (chosen.includes(row))
        return { kind: 'unknown', reason: `CUDA_VISIBLE_DEVICES names ${row.uuid} twice` };
      chosen.push(row);
    }
  }
  const gpus = chosen.map((r, ordinal) => ({ ordinal, ...r }));
  return { kind: 'known', ordinals: new Map(gpus.map((g) => [g.uuid, g.ordinal])), gpus };
}

export interface GpuMapOptions {
  /** The nvidia-smi executable (a path, or a name looked up on PATH). */
  bin: string;
  /** `CUDA_VISIBLE_DEVICES` as tritonserver sees it (undefined: unset). */
  visibleDevices: string | undefined;
  /** How long nvidia-smi may take. */
  timeoutMs: number;
}

/** Largest nvidia-smi answer read (a few lines per GPU). */
const MAX_OUTPUT_BYTES = 256 * 1024;

/** Runs nvidia-smi (bounded in time and output) and maps UUIDs to CUDA ordinals; never throws. */
export async function readGpuMap(options: GpuMapOptions): Promise<GpuMap> {
  let stdout: string;
  try {
    stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        options.bin,
        [...NVIDIA_SMI_ARGS],
        { timeout: options.timeoutMs, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL', encoding: 'utf8' },
        (err, out, errOut) => {
          if (err) {
            const detail = (errOut || '').trim().split('\n')[0];
            reject(
              new Error(detail ? `${err.message.split('\n')[0]}: ${detail}` : err.message.split('\n')[0]),
            );
          } else resolve(out);
        },
      );
    });
  } catch (err) {
    return { kind: 'unknown', reason: `${options.bin} failed: ${(err as Error).message}` };
  }
  try {
    return cudaOrdinals(parseNvidiaSmi(stdout), options.visibleDevices);
  } catch (err) {
    return { kind: 'unknown', reason: `${options.bin}: ${(err as Error).message}` };
  }
}
