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

/**
 * Parses `24GiB`, `80 GB`, `512MiB` or plain bytes; throws with the offending text otherwise. Zero is
 * refused unless `allowZero`.
 */
export function parseByteSize(text: string, allowZero = false): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new Error(`'${text}' is not a size (examples: 24GiB, 80GB, 512MiB, 1073741824)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!(bytes > 0) && !(allowZero && bytes === 0)) throw new Error(`'${text}' is not a positive size`);
  return bytes;
}

/** Bytes as GiB/MiB for tables and chart labels. */
export function formatByteSize(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${+(bytes / 1024 ** 3).toFixed(1)}GiB`;
  if (bytes >= 1024 ** 2) return `${+(bytes / 1024 ** 2).toFixed(1)}MiB`;
  return `${bytes}B`;
}
