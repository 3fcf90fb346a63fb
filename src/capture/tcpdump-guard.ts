/**
 * Stops a single-file capture's tcpdump when the process that runs it dies, but only after the
 * kernel has handed tcpdump the packets it captured before the death.
 *
 * tcpdump gets packets a TPACKET_V3 block at a time (KERNEL_BLOCK_TIMEOUT_MS); a SIGINT at the
 * moment of death (`setpriv --pdeathsig INT`) lost the block not yet handed over: up to the last
 * second of packets of a capture whose agent was killed. The guard is a tiny `sh` whose stdin is
 * a pipe from this process. The kernel closes the pipe when this process dies, however it dies;
 * the guard then waits, and sends SIGINT to tcpdump (which flushes its buffer and exits). A
 * capture that ends normally releases its guard first.
 *
 * The pid alone does not name tcpdump: by the time the guard wakes, tcpdump may have exited and
 * its pid gone to another process (another capture's tcpdump, even). So the guard is also given
 * tcpdump's start time (field 22 of /proc/PID/stat, read here when the guard starts) and signals
 * only a process with that pid, that name and that start time.
 *
 * The script is a constant and its values (pid, start time, delay) are its arguments, never part
 * of the script, so nothing from outside is interpreted by the shell.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';

const SCRIPT = [
  'pid=$1 start=$2',
  'read -r word',
  // Released: tcpdump has exited, and its pid may belong to another process by now.
  '[ "$word" = release ] && exit 0',
  // Some sleeps take whole seconds only and fail at once on "1.2": then the rounded-up delay.
  'sleep "$3" 2>/dev/null || sleep "$4"',
  '[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tcpdump ] || exit 0',
  'stat=$(cat "/proc/$pid/stat" 2>/dev/null) || exit 0',
  // The name (field 2) may hold spaces and parentheses: fields are counted after its last ")".
  'set -f',
  'set -- ${stat##*") "}',
  // The first field left is field 3 (state); field 22 is the start time.
  '[ "$#" -ge 20 ] || exit 0',
  'shift 19',
  '[ "$1" = "$start" ] && kill -INT "$pid" 2>/dev/null',
  'exit 0',
].join('\n');

/** The name the guard runs under (`$0`); its first argument is tcpdump's pid. */
export const GUARD_NAME = 'wirewatch-tcpdump-guard';

export interface TcpdumpGuard {
  /** tcpdump has exited (or is being stopped by this process): the guard ends without a signal. */
  release(): void;
}

export interface TcpdumpGuardOptions {
  /** How long the guard waits after this process's death before it signals tcpdump. */
  readonly delayMs: number;
  /** Default /bin/sh. */
  readonly shell?: string;
  /** tcpdump's start time (clock ticks since boot); default read from /proc/PID/stat now. */
  readonly startTime?: string;
}

/**
 * The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or
 * undefined when the process is gone (or there is no /proc).
 */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/**
 * Spawns the guard's shell; its stdin is the pipe whose end (without `release`) sets it off.
 * Throws when the shell cannot be spawned. startTcpdumpGuard is the way in; tests use this to
 * close the pipe as a death would.
 */
export function spawnGuard(
  pid: number,
  startTime: string,
  options: Pick<TcpdumpGuardOptions, 'delayMs' | 'shell'>,
): ChildProcessByStdio<Writable, null, null> {
  const seconds = Math.max(0, options.delayMs) / 1000;
  return spawn(
    options.shell ?? '/bin/sh',
    ['-c', SCRIPT, GUARD_NAME, String(pid), startTime, String(seconds), String(Math.ceil(seconds))],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
      // Its own process group: a Ctrl-C at the terminal does not end it.
      detached: true,
    },
  );
}

/**
 * Starts the guard of tcpdump `pid`; undefined when no shell could be started or tcpdump is
 * already gone (the caller then keeps tcpdump's immediate parent-death signal).
 */
export function startTcpdumpGuard(
  pid: number,
  options: TcpdumpGuardOptions,
): TcpdumpGuard | undefined {
  const startTime = options.startTime ?? processStartTime(pid);
  if (startTime === undefined) return undefined;
  let guard;
  try {
    guard = spawnGuard(pid, startTime, options);
  } catch {
    return undefined;
  }
  guard.on('error', () => undefined);
  guard.stdin.on('error', () => undefined);
  // Neither the guard nor its pipe keeps this process alive.
  guard.unref();
  // A 'pipe' stdio is a net.Socket, though typed as a Writable.
  if (guard.stdin instanceof Socket) guard.stdin.unref();
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      guard.stdin.end('release\n');
    },
  };
}
