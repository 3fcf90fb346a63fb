/**
 * A steady stream of numbered UDP datagrams from a lab host (seq-traffic.mjs), and the
 * numbered datagrams a capture file holds, as tshark decodes them: which were captured, once,
 * and when.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LabHost } from './lab.js';
import { tsharkFieldLines } from './tshark.js';

const seqScript = fileURLToPath(new URL('./seq-traffic.mjs', import.meta.url));

/** Numbered datagrams on their way; see seq-traffic.mjs. */
export interface SeqStream {
  readonly sport: number;
  readonly dport: number;
  /** Datagrams sent so far. */
  sent(): number;
  /** Waits until at least `n` datagrams have been sent. */
  reach(n: number): Promise<void>;
  /** Stops sending; resolves with the totals. */
  stop(): Promise<{ sent: number; echoed: number }>;
}

export interface SeqFlow {
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  /** An echo server listens there (each datagram waits up to 500 ms for its echo). */
  readonly dport: number;
  /** Payload bytes; default 100. */
  readonly size?: number;
  /** Pause after each echo; default 20 ms. */
  readonly gapMs?: number;
}

/**
 * Starts numbered datagrams from `host` (inside its namespace). The caller stops the stream,
 * or kills `process` on clean-up; `ended` resolves when it has exited.
 */
export function startSeqStream(
  host: LabHost,
  flow: SeqFlow,
): SeqStream & { readonly process: ChildProcess; readonly ended: Promise<void> } {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      host.netns,
      process.execPath,
      seqScript,
      JSON.stringify({ size: 100, gapMs: 20, ...flow }),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let sent = 0;
  let last = '';
  let buffered = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (/^\d+$/.test(line)) sent = Number(line);
      else if (line !== '') last = line;
    }
    for (const w of waiters) w();
  });
  const ended = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    process: child,
    ended,
    sport: flow.sport,
    dport: flow.dport,
    sent: () => sent,
    reach: (n) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (sent >= n) {
            waiters.delete(check);
            resolve();
          } else if (child.exitCode !== null) {
            waiters.delete(check);
            reject(new Error(`traffic ended after ${sent} datagrams`));
          }
        };
        waiters.add(check);
        check();
      }),
    stop: async () => {
      child.stdin.end();
      await ended;
      return JSON.parse(last) as { sent: number; echoed: number };
    },
  };
}

/** One numbered datagram in a capture file, as tshark decodes it. */
export interface SeqPacket {
  readonly sport: number;
  readonly dport: number;
  readonly seq: number;
  /** The capture's stamp (tshark's frame.time_epoch), ns since the epoch. */
  readonly timeNs: bigint;
}

/**
 * The numbered datagrams in a capture file, in file order; throws when tshark reports any
 * problem with the file (a cut record, a bad header).
 */
export async function seqPackets(file: string): Promise<SeqPacket[]> {
  const fields = ['udp.srcport', 'udp.dstport', 'udp.payload', 'frame.time_epoch'];
  const packets: SeqPacket[] = [];
  for (const line of await tsharkFieldLines(file, fields)) {
    const [sport, dport, payload, time] = line.split('\t');
    // "WWSQ" in hex, then the number.
    if (payload === undefined || !payload.replace(/:/g, '').startsWith('57575351')) continue;
    const hex = payload.replace(/:/g, '');
    packets.push({
      sport: Number(sport),
      dport: Number(dport),
      seq: parseInt(hex.slice(8, 16), 16),
      timeNs: epochNs(time ?? '0'),
    });
  }
  return packets;
}

/** A stamp as tshark prints frame.time_epoch ("1765147200.123456000"), in ns. */
function epochNs(time: string): bigint {
  const [sec, frac = ''] = time.split('.');
  return BigInt(sec!) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9));
}
