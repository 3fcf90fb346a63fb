/**
 * Test helpers for src/pcap: temp dirs, and the real tcpdump and tshark as references. Test
 * support, not part of the build (tsconfig.build.json builds only test/lab of test/).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { decodePacket } from '../../src/pcap/decode.js';
import { createPcapParser, openPcapFile } from '../../src/pcap/reader.js';
import type { DecodedPacket } from '../../src/pcap/types.js';

export const TSHARK = '/usr/bin/tshark';
export const TCPDUMP = '/usr/bin/tcpdump';

/** True when this process may capture packets (tcpdump on lo and any needs root). */
export const isRoot = process.getuid?.() === 0;

/** A fresh temp dir; remove it with {@link removeTempDir}. */
export function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'wirewatch-pcap-test-'));
}

export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

export interface ToolResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program with an argument array (never a shell) and collects its output. */
export function runTool(command: string, args: readonly string[]): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * Runs `tcpdump -d` on a filter expression (root: it opens lo); returns the number of BPF
 * instructions. Rejects when tcpdump refuses the expression.
 */
export async function bpfInstructions(expression: string): Promise<number> {
  const result = await runTool(TCPDUMP, ['-d', '-i', 'lo', expression]);
  if (result.code !== 0) throw new Error(`tcpdump -d refused ${expression}: ${result.stderr}`);
  return result.stdout.trim().split('\n').length;
}

export interface TsharkOptions {
  /** Print every occurrence of a field, comma-separated (default: the first only). */
  readonly allOccurrences?: boolean;
  /** More tshark arguments, e.g. `-o ip.defragment:FALSE`. */
  readonly args?: readonly string[];
}

/**
 * Reads a file with tshark and returns one row per frame with the given fields (first
 * occurrence of each). Rejects if tshark fails or complains about the file.
 */
export async function tsharkFields(
  file: string,
  fields: readonly string[],
  options: TsharkOptions = {},
): Promise<string[][]> {
  const occurrence = options.allOccurrences === true ? 'a' : 'f';
  const args = ['-r', file, '-n', '-T', 'fields', '-E', `occurrence=${occurrence}`];
  args.push('-E', 'separator=\t', '-E', 'aggregator=,', ...(options.args ?? []));
  for (const field of fields) args.push('-e', field);
  const result = await runTool(TSHARK, args);
  // tshark always warns about running as root; anything else on stderr is a real complaint.
  const complaints = result.stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.includes('Running as user "root"'));
  if (result.code !== 0 || complaints.length > 0) {
    throw new Error(`tshark failed on ${file} (exit ${result.code}): ${complaints.join('\n')}`);
  }
  return result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

export interface TcpdumpCapture {
  /**
   * Waits until the file holds at least `count` records (or `timeoutMs` passes), then stops
   * tcpdump and resolves with its exit status and stderr.
   */
  stop(count: number, timeoutMs?: number): Promise<ToolResult>;
  /** Kills tcpdump if it is still running. Safe to call more than once. */
  kill(): void;
}

/**
 * Starts tcpdump writing to `file` and resolves once it is listening. Packet-buffered (-U) so
 * the file can be watched while it grows.
 */
