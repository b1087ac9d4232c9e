import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { systemClock } from '../time';

/**
 * What the supervisor needs from Linux's /proc to own tritonserver's whole process group: who is still in
 * a group, whether a process carries the agent's token (so a pidfile left by an earlier agent never kills
 * a stranger that reused the id), and who holds a TCP port. Every call is asynchronous and bounded by the
 * number of processes; on a system without /proc they report nothing.
 */

/** The environment variable that marks every process the agent's tritonserver started. */
export const GROUP_TOKEN_ENV = 'MME_AGENT_TRITON_TOKEN';

/** A fresh token for one tritonserver start. */
export function newGroupToken(): string {
  return randomBytes(12).toString('hex');
}

async function pids(): Promise<number[]> {
  const names = await fsp.readdir('/proc').catch(() => [] as string[]);
  return names.filter((n) => /^\d+$/.test(n)).map(Number);
}

/** The process group of `pid`, from /proc/<pid>/stat (undefined once it is gone). */
async function groupOf(pid: number): Promise<number | undefined> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgrp = Number(rest[2]);
  return Number.isInteger(pgrp) ? pgrp : undefined;
}

/** Living members of process group `pgid` (zombies included until reaped). */
export async function groupMembers(pgid: number): Promise<number[]> {
  const all = await pids();
  const groups = await Promise.all(all.map(groupOf));
  return all.filter((_, i) => groups[i] === pgid);
}

/** True when the process's environment holds `GROUP_TOKEN_ENV=token`. */
export async function carriesToken(pid: number, token: string): Promise<boolean> {
  const env = await fsp.readFile(`/proc/${pid}/environ`).catch(() => undefined);
  if (!env) return false;
  return env.toString('latin1').split('\0').includes(`${GROUP_TOKEN_ENV}=${token}`);
}

/** A process's command line, for messages (its first 200 characters). */
export async function commandOf(pid: number): Promise<string> {
  const raw = await fsp.readFile(`/proc/${pid}/cmdline`).catch(() => undefined);
  return raw ? raw.toString('utf8').split('\0').filter(Boolean).join(' ').slice(0, 200) : '';
}

/** SIGKILLs a whole process group; false when it had no member left. */
export function killGroup(pgid: number): boolean {
  try {
    process.kill(-pgid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Waits (polling /proc, at most `ms`) until group `pgid` has no member; resolves false if some remain. */
export async function groupGone(pgid: number, ms: number): Promise<boolean> {
  const until = systemClock.now() + ms;
  for (;;) {
    const left = await groupMembers(pgid);
    // A killed member of our own group stays a zombie until node reaps it; signal 0 tells.
    const alive = left.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    if (alive.length === 0) return true;
    if (systemClock.now() >= until) return false;
    await systemClock.sleep(25);
  }
}

/** The inodes of TCP sockets listening on `port` (any address), from /proc/net/tcp and tcp6. */
async function listeningInodes(port: number): Promise<Set<string>> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await fsp.readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode: st 0A is LISTEN.
      if (f.length < 10 || f[3] !== '0A' || !f[1].endsWith(`:${hex}`)) continue;
      inodes.add(f[9]);
    }
  }
  return inodes;
}

/** Who listens on a TCP port: `{ pid, command }` (pid 0 when the holder cannot be seen), or undefined. */
export async function portHolder(port: number): Promise<{ pid: number; command: string } | undefined> {
  const inodes = await listeningInodes(port);
  if (inodes.size === 0) return undefined;
  const wanted = new Set([...inodes].map((i) => `socket:[${i}]`));
  for (const pid of await pids()) {
    const dir = `/proc/${pid}/fd`;
    const fds = await fsp.readdir(dir).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await fsp.readlink(path.join(dir, fd)).catch(() => '');
      if (wanted.has(link)) return { pid, command: await commandOf(pid) };
    }
  }
  return { pid: 0, command: '' };
}

/**
 * The TCP ports a tritonserver command line listens on (Triton's defaults 8000, 8001, 8002 where a port
 * is not given; a front end turned off with `--allow-*=false` listens on none).
 */
export function listenPorts(args: readonly string[]): number[] {
  const last = (flag: string): string | undefined => {
    let v: string | undefined;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a.startsWith(`${flag}=`)) v = a.slice(flag.length + 1);
      else if (a === flag && i + 1 < args.length) v = args[++i];
    }
    return v;
  };
  const on = (flag: string) => !/^(false|0|no)$/i.test(last(flag) ?? 'true');
  const ports: number[] = [];
  const add = (allow: string, flag: string, fallback: number) => {
    if (!on(allow)) return;
    const p = Number(last(flag) ?? fallback);
    if (Number.isInteger(p) && p > 0 && p < 65536) ports.push(p);
  };
  add('--allow-http', '--http-port', 8000);
  add('--allow-grpc', '--grpc-port', 8001);
  add('--allow-metrics', '--metrics-port', 8002);
  return ports;
}

/** Where `bin` resolves on PATH (or itself when it names a path); undefined when no executable is there. */
export async function resolveExecutable(
  bin: string,
  envPath: string | undefined,
): Promise<string | undefined> {
  const candidates = bin.includes('/')
    ? [bin]
    : (envPath ?? '')
        .split(path.delimiter)
        .filter(Boolean)
        .map((dir) => path.join(dir, bin));
  for (const c of candidates) {
    const st = await fsp.stat(c).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (
      await fsp.access(c, 1).then(
        () => true,
        () => false,
      )
    )
      return c;
  }
  return undefined;
}
