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
 * The script is a constant and tcpdump's pid is its argument (`$1`), never part of the script,
 * so nothing from outside is interpreted by the shell.
 */
import { spawn } from 'node:child_process';

const SCRIPT = [
  'read -r word',
  // Released: tcpdump has exited, and its pid may belong to another process by now.
  '[ "$word" = release ] && exit 0',
  'sleep "$2"',
  // Only a tcpdump is signalled (the pid could have been reused in the meantime).
  '[ "$(cat "/proc/$1/comm" 2>/dev/null)" = tcpdump ] && kill -INT "$1" 2>/dev/null',
  'exit 0',
].join('\n');

export interface TcpdumpGuard {
  /** tcpdump has exited (or is being stopped by this process): the guard ends without a signal. */
  release(): void;
}

/**
 * Starts the guard of tcpdump `pid`; undefined when no shell could be started (the caller then
 * keeps tcpdump's immediate parent-death signal).
 */
export function startTcpdumpGuard(
  pid: number,
  delayMs: number,
  shell = '/bin/sh',
): TcpdumpGuard | undefined {
  let guard;
  try {
    guard = spawn(
      shell,
      ['-c', SCRIPT, 'wirewatch-tcpdump-guard', String(pid), String(delayMs / 1000)],
      {
        stdio: ['pipe', 'ignore', 'ignore'],
        // Its own process group: a Ctrl-C at the terminal does not end it.
        detached: true,
      },
    );
  } catch {
    return undefined;
  }
  guard.on('error', () => undefined);
  guard.stdin.on('error', () => undefined);
  // Neither the guard nor its pipe keeps this process alive.
  guard.unref();
  (guard.stdin as unknown as { unref?: () => void }).unref?.();
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      guard.stdin.end('release\n');
    },
  };
}
