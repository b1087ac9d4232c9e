import winston from 'winston';
import TransportStream from 'winston-transport';
/**
 * Structured JSON logs, one line per event, on stdout (SageMaker ships stdout to CloudWatch).
 *
 * On winston (the design card's logger; a line costs a few microseconds, under half a percent of a busy
 * agent's CPU in bench/overhead's profile). A disabled level is a no-op function that never reaches
 * winston; each line is built with one `JSON.stringify`; the lines of one event-loop turn reach the sink in
 * a single write, and what waits for a slow sink is bounded (relayed lines first).
 */

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export type LogFields = Record<string, unknown>;

export interface Logger {
  /** Something failed that an operator must look at. */
  error(message: string, fields?: LogFields): void;
  /** Something unusual that the agent handled. */
  warn(message: string, fields?: LogFields): void;
  /** Lifecycle events and one line per request. */
  info(message: string, fields?: LogFields): void;
  /** Detail for debugging; costs nothing when disabled. */
  debug(message: string, fields?: LogFields): void;
  /** True when lines of `level` are written, to skip building costly fields. */
  enabled(level: LogLevel): boolean;
  /**
   * A line relayed from another process (tritonserver's output): dropped, and counted, rather than
   * buffered while stdout is not keeping up, so a flood cannot grow the agent's memory.
   */
  relay(level: LogLevel, message: string, fields?: LogFields): void;
}

/** Where lines go: anything with a `write(string)` (a stream, or a test's collector). */
export interface LineSink {
  write(chunk: string): unknown;
  /** Bytes written but not yet taken by the consumer (a Node stream's backlog). */
  readonly writableLength?: number;
}

/** Lines dropped because the sink was not keeping up, by who wrote them. */
export interface DroppedLines {
  relayed: number;
  own: number;
}

/**
 * Backlog bounds: relayed lines stop at 1 MiB waiting, the agent's own at 16 MiB (its errors and access
 * lines matter more; beyond that the consumer is gone and buffering only delays the out-of-memory).
 */
export const RELAY_BACKLOG_BYTES = 1024 * 1024;
export const OWN_BACKLOG_BYTES = 16 * 1024 * 1024;

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export function isLogLevel(s: string): s is LogLevel {
  return Object.prototype.hasOwnProperty.call(RANK, s);
}

const noop = (): void => {};

/** Errors as fields keep their message (and stack), where JSON.stringify would write `{}`. */
function plain(fields: LogFields): LogFields {
  let out: LogFields | undefined;
  for (const k in fields) {
    const v = fields[k];
    if (v instanceof Error) {
      out ??= { ...fields };
      out[k] = { name: v.name, message: v.message, stack: v.stack };
    }
  }
  return out ?? fields;
}

/**
 * Buffers the lines of one event-loop turn and writes them in one call on the next turn, so a burst of
 * requests costs one write, not one per line. Lines still pending at exit are written synchronously.
 */
class BatchedWriter {
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled = false;
  /** Every line dropped so far. */
  readonly dropped: DroppedLines = { relayed: 0, own: 0 };
  /** Drops not yet told in a summary line. */
  private untold: DroppedLines = { relayed: 0, own: 0 };

  constructor(private readonly sink: LineSink) {}

  private backlog(): number {
    return (this.sink.writableLength ?? 0) + this.pendingBytes;
  }

