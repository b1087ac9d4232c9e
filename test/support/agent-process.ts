import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const TSX_LOADER = path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
/** Holds `tritonserver`, the stand-in running the Triton emulator's CLI. */
export const STANDIN_BIN = path.join(ROOT, 'test', 'support', 'bin');

/** One parsed JSON log line of the agent. */
export type LogEntry = Record<string, unknown> & { level: string; message: string };

export interface AgentProcess {
  child: ChildProcess;
  /** Every JSON log line so far, in order. */
  logs: LogEntry[];
  /** Everything written to stderr and any stdout line that is not JSON. */
  text(): string;
  /** The first log line (already written or still to come) that matches; rejects if the process exits. */
  waitForLog(match: (e: LogEntry) => boolean, what?: string): Promise<LogEntry>;
  /** Resolves with the exit status once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The agent's base URL, once it logged that it listens. */
  url(): Promise<string>;
  /** Kills the agent and every tritonserver it started, if still running (test cleanup). */
  kill(): Promise<void>;
}

/** A port that was free a moment ago (for tritonserver, whose ports the agent must know in advance). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `src/main.ts` as its own process (one process: node with tsx's loader, so signals and exit codes
 * are the agent's own), with `tritonserver` on PATH resolving to the stand-in.
 */
export function startAgentProcess(
  env: Record<string, string>,
  entry: string[] = [path.join(ROOT, 'src', 'main.ts')],
): AgentProcess {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, ...entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      PATH: `${STANDIN_BIN}${path.delimiter}${process.env.PATH ?? ''}`,
      SAGEMAKER_BIND_TO_PORT: '0',
      AGENT_BIND_HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogEntry[] = [];
  let text = '';
  const waiters = new Set<{ match: (e: LogEntry) => boolean; resolve: (e: LogEntry) => void }>();
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      let entry: LogEntry;
      try {
        entry = JSON.parse(line) as LogEntry;
      } catch {
        text += line + '\n';
        continue;
      }
      logs.push(entry);
      for (const w of waiters) {
        if (w.match(entry)) {
          waiters.delete(w);
          w.resolve(entry);
        }
      }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (text += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const tritonPids = () =>
    logs.filter((e) => e.message === 'tritonserver started').map((e) => e.pid as number);

  const waitForLog = (match: (e: LogEntry) => boolean, what = 'a log line'): Promise<LogEntry> => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogEntry>((resolve, reject) => {
      const w = { match, resolve };
      waiters.add(w);
      void exited.then(({ code, signal }) => {
        if (!waiters.has(w)) return;
        waiters.delete(w);
        reject(
          new Error(
            `agent exited (code ${code}, signal ${signal}) before ${what}:\n${text}\n${JSON.stringify(logs)}`,
          ),
        );
      });
    });
  };

  return {
    child,
    logs,
    text: () => text,
    waitForLog,
    exited,
    url: async () => {
      const e = await waitForLog((l) => l.message === 'agent listening', 'listening');
      return `http://127.0.0.1:${e.port as number}`;
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      for (const pid of tritonPids()) {
        if (!alive(pid)) continue;
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    },
  };
}

/** True while a process with this id exists. */
export { alive as processAlive };
