import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { AgentError, ErrorCode, messageOf } from '../errors';
import { readSmallFile } from '../files';
import { backoffMs, settlesWithin, systemClock, wakeableSleep, type Clock } from '../time';
import {
  carriesToken,
  GROUP_TOKEN_ENV,
  groupGone,
  groupMembers,
  killGroup,
  listenPorts,
  newGroupToken,
  portHolder,
  resolveExecutable,
} from './process-group';

/** The logging the supervisor needs: the four levels, nothing else. */
export interface ManagedTritonLogger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  /** tritonserver's own lines: dropped and counted, never buffered without bound, when stdout is slow. */
  relay(level: 'error' | 'warn' | 'info', message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
}

/**
 * Where the supervised tritonserver is:
 * - `stopped`: not started, or stopped on purpose;
 * - `starting`: the first start, until ServerReady;
 * - `ready`: answering ServerReady;
 * - `restarting`: it died; waiting out the backoff or starting again;
 * - `stopping`: SIGTERM sent, waiting for it to exit.
 */
export type ManagedTritonState = 'stopped' | 'starting' | 'ready' | 'restarting' | 'stopping';

export interface ManagedTritonOptions {
  /** The executable: a path, or a name looked up on PATH. */
  bin: string;
  /** Its whole argument list (see `tritonServerArgs`). */
  args: readonly string[];
  /**
   * ServerReady through the agent's own Triton channel, with a short deadline of its own. Ready means the
   * agent can reach it, not only that it runs.
   */
  probe: () => Promise<boolean>;
  logger: ManagedTritonLogger;
  /** How long one start may take to answer ServerReady before the process is killed. */
  startupTimeoutMs: number;
  /** How long the process may take to exit after SIGTERM before SIGKILL. */
  stopGraceMs: number;
  /** First wait before a restart; doubles with each failed restart, up to `maxRestartBackoffMs`. */
  restartBackoffMs: number;
  maxRestartBackoffMs: number;
  /** Running this long since ready resets the backoff (default 60 s). */
  stableAfterMs?: number;
  /** The clock that measures stable running (default the clock's; tests pass their own). */
  now?: () => number;
  /** Time for the start-up probes, restart backoff and exit waits (default: the system's). */
  clock?: Clock;
  /** Interval between ServerReady probes while starting (default 100 ms; a startup line probes at once). */
  probeIntervalMs?: number;
  /** Longer log lines are cut to this many characters (default 16 KiB). */
  maxLineLength?: number;
  /** The child's environment (default: the agent's). */
  env?: NodeJS.ProcessEnv;
  /**
   * Called once a restarted tritonserver is ready (never after the first start), to bring back the models
   * that were resident. Its failure is logged, not fatal.
   */
  onRestarted?: () => Promise<void>;
  /**
   * Where the running tritonserver's process group and token are written, so the next agent kills what an
   * agent that died by SIGKILL left behind (undefined: no pidfile).
   */
  pidFile?: string;
  /**
   * Start tritonserver through util-linux `setpriv --pdeathsig KILL` when it is installed, so the kernel
   * kills it when the agent dies, however it dies (default true).
   */
  parentDeathSignal?: boolean;
}

/** What the agent must pass to tritonserver to use it. */
export interface TritonServerArgsInput {
  modelRepository: string;
  /** host:port the agent dials; tritonserver listens on its port. */
  grpcUrl: string;
  /** Triton's Prometheus endpoint; tritonserver serves metrics on its port. */
  metricsUrl: string;
  metricsIntervalMs: number;
  /** How long the agent gives tritonserver to exit after SIGTERM: Triton's own exit timeout stays below it. */
  stopGraceMs?: number;
  /**
   * Turns Triton's memory tracker on for the TensorRT and ONNX Runtime backends, the only ones that report
   * ModelStatistics.memory_usage (a footprint at once, not learned from samples).
   */
  memoryTracker?: boolean;
  /** Appended last: tritonserver takes the last value of a repeated option, so these win. */
  extra?: readonly string[];
}

