import { shown } from '../errors';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Largest size accepted by default: 1 PiB, far above any GPU or disk one machine has. */
export const MAX_BYTE_SIZE = 1024 ** 5;

export interface ByteSizeOptions {
  /** Accept 0 (default: refused). */
  allowZero?: boolean;
  /** Largest size accepted, bytes (default MAX_BYTE_SIZE). */
  max?: number;
}

/**
 * Parses `24GiB`, `80 GB`, `512MiB` or plain bytes, strictly: digits with at most one decimal point and a
 * known unit, nothing else (no exponent, sign or hex), and a result that is a whole number of bytes within
 * [1 (or 0 with `allowZero`), `max`]. Throws a one-line message quoting the offending text otherwise, so
 * `--gpu` with 400 digits is an error, not "InfinityGiB".
 */
export function parseByteSize(text: string, options: ByteSizeOptions | boolean = {}): number {
  const { allowZero = false, max = MAX_BYTE_SIZE } =
    typeof options === 'boolean' ? { allowZero: options } : options;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new Error(`${shown(text)} is not a size (examples: 24GiB, 80GB, 512MiB, 1073741824)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isFinite(bytes) || bytes > max)
    throw new Error(`${shown(text)} is too large a size (at most ${formatByteSize(max)})`);
  if (!(bytes > 0) && !(allowZero && bytes === 0)) throw new Error(`${shown(text)} is not a positive size`);
  return bytes;
}

/** Bytes as TiB/GiB/MiB for tables and chart labels. */
export function formatByteSize(bytes: number): string {
  if (bytes >= 1024 ** 4) return `${+(bytes / 1024 ** 4).toFixed(1)}TiB`;
  if (bytes >= 1024 ** 3) return `${+(bytes / 1024 ** 3).toFixed(1)}GiB`;
  if (bytes >= 1024 ** 2) return `${+(bytes / 1024 ** 2).toFixed(1)}MiB`;
  return `${bytes}B`;
}