  push(line: string, relayed = false): void {
    if (this.backlog() + line.length > (relayed ? RELAY_BACKLOG_BYTES : OWN_BACKLOG_BYTES)) {
      const who = relayed ? 'relayed' : 'own';
      this.dropped[who]++;
      this.untold[who]++;
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    // Once the consumer has caught up, one line says what was lost while it had not.
    if ((this.untold.relayed > 0 || this.untold.own > 0) && this.backlog() < RELAY_BACKLOG_BYTES / 2) {
      const { relayed, own } = this.untold;
      this.untold = { relayed: 0, own: 0 };
      this.pending.unshift(
        `{"level":"warn","message":"log lines dropped: stdout was not keeping up","timestamp":"${new Date().toISOString()}","relayedLines":${relayed},"ownLines":${own}}\n`,
      );
    }
    if (this.pending.length === 0) return;
    const text = this.pending.length === 1 ? this.pending[0] : this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    this.sink.write(text);
  };
}

let stdoutWriter: BatchedWriter | undefined;

/** Lines the stdout logger has dropped since the process started (for `/metrics`). */
export function droppedLogLines(): DroppedLines {
  return { ...(stdoutWriter?.dropped ?? { relayed: 0, own: 0 }) };
}

function writerFor(sink: LineSink | undefined): BatchedWriter {
  if (sink) return new BatchedWriter(sink);
  if (!stdoutWriter) {
    const w = new BatchedWriter(process.stdout);
    process.once('exit', w.flush);
    stdoutWriter = w;
  }
  return stdoutWriter;
}

/** winston's key for the finished line (triple-beam's MESSAGE), and ours for a relayed line. */
const LINE = Symbol.for('message');
const RELAYED = Symbol('relayed');

type Entry = winston.Logform.TransformableInfo & { [LINE]?: string; [RELAYED]?: boolean };

/**
 * The one line format: `{"level","message","timestamp",...fields}`, built with one JSON.stringify of the
 * fields. A circular or BigInt field must not turn a log call into a failure of the caller.
 */
const jsonLine = winston.format((info: Entry) => {
  const { level, message, timestamp, ...fields } = info;
  let line = `{"level":"${level}","message":${JSON.stringify(message)},"timestamp":"${String(timestamp)}"`;
  let rest: string;
  try {
    rest = JSON.stringify(fields);
  } catch (err) {
    rest = JSON.stringify({ logFieldsError: (err as Error).message });
  }
  if (rest.length > 2) line += `,${rest.slice(1, -1)}`;
  info[LINE] = `${line}}\n`;
  return info;
});

/** Hands winston's finished lines to the bounded, batched writer (relayed lines are the first to go). */
class BoundedLineTransport extends TransportStream {
  constructor(private readonly writer: BatchedWriter) {
    super();
  }

  override log(info: Entry, next: () => void): void {
    const line = info[LINE];
    if (line !== undefined) this.writer.push(line, info[RELAYED] === true);
    next();
  }
}

/**
 * A JSON-lines logger on winston: `{"level","message","timestamp",...fields}`. Lines below `level` cost
 * one call of an empty function (winston is not reached). `sink` defaults to stdout, through a writer
 * that batches one event-loop turn into one write and bounds what waits for a slow consumer.
 */
export function createLogger(level: string = 'info', silent = false, sink?: LineSink): Logger {
  const threshold = silent ? -1 : isLogLevel(level) ? RANK[level] : RANK.info;
  const writer = threshold < 0 ? undefined : writerFor(sink);
  const w = writer
    ? winston.createLogger({
        levels: RANK,
        level: isLogLevel(level) ? level : 'info',
        format: jsonLine(),
        transports: [new BoundedLineTransport(writer)],
        exitOnError: false,
      })
    : undefined;
  const make = (lvl: LogLevel, relayed = false) => {
    if (!w || RANK[lvl] > threshold) return noop;
    return (message: string, fields?: LogFields): void => {
      const entry: Entry = {
        ...(fields === undefined ? {} : plain(fields)),
        level: lvl,
        message,
        timestamp: new Date().toISOString(),
      };
      if (relayed) entry[RELAYED] = true;
      w.log(entry as winston.LogEntry);
    };
  };
  const relays = {
    error: make('error', true),
    warn: make('warn', true),
    info: make('info', true),
    debug: make('debug', true),
  };
  return {
    error: make('error'),
    warn: make('warn'),
    info: make('info'),
    debug: make('debug'),
    enabled: (lvl) => RANK[lvl] <= threshold,
    relay: (lvl, message, fields) => relays[lvl](message, fields),
  };
}

/** A logger that writes nothing, for tests and tools. */
export function silentLogger(): Logger {
  return createLogger('error', true);
}
