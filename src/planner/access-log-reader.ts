import { createReadStream } from 'node:fs';
import * as readline from 'node:readline';
import type { ReplayModel } from './replay';

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
  /** Lines that were not access log lines (not JSON, or missing fields); they are skipped. */
  skippedLines: number;
  /** Models whose footprint or load time the log never gave (estimated from the others). */
  estimatedModels: string[];
}

interface Facts {
  footprint?: number;
  loads: number[];
  downloadMs?: number;
}

const finiteNonNegative = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/**
 * Reads one or more access log files (for example FILE.2, FILE.1, FILE: rotated files in any order;
 * requests are sorted by time) line by line without holding the text in memory. A model's footprint is
 * the last one logged, its load time the median of its logged loads, its download time the first one
 * logged (paid once: afterwards the disk cache has it). Models the log gives no numbers for get the
 * median footprint and the median load time per byte of the others.
 */
export async function readAccessLogs(files: string[]): Promise<RequestLog> {
  const index = new Map<string, number>();
  const facts: Facts[] = [];
  const names: string[] = [];
  const reqModel: number[] = [];
  const reqTime: number[] = [];
  let observedHits = 0;
  const waits: number[] = [];
  let skippedLines = 0;
  const modelIndex = (name: string): number => {
    let i = index.get(name);
    if (i === undefined) {
      i = names.length;
      index.set(name, i);
      names.push(name);
      facts.push({ loads: [] });
    }
    return i;
  };
  for (const file of files) {
    const lines = readline.createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.trim() === '') continue;
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        skippedLines++;
        continue;
      }
      const time = typeof rec.time === 'string' ? Date.parse(rec.time) : NaN;
      if (typeof rec.model !== 'string' || !Number.isFinite(time)) {
        skippedLines++;
        continue;
      }
      const m = modelIndex(rec.model);
      const f = facts[m];
      if (finiteNonNegative(rec.footprintBytes) && rec.footprintBytes > 0) f.footprint = rec.footprintBytes;
      if (finiteNonNegative(rec.downloadMs) && rec.downloadMs > 0 && f.downloadMs === undefined)
        f.downloadMs = rec.downloadMs;
      if (rec.type === 'invoke' && (rec.outcome === 'hit' || rec.outcome === 'cold')) {
        reqModel.push(m);
        reqTime.push(time);
        if (finiteNonNegative(rec.waitMs)) waits.push(rec.waitMs);
        if (rec.outcome === 'hit') observedHits++;
        else if (finiteNonNegative(rec.loadMs)) f.loads.push(rec.loadMs);
      } else if (rec.type === 'lifecycle') {
        if (rec.event === 'load' && finiteNonNegative(rec.loadMs)) f.loads.push(rec.loadMs);
      } else {
        skippedLines++;
      }
    }
  }
  if (reqModel.length === 0)
    throw new Error(`no invocations in ${files.join(', ')}: is this an access log (AGENT_ACCESS_LOG_FILE)?`);
  // Requests in time order (stable: lines of one file keep their order when times are equal).
  const order = Array.from(reqModel.keys()).sort((a, b) => reqTime[a] - reqTime[b] || a - b);
  const requests = Int32Array.from(order, (i) => reqModel[i]);
  const times = Float64Array.from(order, (i) => reqTime[i]);
  const knownFootprints = facts.flatMap((f) => (f.footprint !== undefined ? [f.footprint] : []));
  const fallbackFootprint = median(knownFootprints) ?? 1024 ** 3;
  const msPerByte =
    median(
      facts.flatMap((f) =>
        f.footprint && f.loads.length > 0 ? [(median(f.loads) as number) / f.footprint] : [],
      ),
    ) ?? 1000 / 1024 ** 3;
  const estimatedModels: string[] = [];
  const models = facts.map((f, i): ReplayModel => {
    const sizeBytes = f.footprint ?? fallbackFootprint;
    const load = median(f.loads);
    if (f.footprint === undefined || load === undefined) estimatedModels.push(names[i]);
    return {
      name: names[i],
      sizeBytes,
      loadCostMs: load ?? msPerByte * sizeBytes,
      downloadMs: f.downloadMs ?? 0,
    };
  });
  return {
    models,
    requests,
    times,
    observedHits,
    observedWaitMs: Float64Array.from(waits),
    skippedLines,
    estimatedModels,
  };
}