/** A URL host that only this machine can reach, as tritonserver's `--*-address` wants it. */
function loopbackAddress(host: string): string | undefined {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h))
    return h === 'localhost' ? '127.0.0.1' : h;
  if (h === '::1') return '::1';
  return undefined;
}

/**
 * tritonserver's command line for the agent: explicit model control over the agent's repository, gRPC
 * on the port the agent dials, HTTP off (the agent is the only front door), GPU metrics on the port the
 * agent reads with a short interval, so capacity corrections arrive quickly. When the agent dials Triton
 * on loopback, gRPC and metrics listen on loopback only: Triton's model-control API has no authentication,
 * and by default it listens on every interface (server grpc_server.h, command_line_parser.cc).
 */
export function tritonServerArgs(input: TritonServerArgsInput): string[] {
  const grpcPort = /:(\d{1,5})$/.exec(input.grpcUrl)?.[1];
  const grpcHost = input.grpcUrl.replace(/:\d{1,5}$/, '');
  if (!grpcPort) {
    throw new AgentError(ErrorCode.BadRequest, `TRITON_GRPC_URL must end in :port, got '${input.grpcUrl}'`);
  }
  let metricsPort: string;
  let metricsHost = '';
  try {
    const u = new URL(input.metricsUrl);
    metricsPort = u.port;
    metricsHost = u.hostname;
  } catch {
    metricsPort = '';
  }
  if (!metricsPort) {
    throw new AgentError(
      ErrorCode.BadRequest,
      `TRITON_METRICS_URL must name its port in managed mode (e.g. http://127.0.0.1:8002/metrics), got '${input.metricsUrl}'`,
    );
  }
  const grpcAddress = loopbackAddress(grpcHost);
  const metricsAddress = loopbackAddress(metricsHost);
  return [
    `--model-repository=${input.modelRepository}`,
    '--model-control-mode=explicit',
    '--allow-http=false',
    '--allow-grpc=true',
    ...(grpcAddress ? [`--grpc-address=${grpcAddress}`] : []),
    `--grpc-port=${grpcPort}`,
    '--allow-metrics=true',
    '--allow-gpu-metrics=true',
    ...(metricsAddress ? [`--metrics-address=${metricsAddress}`] : []),
    `--metrics-port=${metricsPort}`,
    `--metrics-interval-ms=${input.metricsIntervalMs}`,
    // Triton waits up to 30 s for requests in flight when told to stop (main.cc); the agent kills it after
    // its own grace, so Triton's wait ends first and it exits on its own terms.
    ...(input.stopGraceMs !== undefined
      ? [`--exit-timeout-secs=${Math.max(0, Math.floor(input.stopGraceMs / 1000) - 1)}`]
      : []),
    // No retries inside one load call: Triton would repeat an out-of-memory load with nothing evicted
    // (model_lifecycle.cc loops CreateModel), where the agent evicts and then tries again itself.
    '--model-load-retry-count=0',
    // The only backends that report what a load allocated, when asked (backend device_memory_tracker.h).
    // CUPTI allows one subscriber per process: turn it off if another component of Triton uses CUPTI.
    ...(input.memoryTracker
      ? [
          '--backend-config=tensorrt,triton-backend-memory-tracker=true',
          '--backend-config=onnxruntime,triton-backend-memory-tracker=true',
        ]
      : []),
    ...(input.extra ?? []),
  ];
}

/** The pidfile's content, if it holds a group and token. */
async function readPidFile(file: string): Promise<{ pgid: number; token: string } | undefined> {
  // Bounded: a pidfile is a few bytes; anything else (a FIFO, a device, a huge file) is ignored.
  const text = await readSmallFile(file, 4096);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as { pgid?: unknown; token?: unknown };
    if (Number.isInteger(v.pgid) && (v.pgid as number) > 1 && typeof v.token === 'string')
      return { pgid: v.pgid as number, token: v.token };
  } catch {
    // Unreadable or not ours: nothing to reap.
  }
  return undefined;
}

/** How a child ended. */
interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (ENOENT, EACCES). */
  error?: Error;
}

interface Running {
  process: ChildProcess;
  pid: number;
  /** Resolves once the process has exited and its output has been read (bounded). */
  exited: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
}

