/**
 * Everything wirewatch knows about the tcpdump process: where it is, how it is spawned (an
 * argument array, never a shell), what its stderr means.
 */
import { readFileSync } from 'node:fs';
import { access, constants, readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import path from 'node:path';

/**
 * How long the kernel may hold captured packets before tcpdump sees them. libpcap's TPACKET_V3
 * hands packets over a block at a time, when the block fills or after tcpdump's 1000 ms
 * timeout; a SIGINT loses the packets of a block not yet handed over. So a stop waits this long
 * before signalling. (--immediate-mode avoids the wait but multiplied tcpdump's CPU ~20 times
 * at full rate: docs/performance.md.)
 */
export const KERNEL_BLOCK_TIMEOUT_MS = 1200;

/** tcpdump's own ceiling for the snapshot length (MAXIMUM_SNAPLEN); `-s 0` means the same. */
export const MAX_SNAPLEN = 262144;

/**
 * How often tcpdump's buffered output is flushed (SIGUSR2) while someone watches the capture
 * live: its stdio buffer otherwise holds a quiet capture's packets until 4 KiB have gathered.
 */
export const LIVE_FLUSH_MS = 200;

/**
 * Whether a process handles a signal (its bit in /proc/PID/status SigCgt). tcpdump 4.99 flushes
 * its output on SIGUSR2; an older one would be killed by it, so it is only sent to a tcpdump
 * that catches it.
 */
export async function catchesSignal(pid: number, signal: NodeJS.Signals): Promise<boolean> {
  const number = osConstants.signals[signal];
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return mask !== undefined && ((BigInt(`0x${mask}`) >> BigInt(number - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** write(2) and writev(2), by architecture: what stdio flushes tcpdump's output with. */
const WRITE_SYSCALLS: Partial<Record<NodeJS.Architecture, readonly number[]>> = {
  x64: [1, 20],
  arm64: [64, 66],
};

/**
 * Where a process that has just been sent SIGSTOP stands: stopped inside a write(2) to its
 * standard output (`writing`), inside another system call (`waiting`: tcpdump waits for the
 * kernel's next block of packets, outside its output's stdio calls), in its own code (`running`:
 * tcpdump may be halfway through an fwrite of a packet into its stdio buffer), not stopped (yet)
 * after `waitMs` (a busy host), or unknown (no /proc, another architecture, the process is gone).
 */
export type OutputWriteState = 'writing' | 'waiting' | 'running' | 'not-stopped' | 'unknown';

/**
 * Reads {@link OutputWriteState} from /proc/PID/stat and /proc/PID/syscall. Synchronous: the
 * process is frozen meanwhile, so the answer holds until it is sent SIGCONT.
 */
export function outputWriteState(pid: number, waitMs = 5): OutputWriteState {
  const writes = WRITE_SYSCALLS[process.arch];
  if (writes === undefined) return 'unknown';
  const until = performance.now() + waitMs;
  try {
    // Stopping takes the target a moment (it may be running, or waiting for a core).
    while (processState(pid) !== 'T') {
      if (performance.now() > until) return 'not-stopped';
    }
    // "NR ARGS…" inside a system call; "-1 SP PC" in user code.
    const [nr, fd] = readFileSync(`/proc/${pid}/syscall`, 'utf8').split(' ');
    const number = Number(nr);
    if (!Number.isInteger(number)) return 'unknown';
    if (number < 0) return 'running';
    return writes.includes(number) && Number(fd) === 1 ? 'writing' : 'waiting';
  } catch {
    return 'unknown';
  }
}

/**
 * A process's state letter from /proc/PID/stat (R running, S sleeping, T stopped, …).
 * @throws when there is no such process or no /proc.
 */
export function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const end = stat.lastIndexOf(')');
  return stat.slice(end + 2, end + 3);
}

/** Counters tcpdump prints on SIGUSR1 and at exit. */
export interface TcpdumpStats {
  readonly captured: number;
  readonly receivedByFilter: number;
  readonly droppedByKernel: number;
  readonly droppedByInterface: number;
}

const counters = {
  captured: /(\d+) packets? captured/g,
  receivedByFilter: /(\d+) packets? received by filter/g,
  droppedByKernel: /(\d+) packets? dropped by kernel/g,
  droppedByInterface: /(\d+) packets? dropped by interface/g,
} as const;

/** The newest counters in tcpdump's stderr, or undefined when it printed none yet. */
export function parseTcpdumpStats(stderr: string): TcpdumpStats | undefined {
  const last = (re: RegExp): number | undefined => {
    let value: number | undefined;
    for (const match of stderr.matchAll(re)) value = Number(match[1]);
    return value;
  };
  const captured = last(counters.captured);
  if (captured === undefined) return undefined;
  return {
    captured,
    receivedByFilter: last(counters.receivedByFilter) ?? 0,
    droppedByKernel: last(counters.droppedByKernel) ?? 0,
    droppedByInterface: last(counters.droppedByInterface) ?? 0,
  };
}

/** Why tcpdump (or `ip netns exec`) could not start, from its stderr. */
export function explainTcpdumpFailure(stderr: string, iface: string, netns?: string): string {
  const where = netns === undefined ? '' : ` in network namespace ${netns}`;
  if (/Cannot open network namespace/.test(stderr)) {
    return `network namespace ${netns ?? ''} does not exist`;
  }
  if (/No such device/.test(stderr)) return `interface ${iface} does not exist${where}`;
  if (/not up/.test(stderr)) return `interface ${iface} is down${where}`;
  if (/permission|Operation not permitted/i.test(stderr)) {
    return `permission denied capturing on ${iface}${where} (run as root or grant CAP_NET_RAW and CAP_NET_ADMIN)`;
  }
  const line = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('tcpdump: listening on'))
    .at(-1);
  return line === undefined
    ? 'tcpdump exited without a message'
    : `tcpdump: ${line.replace(/^tcpdump: /, '')}`;
}

/** Finds an executable on PATH (or checks an explicit path); undefined when there is none. */
export async function findExecutable(
  name: string,
  searchPath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
): Promise<string | undefined> {
  const candidates = name.includes('/')
    ? [name]
    : [...searchPath.split(':'), '/usr/sbin', '/usr/bin', '/sbin'].map((dir) =>
        path.join(dir, name),
      );
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next folder
    }
  }
  return undefined;
}

export interface TcpdumpArgsOptions {
  readonly iface: string;
  /** 1..MAX_SNAPLEN. */
  readonly snaplen: number;
  /** Kernel buffer in KiB (tcpdump -B). */
  readonly bufferKiB: number;
  /** '' for no filter. */
  readonly bpf: string;
}

/**
 * tcpdump's arguments: live capture, pcap on stdout, no name resolution. Not packet-buffered
 * (-U): flushing after every packet costs a write(2) per packet, which at full rate multiplied
 * tcpdump's CPU many times over (docs/performance.md); SIGINT still flushes every packet.
 */
export function tcpdumpArgs(options: TcpdumpArgsOptions): string[] {
  const args = [
    '-i',
    options.iface,
    '-n',
    // Debian's tcpdump switches to user "tcpdump" once the interface is open, and a change of
    // user clears the parent-death signal that stops it when wirewatch dies. With -w it never
    // dissects packets, so staying root costs no exposure to its protocol parsers.
    '-Z',
    'root',
    '-w',
    '-',
    '-s',
    String(options.snaplen),
    '-B',
    String(options.bufferKiB),
  ];
  // The expression is one argument generated from the typed filter model; `--` ends options.
  if (options.bpf !== '') args.push('--', options.bpf);
  return args;
}
