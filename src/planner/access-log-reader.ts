import { createReadStream, type Stats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { LineSplitter, MAX_LINE_BYTES } from './line-splitter';
import type { ReplayModel } from './replay';
import { shown } from '../errors';

/** Why a line was skipped, and how the summary says it. */
export const SKIP_REASONS = {
  blank: 'blank',
  tooLong: 'too long',
  notJson: 'not JSON',
  notObject: 'not a JSON object',
  malformed: 'not an access log record',
  outOfRange: 'a number out of range',
  badTime: 'an implausible timestamp',
  outlierTime: 'a timestamp far from the rest of the log',
  unknownModel: 'a request for a model that does not exist',
  refused: 'a request refused before it reached its model (its body or content type)',
} as const;

export type SkipReason = keyof typeof SKIP_REASONS;

/**
 * What a line may hold and still be used. Anything outside is skipped and counted, never clamped: a
 * clamped number would still be a made-up number.
 */
export const LOG_LIMITS = {
  /** Largest footprint believed: 1 PiB. */
  maxBytes: 2 ** 50,
  /** Longest load, download or wait believed: a day. */
  maxMs: 86_400_000,
  /** Longest model name (SageMaker's TargetModel is at most 1024 characters). */
  maxModelName: 1024,
  /** Earliest timestamp believed (the agent did not exist before). */
  earliestTime: Date.UTC(2000, 0, 1),
  /** How far in the future (clock skew between hosts) a timestamp may be. */
  futureSlackMs: 86_400_000,
  /**
   * A timestamp is far from the rest of the log when a gap longer than
   * max(minOutlierGapMs, outlierMads × the median absolute deviation of all timestamps) separates it
   * from the median one.
   */
  minOutlierGapMs: 3_600_000,
  outlierMads: 20,
} as const;

/** What the planner takes from an access log: the requests in time order and what each model costs. */
export interface RequestLog {
  models: ReplayModel[];
  /** Model index per request, in arrival order. */
  requests: Int32Array;
  /** Arrival time per request, ms since the epoch. */
  times: Float64Array;
  /** Requests the agent itself answered from a resident model (as logged). */
  observedHits: number;
  /** How long logged requests waited for their model (`waitMs`, where the log has it), ms. */
  observedWaitMs: Float64Array;
  /** Lines read (every one: used or skipped). */
  lines: number;
  /** Lines used: invocations and lifecycle events. `usedLines + skippedLines === lines`. */
  usedLines: number;
  /** Lines skipped, all reasons together. */
  skippedLines: number;
  /** Lines skipped, by reason. */
  skipped: Record<SkipReason, number>;
  /** Models whose footprint or load time the log never gave (estimated from the others). */
  estimatedModels: string[];
}

export interface ReadOptions {
  /** Longer lines are skipped without being held (default 1 MiB). */
  maxLineBytes?: number;
  /** Now, ms since the epoch, for the future-timestamp check (default: Date.now()). */
  now?: number;
}

/** Line kinds kept in the record columns. */
const HIT = 0;
const COLD = 1;
const LOAD = 2;
const OTHER_LIFECYCLE = 3;

/** The lines that passed the per-line checks, in read order, one array per field (NaN: not logged). */
class Records {
  readonly model: number[] = [];
  readonly time: number[] = [];
  readonly kind: number[] = [];
  readonly footprint: number[] = [];
  readonly loadMs: number[] = [];
  readonly downloadMs: number[] = [];
  readonly waitMs: number[] = [];
  readonly names: string[] = [];
  private readonly index = new Map<string, number>();

  add(
    name: string,
    time: number,
    kind: number,
    footprint: number,
    loadMs: number,
    downloadMs: number,
    waitMs: number,
  ): void {
    let m = this.index.get(name);
    if (m === undefined) {
      m = this.names.length;
      this.index.set(name, m);
      this.names.push(name);
    }
    this.model.push(m);
    this.time.push(time);
    this.kind.push(kind);
    this.footprint.push(footprint);
    this.loadMs.push(loadMs);
    this.downloadMs.push(downloadMs);
    this.waitMs.push(waitMs);
  }
}

/** Strict ISO 8601 with a zone, as the agent writes it (`Date.parse` alone also takes '1' or 'May 5'). */
const ISO_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/** A number field: NaN when absent (or null, JSON's spelling of a number that was not one), else checked. */
function numberField(v: unknown, max: number): number | SkipReason {
  if (v === undefined || v === null) return NaN;
  if (typeof v !== 'number') return 'malformed';
  if (!Number.isFinite(v) || v < 0 || v > max) return 'outOfRange';
  return v;
}

/** Checks one line and adds it to `records`; returns why it was skipped, or undefined when it was used. */
function readLine(line: string, now: number, records: Records): SkipReason | undefined {
  if (line.trim() === '') return 'blank';
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return 'notJson';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'notObject';
  const rec = parsed as Record<string, unknown>;
  const { model, type } = rec;
  if (typeof model !== 'string' || model === '' || model.length > LOG_LIMITS.maxModelName) return 'malformed';
  let kind: number;
  if (type === 'invoke') {
    if (rec.outcome === 'hit') kind = HIT;
    else if (rec.outcome === 'cold') kind = COLD;
    else return 'malformed';
    // The agent logs every invocation; one for a model that does not exist asks nothing of a GPU.
    if (rec.error === 'MODEL_NOT_FOUND' || rec.error === 'ARTIFACT_NOT_FOUND') return 'unknownModel';
    if (
      rec.error === 'UNSUPPORTED_MEDIA_TYPE' ||
      rec.error === 'PAYLOAD_TOO_LARGE' ||
      rec.error === 'BAD_REQUEST'
    )
      return 'refused';
  } else if (type === 'lifecycle') {
    if (typeof rec.event !== 'string') return 'malformed';
    kind = rec.event === 'load' ? LOAD : OTHER_LIFECYCLE;
  } else {
    return 'malformed';
  }
  if (typeof rec.time !== 'string') return 'malformed';
  const time = ISO_TIME.test(rec.time) ? Date.parse(rec.time) : NaN;
  if (!(time >= LOG_LIMITS.earliestTime && time <= now + LOG_LIMITS.futureSlackMs)) return 'badTime';
  const footprint = numberField(rec.footprintBytes, LOG_LIMITS.maxBytes);
  const loadMs = numberField(rec.loadMs, LOG_LIMITS.maxMs);
  const downloadMs = numberField(rec.downloadMs, LOG_LIMITS.maxMs);
  const waitMs = numberField(rec.waitMs, LOG_LIMITS.maxMs);
  for (const v of [footprint, loadMs, downloadMs, waitMs]) if (typeof v === 'string') return v;
  records.add(
    model,
    time,
    kind,
    footprint as number,
    loadMs as number,
    downloadMs as number,
    waitMs as number,
  );
  return undefined;
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/**
 * The window of believable times: the run of timestamps around the median one in which no two
 * neighbours are further apart than max(minOutlierGapMs, outlierMads × MAD). A stray line from another
 * year (or a clock that jumped) is cut off by its gap; quiet nights, weekends and bursts are not,
 * because they do not move the median absolute deviation that far.
 */
export function plausibleTimeWindow(times: ArrayLike<number>): { from: number; to: number } {
  const n = times.length;
  if (n === 0) return { from: 0, to: 0 };
  const sorted = Float64Array.from(times).sort();
  const mid = Math.floor((n - 1) / 2);
  const med = sorted[mid];
  const dev = Float64Array.from(sorted, (t) => Math.abs(t - med)).sort();
  const gap = Math.max(LOG_LIMITS.minOutlierGapMs, LOG_LIMITS.outlierMads * dev[Math.floor((n - 1) / 2)]);
  let lo = mid;
  while (lo > 0 && sorted[lo] - sorted[lo - 1] <= gap) lo--;
  let hi = mid;
  while (hi < n - 1 && sorted[hi + 1] - sorted[hi] <= gap) hi++;
  return { from: sorted[lo], to: sorted[hi] };
}

function fileType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Streams one log's lines into `onLine`. Regular files and pipes (`--log /dev/stdin`, `<(zcat …)`) are
 * read; devices, sockets and directories are refused before they are opened (`/dev/zero` never ends).
 */
async function eachLine(
  file: string,
  maxLineBytes: number,
  onLine: (line: string | undefined) => void,
): Promise<void> {
  let st: Stats;
  try {
    st = await fsp.stat(file);
  } catch (err) {
    throw new Error(`cannot read access log ${shown(file)}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isFile() && !st.isFIFO())
    throw new Error(`access log ${shown(file)} is ${fileType(st)}, not a file`);
  const splitter = new LineSplitter(maxLineBytes);
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 }))
      splitter.push(chunk as Buffer, onLine);
  } catch (err) {
    throw new Error(`cannot read access log ${shown(file)}: ${(err as Error).message}`, { cause: err });
  }
  splitter.end(onLine);
}

/** "skipped 3 of 120 lines: 2 not JSON, 1 a number out of range", or undefined when none was skipped. */
export function describeSkipped(
  log: Pick<RequestLog, 'lines' | 'skippedLines' | 'skipped'>,
): string | undefined {
  if (log.skippedLines === 0) return undefined;
  const parts = (Object.keys(SKIP_REASONS) as SkipReason[])
    .filter((r) => log.skipped[r] > 0)
    .map((r) => `${log.skipped[r]} ${SKIP_REASONS[r]}`);
  return `skipped ${log.skippedLines} of ${log.lines} lines: ${parts.join(', ')}`;
}

/**
 * Reads one or more access log files (for example FILE.2, FILE.1, FILE: rotated files in any order;
 * requests are sorted by time) line by line without holding the text in memory. Treats every line as
 * hostile: a line that is too long, not a JSON object, lacks a field, holds a number that is not finite,
 * negative or absurd, or a timestamp before 2000, more than a day ahead, or far from the rest of the log is
 * skipped and counted (`skipped`), never used and never fatal. A model's footprint is the last one logged,
 * its load time the median of its logged loads, its download time the first one logged (paid once:
 * afterwards the disk cache has it). Models the log gives no numbers for get the median footprint and the
 * median load time per byte of the others. Rejects only when a file cannot be read or no line is an
 * invocation.
 */
export async function readAccessLogs(files: string[], options: ReadOptions = {}): Promise<RequestLog> {
  if (files.length === 0) throw new Error('no access log files to read');
  const now = options.now ?? Date.now();
  const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
  const records = new Records();
  const skipped = Object.fromEntries(Object.keys(SKIP_REASONS).map((r) => [r, 0])) as Record<
    SkipReason,
    number
  >;
  let lines = 0;
  const onLine = (line: string | undefined) => {
    lines++;
    const why = line === undefined ? 'tooLong' : readLine(line, now, records);
    if (why !== undefined) skipped[why]++;
  };
  for (const file of files) await eachLine(file, maxLineBytes, onLine);

  const { from, to } = plausibleTimeWindow(records.time);
  const index = new Map<number, number>();
  const names: string[] = [];
  const footprints: (number | undefined)[] = [];
  const downloads: (number | undefined)[] = [];
  const loads: number[][] = [];
  const reqModel: number[] = [];
  const reqTime: number[] = [];
  const waits: number[] = [];
  let observedHits = 0;
  for (let i = 0; i < records.time.length; i++) {
    const time = records.time[i];
    if (time < from || time > to) {
      skipped.outlierTime++;
      continue;
    }
    let m = index.get(records.model[i]);
    if (m === undefined) {
      m = names.length;
      index.set(records.model[i], m);
      names.push(records.names[records.model[i]]);
      footprints.push(undefined);
      downloads.push(undefined);
      loads.push([]);
    }
    const kind = records.kind[i];
    const footprint = records.footprint[i];
    const downloadMs = records.downloadMs[i];
    const loadMs = records.loadMs[i];
    if (footprint > 0) footprints[m] = footprint;
    if (downloadMs > 0 && downloads[m] === undefined) downloads[m] = downloadMs;
    if (kind === HIT || kind === COLD) {
      reqModel.push(m);
      reqTime.push(time);
      if (!Number.isNaN(records.waitMs[i])) waits.push(records.waitMs[i]);
      if (kind === HIT) observedHits++;
      else if (!Number.isNaN(loadMs)) loads[m].push(loadMs);
    } else if (kind === LOAD && !Number.isNaN(loadMs)) {
      loads[m].push(loadMs);
    }
  }
  const skippedLines = Object.values(skipped).reduce((a, b) => a + b, 0);
  if (reqModel.length === 0) {
    const why = describeSkipped({ lines, skippedLines, skipped });
    throw new Error(
      `no invocations in ${files.map(shown).join(', ')}${why ? ` (${why})` : ''}: is this an access log (AGENT_ACCESS_LOG_FILE)?`,
    );
  }
  // Requests in time order (stable: lines of one file keep their order when times are equal).
  const order = Array.from(reqModel.keys()).sort((a, b) => reqTime[a] - reqTime[b] || a - b);
  const requests = Int32Array.from(order, (i) => reqModel[i]);
  const times = Float64Array.from(order, (i) => reqTime[i]);
  const knownFootprints = footprints.flatMap((f) => (f !== undefined ? [f] : []));
  const fallbackFootprint = median(knownFootprints) ?? 1024 ** 3;
  const msPerByte =
    median(
      footprints.flatMap((f, m) =>
        f !== undefined && loads[m].length > 0 ? [(median(loads[m]) as number) / f] : [],
      ),
    ) ?? 1000 / 1024 ** 3;
  const estimatedModels: string[] = [];
  const models = names.map((name, m): ReplayModel => {
    const sizeBytes = footprints[m] ?? fallbackFootprint;
    const load = median(loads[m]);
    if (footprints[m] === undefined || load === undefined) estimatedModels.push(name);
    return { name, sizeBytes, loadCostMs: load ?? msPerByte * sizeBytes, downloadMs: downloads[m] ?? 0 };
  });
  return {
    models,
    requests,
    times,
    observedHits,
    observedWaitMs: Float64Array.from(waits),
    lines,
    usedLines: lines - skippedLines,
    skippedLines,
    skipped,
    estimatedModels,
  };
}