const LAST_LINES = 20;
/** After the process exits, how long its pipes may still deliver output before they are ignored. */
const OUTPUT_AFTER_EXIT_MS = 500;
/** After SIGKILL, how long to wait for the exit to be reported. */
const KILL_WAIT_MS = 2_000;
/** tritonserver's line when its gRPC port is open. */
const GRPC_STARTED = /Started GRPCInferenceService at /;

/**
 * Splits a byte stream into lines without holding more than `max` characters of one line: the rest of an
 * overlong line is dropped and the kept part ends in a marker saying how much was cut.
 */
export class LineSplitter {
  private partial = '';
  private dropped = 0;

  constructor(
    private readonly max: number,
    private readonly emit: (line: string) => void,
  ) {}

  push(chunk: string): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl < 0) {
        this.append(chunk.slice(start));
        return;
      }
      this.append(chunk.slice(start, nl));
      this.flush();
      start = nl + 1;
    }
  }

  /** Emits what is left (the stream ended without a final newline). */
  end(): void {
    if (this.partial !== '' || this.dropped > 0) this.flush();
  }

  private append(s: string): void {
    const room = this.max - this.partial.length;
    if (s.length <= room) {
      this.partial += s;
    } else {
      this.partial += s.slice(0, Math.max(0, room));
      this.dropped += s.length - Math.max(0, room);
    }
  }

  private flush(): void {
    let line = this.partial.endsWith('\r') ? this.partial.slice(0, -1) : this.partial;
    if (this.dropped > 0) line += ` …[${this.dropped} characters cut]`;
    this.partial = '';
    this.dropped = 0;
    this.emit(line);
  }
}

/** tritonserver logs glog-style: `E1201 …` error, `W1201 …` warning, `I1201 …` info. */
function levelOf(line: string): 'error' | 'warn' | 'info' {
  if (/^E\d{4} /.test(line) || /^error: /.test(line)) return 'error';
  if (/^W\d{4} /.test(line)) return 'warn';
  return 'info';
}

