import { run } from './exec.js';

/** One packet as tshark decodes it: the independent reference for what a capture holds. */
export interface TsharkPacket {
  readonly frameLength: number;
  readonly capturedLength: number;
  readonly src?: string;
  readonly dst?: string;
  readonly proto?: 'tcp' | 'udp';
  readonly sport?: number;
  readonly dport?: number;
  /** TCP payload bytes. */
  readonly tcpLength?: number;
  readonly syn?: boolean;
}

const fields = [
  'frame.len',
  'frame.cap_len',
  'ip.src',
  'ip.dst',
  'ipv6.src',
  'ipv6.dst',
  'tcp.srcport',
  'tcp.dstport',
  'udp.srcport',
  'udp.dstport',
  'tcp.len',
  'tcp.flags.syn',
];

/**
 * tshark's `-T fields` lines for a capture (first occurrence of each field, tab-separated, one
 * line per frame); throws when tshark reports any problem with the file.
 */
export async function tsharkFieldLines(file: string, names: readonly string[]): Promise<string[]> {
  const result = await run(
    'tshark',
    ['-n', '-r', file, '-T', 'fields', '-E', 'occurrence=f', ...names.flatMap((f) => ['-e', f])],
    { check: false },
  );
  const problems = result.stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.includes('Running as user'));
  if (result.code !== 0 || problems.length > 0) {
    throw new Error(`tshark could not read ${file}: ${problems.join(' | ')}`);
  }
  return result.stdout.split('\n').filter((line) => line !== '');
}

/** Reads a capture with tshark; throws when tshark reports any problem with the file. */
export async function tsharkRead(file: string): Promise<TsharkPacket[]> {
  return (await tsharkFieldLines(file, fields)).map((line) => {
    const [len, cap, ip4s, ip4d, ip6s, ip6d, ts, td, us, ud, tlen, syn] = line.split('\t');
    const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
    const proto = ts ? 'tcp' : us ? 'udp' : undefined;
    return {
      frameLength: Number(len),
      capturedLength: Number(cap),
      ...((ip4s || ip6s) && { src: ip4s || ip6s, dst: ip4d || ip6d }),
      ...(proto && {
        proto,
        sport: num(ts || us),
        dport: num(td || ud),
      }),
      ...(proto === 'tcp' && { tcpLength: num(tlen) ?? 0, syn: syn === '1' || syn === 'True' }),
    };
  });
}