export async function startTcpdump(
  iface: string,
  file: string,
  filter: string,
  extraArgs: readonly string[] = [],
): Promise<TcpdumpCapture> {
  const child: ChildProcess = spawn(
    TCPDUMP,
    ['-i', iface, '-n', '-U', '-w', file, ...extraArgs, filter],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const exited = new Promise<ToolResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr }));
  });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then((r) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited early (${r.code}): ${r.stderr}`));
    });
  });
  try {
    await listening;
  } catch (error) {
    kill();
    throw error;
  }

  return {
    kill,
    async stop(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && (await countRecords(file)) < count) {
        await new Promise((r) => setTimeout(r, 50));
      }
      // Let tcpdump write what the kernel still holds for it.
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGINT');
      return exited;
    },
  };
}

async function countRecords(file: string): Promise<number> {
  try {
    const parser = createPcapParser();
    return parser.push(await readFile(file)).length;
  } catch {
    return 0;
  }
}

/** Parses an IPv4 or IPv6 address as tshark prints it into the decoder's bigint. */
export function parseIp(text: string): bigint {
  if (text.includes('.')) {
    return text.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** The facts both tshark and the decoder give about a packet, as comparable strings. */
export interface PacketSummary {
  vlanIds: string;
  direction: string;
  ipVersion: string;
  src: string;
  dst: string;
  ipLength: string;
  srcPort: string;
  dstPort: string;
  tcpFlags: string;
  seq: string;
  ack: string;
  payloadLength: string;
  icmpType: string;
  icmpCode: string;
}

const SUMMARY_FIELDS = [
  'vlan.id',
  'ieee8021ad.id',
  'sll.pkttype',
  'ip.src',
  'ip.dst',
  'ip.len',
  'ipv6.src',
  'ipv6.dst',
  'ipv6.plen',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.flags',
  'tcp.seq_raw',
  'tcp.ack_raw',
  'tcp.len',
  'udp.srcport',
  'udp.dstport',
  'udp.length',
  'icmp.type',
  'icmp.code',
  'icmpv6.type',
  'icmpv6.code',
] as const;

const PKTTYPES = ['inbound', 'broadcast', 'multicast', 'otherhost', 'outbound'];

/** Summaries of every packet of a file, as tshark decodes it (IP reassembly off). */
export async function tsharkSummaries(file: string): Promise<PacketSummary[]> {
  const rows = await tsharkFields(file, SUMMARY_FIELDS, {
    allOccurrences: true,
    args: ['-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE'],
  });
  return rows.map((row) => {
    // First occurrence of a field; vlan.id keeps them all.
    const f = (name: (typeof SUMMARY_FIELDS)[number]): string =>
      (row[SUMMARY_FIELDS.indexOf(name)] ?? '').split(',')[0] ?? '';
    const v6 = f('ipv6.src') !== '' && f('ip.src') === '';
    const tcpSeen = f('tcp.srcport') !== '';
    const udpSeen = f('udp.srcport') !== '';
    const pkttype = f('sll.pkttype');
    return {
      // tshark names 802.1ad service tags apart from 802.1Q tags; the lab's frames put them
      // outermost, as switches do.
      vlanIds: [row[1], row[0]].filter((ids) => ids !== undefined && ids !== '').join(','),
      direction: pkttype === '' ? '' : (PKTTYPES[Number(pkttype)] ?? ''),
      ipVersion: v6 ? '6' : f('ip.src') !== '' ? '4' : '',
      src:
        (v6 ? f('ipv6.src') : f('ip.src')) === ''
          ? ''
          : String(parseIp(v6 ? f('ipv6.src') : f('ip.src'))),
      dst:
        (v6 ? f('ipv6.dst') : f('ip.dst')) === ''
          ? ''
          : String(parseIp(v6 ? f('ipv6.dst') : f('ip.dst'))),
      ipLength: v6 ? String(Number(f('ipv6.plen')) + 40) : f('ip.len'),
      srcPort: tcpSeen ? f('tcp.srcport') : f('udp.srcport'),
      dstPort: tcpSeen ? f('tcp.dstport') : f('udp.dstport'),
      tcpFlags: tcpSeen ? String(parseInt(f('tcp.flags'), 16) & 0xff) : '',
      seq: f('tcp.seq_raw'),
      ack: tcpSeen ? f('tcp.ack_raw') : '',
      payloadLength: tcpSeen ? f('tcp.len') : udpSeen ? String(Number(f('udp.length')) - 8) : '',
      icmpType: v6 ? f('icmpv6.type') : f('icmp.type'),
      icmpCode: v6 ? f('icmpv6.code') : f('icmp.code'),
    };
  });
}

/** The same summary from the decoder. */
export function summarize(p: DecodedPacket): PacketSummary {
  const ports = p.tcp ?? p.udp;
  return {
    vlanIds: p.vlanIds.join(','),
    direction: p.direction ?? '',
    ipVersion: p.ip === undefined ? '' : String(p.ip.version),
    src: p.ip === undefined ? '' : String(p.ip.src),
    dst: p.ip === undefined ? '' : String(p.ip.dst),
    ipLength: p.ip === undefined ? '' : String(p.ip.length),
    srcPort: ports === undefined ? '' : String(ports.srcPort),
    dstPort: ports === undefined ? '' : String(ports.dstPort),
    tcpFlags: p.tcp === undefined ? '' : String(p.tcp.flags),
    seq: p.tcp === undefined ? '' : String(p.tcp.seq),
    ack: p.tcp === undefined ? '' : String(p.tcp.ack),
    payloadLength: ports === undefined ? '' : String(ports.payloadLength),
    icmpType: p.icmp === undefined ? '' : String(p.icmp.type),
    icmpCode: p.icmp === undefined ? '' : String(p.icmp.code),
  };
}

/** Decodes every packet of a file with wirewatch's reader and decoder. */
export async function decodeFile(file: string): Promise<DecodedPacket[]> {
  const reader = await openPcapFile(file);
  const packets: DecodedPacket[] = [];
  for await (const r of reader.records) packets.push(decodePacket(reader.header.linkType, r.data));
  return packets;
}