function describeExit(e: ExitInfo): string {
  if (e.error) return `could not be started: ${e.error.message}`;
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited with code ${e.code}`;
}

/**
 * Runs `tritonserver` as a child of the agent and keeps it running.
 *
 * Why a supervisor and not only a restart loop: the agent must know at every moment whether Triton can
 * serve (for `/ping`), must never wait on Triton without a bound, and must not leave a tritonserver behind.
 * So every wait here has a deadline (startup, SIGTERM grace, then SIGKILL), the state is a plain field
 * `/ping` reads without I/O, the child runs in its own process group (a wrapper script and what it starts
 * are signalled together), and a process exit of the agent kills the group.
 *
 * The first start fails fast (a bad flag or binary is a configuration error: the caller reports it and
 * exits). After that, an unexpected exit marks Triton not ready, restarts it after a backoff that doubles
 * with each failed attempt (reset once it has run stably), and calls `onRestarted` when it is ready again.
 */
export class ManagedTriton {
  private stateValue: ManagedTritonState = 'stopped';
  private running: Running | undefined;
  private stopping = false;
  private failures = 0;
  private readyAt = 0;
  private restarts = 0;
  private readonly lastLines: string[] = [];
  /** Cancels the backoff wait when stopping. */
  private cancelWait: (() => void) | undefined;
  /** Wakes the startup probe loop early (the gRPC-started line, an exit). */
  private wake: (() => void) | undefined;
  /** The process group of the last tritonserver started, until it is known to be empty. */
  private group: number | undefined;
  /** `setpriv --pdeathsig KILL --` when available (looked up once). */
  private launcher: Promise<readonly string[]> | undefined;
  private readonly killOnExit = () => {
    if (this.group !== undefined) killGroup(this.group);
  };

  private readonly clock: Clock;

  constructor(private readonly options: ManagedTritonOptions) {
    this.clock = options.clock ?? systemClock;
  }

  private now(): number {
    return this.options.now ? this.options.now() : this.clock.now();
  }

  get state(): ManagedTritonState {
    return this.stateValue;
  }

  /** True while tritonserver answers ServerReady as far as the supervisor knows. No I/O. */
  ready(): boolean {
    return this.stateValue === 'ready';
  }

  /** The current process id, if one runs. */
  get pid(): number | undefined {
    return this.running?.pid;
  }

  /** How many times tritonserver has been restarted after an unexpected exit. */
  get restartCount(): number {
    return this.restarts;
  }

  /**
   * Starts tritonserver and resolves once it answers ServerReady. Rejects (with the process's last output
   * lines) if it exits first or does not become ready within the startup deadline; nothing is left running.
   */
  async start(): Promise<void> {
    if (this.stateValue !== 'stopped')
      throw new AgentError(ErrorCode.Internal, 'tritonserver already started');
    this.stopping = false;
    this.stateValue = 'starting';
    try {
      await this.launch();
    } catch (err) {
      if (this.stateValue === 'starting') this.stateValue = 'stopped';
      throw err;
    }
  }

  /** SIGTERM, then SIGKILL after the grace; resolves once the process has exited. Never restarts it again. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.cancelWait?.();
    this.wake?.();
    const r = this.running;
    if (r && !r.exit) {
      this.stateValue = 'stopping';
      this.options.logger.info('stopping tritonserver', { pid: r.pid, graceMs: this.options.stopGraceMs });
      await this.terminate(r);
    }
    if (this.group !== undefined) {
      killGroup(this.group);
      if (await groupGone(this.group, KILL_WAIT_MS)) this.group = undefined;
    }
    await this.removePidFile();
    this.stateValue = 'stopped';
  }

  // --- internals -------------------------------------------------------------------------------------

  /** One start: spawn, wait (bounded) for ServerReady, or kill what was spawned and throw. */
  private async launch(): Promise<void> {
    await this.clearTheWay();
    this.launcher ??= this.findLauncher();
    const token = newGroupToken();
    // A binary that is not there is spawned directly, so the failure names it (not the launcher).
    const found = await resolveExecutable(this.options.bin, (this.options.env ?? process.env).PATH);
    const r = this.spawn(found ? await this.launcher : [], token);
    await this.writePidFile(r.pid, token);
    try {
      await this.waitReady(r);
    } catch (err) {
      // When stopping, stop() terminates it with the SIGTERM grace.
      if (!r.exit && !this.stopping) await this.terminate(r, 0);
      else await r.exited;
      if (this.running === r) this.running = undefined;
      throw err;
    }
    this.readyAt = this.now();
    this.stateValue = 'ready';
    this.options.logger.info('tritonserver is ready', { pid: r.pid });
    void r.exited.then((info) => this.onExit(r, info));
  }

  private spawn(launcher: readonly string[], token: string): Running {
    const { bin, args, env } = this.options;
    this.lastLines.length = 0;
    const [command, ...rest] = [...launcher, bin, ...args];
    const child = spawn(command, rest, {
      env: { ...(env ?? process.env), [GROUP_TOKEN_ENV]: token },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: signals reach a wrapper script and the server it starts alike.
      detached: true,
    });
    let resolveExit!: (info: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((resolve) => (resolveExit = resolve));
    const r: Running = { process: child, pid: child.pid ?? 0, exited, exit: undefined };
    let pipesOpen = 2;
    let info: ExitInfo | undefined;
    let bound: (() => void) | undefined;
    const settle = () => {
      if (!info || r.exit) return;
      bound?.();
      r.exit = info;
      if (r.pid) process.removeListener('exit', this.killOnExit);
      resolveExit(info);
    };
    const forward = (stream: NodeJS.ReadableStream | null, name: 'stdout' | 'stderr') => {
      if (!stream) {
        pipesOpen--;
        return;
      }
      stream.setEncoding('utf8');
      const lines = new LineSplitter(this.options.maxLineLength ?? 16_384, (line) =>
        this.logLine(line, name),
      );
      stream.on('data', (chunk: string) => lines.push(chunk));
      stream.on('error', () => undefined);
      stream.on('close', () => {
        lines.end();
        if (--pipesOpen === 0) settle();
      });
    };
    forward(child.stdout, 'stdout');
    forward(child.stderr, 'stderr');
    child.once('error', (error) => {
      info = { code: null, signal: null, error };
      pipesOpen = 0;
      settle();
    });
    child.once('exit', (code, signal) => {
      info = { code, signal };
      if (pipesOpen === 0) settle();
      // A grandchild may hold the pipes open: the exit counts once they are read or after a bound.
      else {
        const wait = wakeableSleep(this.clock, OUTPUT_AFTER_EXIT_MS);
        bound = wait.wake;
        void wait.done.then(settle);
      }
      this.wake?.();
    });
    this.running = r;
    if (r.pid) {
      this.group = r.pid;
      process.on('exit', this.killOnExit);
      this.options.logger.info('tritonserver started', { pid: r.pid, bin, args: [...args] });
    }
    return r;
  }

  /**
   * Before a start: whatever is left of the previous tritonserver's process group (a wrapper's children
   * outlive it) and of one an earlier agent started (its pidfile, checked against the token in each
   * process's environment) is killed, and every port tritonserver will listen on must be free: a holder is
   * reported by pid, never answered for by its readiness.
   */
  private async clearTheWay(): Promise<void> {
    const { logger, pidFile } = this.options;
    if (this.group !== undefined) {
      killGroup(this.group);
      if (await groupGone(this.group, KILL_WAIT_MS)) this.group = undefined;
      else logger.error('processes of the previous tritonserver survive SIGKILL', { pgid: this.group });
    }
    const left = pidFile ? await readPidFile(pidFile) : undefined;
    if (left) {
      const members = await groupMembers(left.pgid);
      const ours = (await Promise.all(members.map((pid) => carriesToken(pid, left.token)))).some(Boolean);
      if (ours) {
        logger.warn('killing tritonserver processes an earlier agent left running', {
          pgid: left.pgid,
          pids: members,
        });
        killGroup(left.pgid);
        await groupGone(left.pgid, KILL_WAIT_MS);
      }
    }
    for (const port of listenPorts(this.options.args)) {
      const holder = await portHolder(port);
      if (!holder) continue;
      const who = holder.pid
        ? `pid ${holder.pid}${holder.command ? ` (${holder.command})` : ''}`
        : 'another process';
      throw new AgentError(
        ErrorCode.TritonUnavailable,
        `port ${port}, where tritonserver must listen, is held by ${who}: stop it, or give Triton other ports (TRITON_GRPC_URL, TRITON_METRICS_URL)`,
      );
    }
  }

  /** `setpriv --pdeathsig KILL --` if util-linux's setpriv is installed and knows the option. */
  private async findLauncher(): Promise<readonly string[]> {
    if (this.options.parentDeathSignal === false) return [];
    const setpriv = await resolveExecutable('setpriv', process.env.PATH);
    if (!setpriv) return [];
    const help = await new Promise<string>((resolve) => {
      execFile(setpriv, ['--help'], { timeout: 2_000 }, (_err, stdout) => resolve(String(stdout ?? '')));
    });
    return help.includes('--pdeathsig') ? [setpriv, '--pdeathsig', 'KILL', '--'] : [];
  }

  private async writePidFile(pgid: number, token: string): Promise<void> {
    const { pidFile, logger } = this.options;
    if (!pidFile || !pgid) return;
    const tmp = `${pidFile}.${process.pid}.tmp`;
    await fsp
      .writeFile(tmp, JSON.stringify({ pgid, token }) + '\n')
      .then(() => fsp.rename(tmp, pidFile))
      .catch(async (err: unknown) => {
        // Nothing half-written is left: the next agent reads only the pidfile itself.
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
        logger.warn('could not write the tritonserver pidfile', { pidFile, error: messageOf(err) });
      });
  }

  private async removePidFile(): Promise<void> {
    if (this.options.pidFile) await fsp.rm(this.options.pidFile, { force: true }).catch(() => undefined);
  }

  private logLine(line: string, stream: 'stdout' | 'stderr'): void {
    this.lastLines.push(line);
    if (this.lastLines.length > LAST_LINES) this.lastLines.shift();
    if (GRPC_STARTED.test(line)) this.wake?.();
    const fields = { source: 'tritonserver', stream };
    this.options.logger.relay(levelOf(line), line, fields);
  }

  private async waitReady(r: Running): Promise<void> {
    const { startupTimeoutMs, probe } = this.options;
    const interval = this.options.probeIntervalMs ?? 100;
    const deadline = this.clock.now() + startupTimeoutMs;
    for (;;) {
      if (this.stopping)
        throw new AgentError(ErrorCode.TritonUnavailable, 'tritonserver was stopped while starting');
      if (r.exit) {
        await r.exited;
        const tail = this.lastLines.slice(-5).join(' | ');
        throw new AgentError(
          ErrorCode.TritonUnavailable,
          `tritonserver ${describeExit(r.exit)} before it was ready` + (tail ? `: ${tail}` : ''),
        );
      }
      if (this.clock.now() >= deadline) {
        throw new AgentError(
          ErrorCode.TritonUnavailable,
          `tritonserver did not answer ServerReady within ${startupTimeoutMs} ms (TRITON_STARTUP_TIMEOUT_MS)`,
        );
      }
      if (await probe().catch(() => false)) {
        if (!r.exit) return;
        continue;
      }
      const wait = wakeableSleep(this.clock, Math.min(interval, deadline - this.clock.now()));
      this.wake = wait.wake;
      await wait.done;
      this.wake = undefined;
    }
  }

  /** An exit after ready: unexpected unless stopping. */
  private onExit(r: Running, info: ExitInfo): void {
    if (this.running !== r) return;
    this.running = undefined;
    // Whatever it started dies with it: a survivor would keep Triton's ports and answer for it.
    killGroup(r.pid);
    if (this.stopping) return;
    const ranMs = this.now() - this.readyAt;
    if (ranMs >= (this.options.stableAfterMs ?? 60_000)) this.failures = 0;
    this.stateValue = 'restarting';
    this.options.logger.error('tritonserver exited unexpectedly; restarting it', {
      pid: r.pid,
      code: info.code,
      signal: info.signal,
      lastLines: this.lastLines.slice(-5),
    });
    void this.restartLoop();
  }

  private async restartLoop(): Promise<void> {
    const { restartBackoffMs, maxRestartBackoffMs, logger } = this.options;
    while (!this.stopping) {
      const delayMs = backoffMs(this.failures, { baseMs: restartBackoffMs, maxMs: maxRestartBackoffMs });
      this.failures++;
      logger.info('restarting tritonserver', { delayMs, attempt: this.failures });
      const wait = wakeableSleep(this.clock, delayMs);
      this.cancelWait = wait.wake;
      await wait.done;
      this.cancelWait = undefined;
      if (this.stopping) return;
      try {
        await this.launch();
      } catch (err) {
        if (this.stopping) return;
        logger.error('tritonserver restart failed', { attempt: this.failures, error: messageOf(err) });
        continue;
      }
      this.restarts++;
      logger.info('tritonserver restarted', { restarts: this.restarts });
      await this.options.onRestarted?.().catch((err: unknown) => {
        logger.error('bringing models back after the tritonserver restart failed', { error: messageOf(err) });
      });
      return;
    }
  }

  /** SIGTERM, SIGKILL after `graceMs`; resolves once it exited (or the SIGKILL wait passed). */
  private async terminate(r: Running, graceMs = this.options.stopGraceMs): Promise<void> {
    const waitExit = (ms: number) => settlesWithin(r.exited, ms, this.clock);
    if (graceMs > 0) {
      this.signal('SIGTERM', r);
      if (await waitExit(graceMs)) return;
      this.options.logger.warn('tritonserver did not exit after SIGTERM; killing it', {
        pid: r.pid,
        graceMs,
      });
    }
    this.signal('SIGKILL', r);
    if (!(await waitExit(KILL_WAIT_MS))) {
      this.options.logger.error('tritonserver did not exit after SIGKILL', { pid: r.pid });
    }
  }

  /** Signals the child's whole process group (falling back to the child alone). */
  private signal(sig: NodeJS.Signals, r: Running | undefined = this.running): void {
    if (!r || !r.pid || r.exit) return;
    try {
      process.kill(-r.pid, sig);
    } catch {
      try {
        r.process.kill(sig);
      } catch {
        // Already gone.
      }
    }
  }
}
