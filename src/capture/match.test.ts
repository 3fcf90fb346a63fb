import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePacket } from '../pcap/decode.js';
import type { DecodedPacket, PacketDirection } from '../pcap/types.js';
import { compileBpf } from './bpf.js';
import { parseFilters } from './filter.js';
import type { HostAddress, PacketCaptureFilter } from './filter-spec.js';
import { parseIpAddress } from './ip.js';
import { matchesFilters } from './match.js';
import { random } from '../../test/support/random.js';

const execFileAsync = promisify(execFile);

const addr = (text: string): { family: 4 | 6; value: bigint } => {
  const a = parseIpAddress(text);
  if (a === undefined) throw new Error(`bad test address ${text}`);
  return a;
};

const HOST4 = '10.77.1.1';
const HOST6 = 'fd77::1:1';
const HOSTS: HostAddress[] = [addr(HOST4), addr(HOST6)];

// ---------------------------------------------------------------------------------------------
// Hand-made packets

interface PacketOptions {
  readonly src: string;
  readonly dst: string;
  readonly tcp?: [number, number];
  readonly udp?: [number, number];
  readonly icmp?: boolean;
  /** 'first': a first fragment (ports present); 'later': a non-first fragment. */
  readonly frag?: 'first' | 'later';
  readonly direction?: PacketDirection;
  readonly vlan?: number;
}

function pkt(o: PacketOptions): DecodedPacket {
  const src = addr(o.src);
  const dst = addr(o.dst);
  const version = src.family;
  const protocol = o.tcp ? 6 : o.udp ? 17 : version === 4 ? 1 : 58;
  const later = o.frag === 'later';
  return {
    linkType: 1,
    vlanIds: o.vlan === undefined ? [] : [o.vlan],
    ...(o.direction && { direction: o.direction }),
    ip: {
      version,
      src: src.value,
      dst: dst.value,
      protocol,
      length: 100,
      fragment: o.frag !== undefined,
      fragmentOffset: later ? 3 : 0,
    },
    ...(o.tcp &&
      !later && {
        tcp: {
          srcPort: o.tcp[0],
          dstPort: o.tcp[1],
          flags: 0x10,
          seq: 1,
          ack: 1,
          payloadLength: 0,
        },
      }),
    ...(o.udp && !later && { udp: { srcPort: o.udp[0], dstPort: o.udp[1], payloadLength: 0 } }),
    ...(o.icmp && !later && { icmp: { version, type: version === 4 ? 8 : 128, code: 0 } }),
  };
}

const ARP: DecodedPacket = { linkType: 1, vlanIds: [] };

interface MatchCase {
  readonly name: string;
  readonly filters: PacketCaptureFilter[];
  readonly hosts?: HostAddress[];
  readonly yes: DecodedPacket[];
  readonly no: DecodedPacket[];
}

const R4 = '10.77.2.5';
const R6 = 'fd77::2:5';

const matchCases: MatchCase[] = [
  {
    name: 'local port 80 (a server on the host)',
    filters: [{ localPort: '80' }],
    yes: [
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80] }), // request in
      pkt({ src: HOST4, dst: R4, tcp: [80, 40000] }), // response out
      pkt({ src: R6, dst: HOST6, udp: [5000, 80] }),
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80], frag: 'first' }),
    ],
    no: [
      pkt({ src: HOST4, dst: R4, tcp: [40000, 80] }), // the host's own connection to a remote :80
      pkt({ src: R4, dst: HOST4, tcp: [80, 40000] }), // …and its response
      pkt({ src: R4, dst: '10.77.2.6', tcp: [40000, 80] }), // transit, not the host's
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80], frag: 'later' }),
      pkt({ src: R4, dst: HOST4, icmp: true }),
      ARP,
    ],
  },
  {
    name: 'remote port 80 (the host as a client)',
    filters: [{ remotePort: '80' }],
    yes: [
      pkt({ src: HOST4, dst: R4, tcp: [40000, 80] }),
      pkt({ src: R4, dst: HOST4, tcp: [80, 40000] }),
      pkt({ src: HOST6, dst: R6, tcp: [40000, 80] }),
    ],
    no: [
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80] }),
      pkt({ src: HOST4, dst: R4, tcp: [80, 40000] }),
    ],
  },
  {
    name: 'the Create example: 10.0.0.4 port 80 TCP',
    filters: [{ localIPAddress: '10.0.0.4', localPort: '80', protocol: 'TCP' }],
    yes: [
      pkt({ src: '10.0.0.4', dst: '1.2.3.4', tcp: [80, 5555] }),
      pkt({ src: '1.2.3.4', dst: '10.0.0.4', tcp: [5555, 80] }),
    ],
    no: [
      pkt({ src: '10.0.0.4', dst: '1.2.3.4', udp: [80, 5555] }),
      pkt({ src: '10.0.0.4', dst: '1.2.3.4', tcp: [5555, 80] }),
      pkt({ src: HOST4, dst: R4, tcp: [80, 5555] }),
    ],
  },
  {
    name: 'TCP alone',
    filters: [{ protocol: 'TCP' }],
    yes: [
      pkt({ src: R4, dst: '10.77.2.6', tcp: [1, 2] }),
      pkt({ src: R4, dst: HOST4, tcp: [1, 2], frag: 'later' }), // libpcap: protocol byte only
      pkt({ src: R6, dst: HOST6, tcp: [1, 2], frag: 'first' }), // through the fragment header
      pkt({ src: R6, dst: HOST6, tcp: [1, 2], frag: 'later' }),
    ],
    no: [pkt({ src: R4, dst: HOST4, udp: [1, 2] }), pkt({ src: R6, dst: HOST6, icmp: true }), ARP],
  },
  {
    name: 'UDP with a port range',
    filters: [{ protocol: 'udp', localPort: '8000-8100' }],
    yes: [
      pkt({ src: R4, dst: HOST4, udp: [1, 8000] }),
      pkt({ src: HOST6, dst: R6, udp: [8100, 1] }),
    ],
    no: [
      pkt({ src: R4, dst: HOST4, tcp: [1, 8050] }),
      pkt({ src: R4, dst: HOST4, udp: [1, 8101] }),
      pkt({ src: R6, dst: HOST6, udp: [1, 8050], frag: 'first' }), // no IPv6 fragment has ports
    ],
  },
  {
    name: 'Any with ports excludes ICMP',
    filters: [{ remotePort: '0-65535' }],
    yes: [pkt({ src: HOST4, dst: R4, udp: [1, 2] }), pkt({ src: R6, dst: HOST6, tcp: [1, 2] })],
    no: [
      pkt({ src: HOST4, dst: R4, icmp: true }),
      pkt({ src: HOST4, dst: R4, tcp: [1, 2], frag: 'later' }),
    ],
  },
  {
    name: 'remote IPv4 CIDR',
    filters: [{ remoteIPAddress: '10.77.2.0/24' }],
    yes: [
      pkt({ src: HOST4, dst: R4, icmp: true }),
      pkt({ src: R4, dst: HOST4, udp: [1, 2], frag: 'later' }),
    ],
    no: [
      pkt({ src: R4, dst: '10.77.2.6', tcp: [1, 2] }), // neither side is the host
      pkt({ src: HOST4, dst: '10.77.3.1', tcp: [1, 2] }),
      pkt({ src: HOST6, dst: R6, tcp: [1, 2] }),
    ],
  },
  {
    name: 'local addresses of both families',
    filters: [{ localIPAddress: '10.77.1.0/24;fd77::1:0/112' }],
    yes: [
      pkt({ src: '10.77.1.9', dst: R4, tcp: [1, 2] }),
      pkt({ src: R6, dst: 'fd77::1:9', icmp: true }),
    ],
    no: [
      pkt({ src: R4, dst: '10.77.2.6', tcp: [1, 2] }),
      pkt({ src: R6, dst: 'fd77::3:1', icmp: true }),
      ARP,
    ],
  },
  {
    name: 'local and remote sets identify the side by themselves',
    filters: [{ localIPAddress: '10.0.0.0/8', remoteIPAddress: '192.168.0.0/16' }],
    yes: [
      pkt({ src: '10.1.1.1', dst: '192.168.1.1', tcp: [1, 2] }),
      pkt({ src: '192.168.1.1', dst: '10.1.1.1', tcp: [1, 2] }),
    ],
    no: [
      pkt({ src: '10.1.1.1', dst: '10.2.2.2', tcp: [1, 2] }),
      pkt({ src: '192.168.1.1', dst: '192.168.1.2', udp: [1, 2] }),
    ],
  },
  {
    name: 'all four fields',
    filters: [
      {
        protocol: 'TCP',
        localIPAddress: HOST4,
        remoteIPAddress: R4,
        localPort: '22',
        remotePort: '1024-65535',
      },
    ],
    yes: [
      pkt({ src: R4, dst: HOST4, tcp: [50000, 22] }),
      pkt({ src: HOST4, dst: R4, tcp: [22, 50000] }),
    ],
    no: [
      pkt({ src: R4, dst: HOST4, tcp: [1000, 22] }),
      pkt({ src: R4, dst: HOST4, tcp: [50000, 23] }),
      pkt({ src: '10.77.2.6', dst: HOST4, tcp: [50000, 22] }),
    ],
  },
  {
    name: 'two filters OR-ed',
    filters: [
      { protocol: 'TCP', localPort: '22' },
      { protocol: 'UDP', remotePort: '53' },
    ],
    yes: [
      pkt({ src: R4, dst: HOST4, tcp: [50000, 22] }),
      pkt({ src: HOST6, dst: R6, udp: [50000, 53] }),
    ],
    no: [
      pkt({ src: R4, dst: HOST4, udp: [50000, 22] }),
      pkt({ src: HOST6, dst: R6, tcp: [50000, 53] }),
    ],
  },
  {
    name: 'a filter that matches everything',
    filters: [{ protocol: 'TCP', localPort: '22' }, {}],
    yes: [ARP, pkt({ src: R4, dst: '10.77.2.6', icmp: true })],
    no: [],
  },
  {
    name: 'no filters',
    filters: [],
    yes: [ARP, pkt({ src: R6, dst: R6, icmp: true })],
    no: [],
  },
  {
    name: 'an IPv6-only remote on an IPv4-only host never matches',
    filters: [{ remoteIPAddress: 'fd77::/64' }],
    hosts: [addr(HOST4)],
    yes: [],
    no: [pkt({ src: HOST6, dst: R6, tcp: [1, 2] }), pkt({ src: HOST4, dst: R4, tcp: [1, 2] })],
  },
  {
    name: 'VLAN tags are looked through (live-capture semantics)',
    filters: [{ localPort: '80' }],
    yes: [pkt({ src: R4, dst: HOST4, tcp: [40000, 80], vlan: 10 })],
    no: [pkt({ src: HOST4, dst: R4, tcp: [40000, 80], vlan: 10 })],
  },
  {
    name: 'no host addresses: the kernel direction decides',
    filters: [{ localPort: '80' }],
    hosts: [],
    yes: [
      pkt({ src: HOST4, dst: R4, tcp: [80, 40000], direction: 'outbound' }),
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80], direction: 'inbound' }),
      pkt({ src: R4, dst: '10.77.255.255', udp: [40000, 80], direction: 'broadcast' }),
      pkt({ src: R6, dst: 'ff02::1', udp: [40000, 80], direction: 'multicast' }),
      pkt({ src: R4, dst: R4, tcp: [40000, 80], direction: 'otherhost' }),
    ],
    no: [
      pkt({ src: HOST4, dst: R4, tcp: [40000, 80], direction: 'outbound' }),
      pkt({ src: R4, dst: HOST4, tcp: [80, 40000], direction: 'inbound' }),
      pkt({ src: R4, dst: HOST4, tcp: [40000, 80] }), // direction unknown
    ],
  },
  {
    name: 'no host addresses, protocol only: no direction needed',
    filters: [{ protocol: 'UDP' }],
    hosts: [],
    yes: [pkt({ src: R4, dst: HOST4, udp: [1, 2] })],
    no: [pkt({ src: R4, dst: HOST4, tcp: [1, 2], direction: 'inbound' })],
  },
  {
    name: 'no host addresses, local set given: the set decides',
    filters: [{ localIPAddress: HOST4 }],
    hosts: [],
    yes: [pkt({ src: R4, dst: HOST4, tcp: [1, 2] })],
    no: [pkt({ src: R4, dst: '10.77.2.6', tcp: [1, 2], direction: 'outbound' })],
  },
];

describe('matchesFilters on hand-made packets', () => {
  it.each(matchCases)('$name', ({ filters, hosts, yes, no }) => {
    const specs = parseFilters(filters);
    const options = { hostAddresses: hosts ?? HOSTS };
    yes.forEach((p, i) => expect(matchesFilters(specs, p, options), `yes[${i}]`).toBe(true));
    no.forEach((p, i) => expect(matchesFilters(specs, p, options), `no[${i}]`).toBe(false));
  });
});

// ---------------------------------------------------------------------------------------------
// Agreement with libpcap: the same synthetic pcap file through tcpdump and through the matcher.

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

function addressBytes(text: string): Buffer {
  const { family, value } = addr(text);
  const bytes = family === 4 ? 4 : 16;
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) {
    out[bytes - 1 - i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }
  return out;
}

interface FrameSpec {
  readonly src: string;
  readonly dst: string;
  readonly proto: 'tcp' | 'udp' | 'icmp';
  readonly srcPort: number;
  readonly dstPort: number;
  readonly frag?: 'first' | 'later';
  readonly vlan?: number;
}

function l4(spec: FrameSpec, v6: boolean): Buffer {
  switch (spec.proto) {
    case 'tcp': {
      const h = Buffer.alloc(20 + 8);
      h.writeUInt16BE(spec.srcPort, 0);
      h.writeUInt16BE(spec.dstPort, 2);
      h.writeUInt32BE(1000, 4);
      h.writeUInt8(5 << 4, 12);
      h.writeUInt8(0x18, 13); // PSH ACK
      h.writeUInt16BE(65535, 14);
      return h;
    }
    case 'udp': {
      const h = Buffer.alloc(8 + 8);
      h.writeUInt16BE(spec.srcPort, 0);
      h.writeUInt16BE(spec.dstPort, 2);
      h.writeUInt16BE(16, 4);
      return h;
    }
    case 'icmp': {
      const h = Buffer.alloc(8 + 8);
      h.writeUInt8(v6 ? 128 : 8, 0); // echo request
      // Bytes 4-7 (identifier, sequence) where ports would be, to catch a sloppy matcher.
      h.writeUInt16BE(spec.srcPort, 4);
      h.writeUInt16BE(spec.dstPort, 6);
      return h;
    }
  }
}

const PROTO = { tcp: 6, udp: 17, icmp: 1 } as const;

/** An Ethernet frame; a 'later' fragment carries bytes that look like the ports, as a trap. */
function frame(spec: FrameSpec): Buffer {
  const v6 = spec.src.includes(':');
  const transport = l4(spec, v6);
  const proto = v6 && spec.proto === 'icmp' ? 58 : PROTO[spec.proto];
  const payload =
    spec.frag === 'later' ? Buffer.concat([transport.subarray(0, 4), Buffer.alloc(12)]) : transport;
  let ip: Buffer;
  if (!v6) {
    const h = Buffer.alloc(20);
    h.writeUInt8(0x45, 0);
    h.writeUInt16BE(20 + payload.length, 2);
    h.writeUInt16BE(0x1234, 4);
    const flagsOffset = spec.frag === 'first' ? 0x2000 : spec.frag === 'later' ? 3 : 0;
    h.writeUInt16BE(flagsOffset, 6);
    h.writeUInt8(64, 8);
    h.writeUInt8(proto, 9);
    addressBytes(spec.src).copy(h, 12);
    addressBytes(spec.dst).copy(h, 16);
    ip = Buffer.concat([h, payload]);
  } else {
    const fragHeader = spec.frag === undefined ? Buffer.alloc(0) : Buffer.alloc(8);
    if (spec.frag !== undefined) {
      fragHeader.writeUInt8(proto, 0);
      fragHeader.writeUInt16BE(spec.frag === 'first' ? 1 : 3 << 3, 2);
      fragHeader.writeUInt32BE(0xabcd, 4);
    }
    const h = Buffer.alloc(40);
    h.writeUInt32BE(0x60000000, 0);
    h.writeUInt16BE(fragHeader.length + payload.length, 4);
    h.writeUInt8(spec.frag === undefined ? proto : 44, 6);
    h.writeUInt8(64, 7);
    addressBytes(spec.src).copy(h, 8);
    addressBytes(spec.dst).copy(h, 24);
    ip = Buffer.concat([h, fragHeader, payload]);
  }
  const macs = Buffer.from('020000000002020000000001', 'hex');
  const type = u16(v6 ? 0x86dd : 0x0800);
  const tag =
    spec.vlan === undefined ? Buffer.alloc(0) : Buffer.concat([u16(0x8100), u16(spec.vlan)]);
  return Buffer.concat([macs, tag, type, ip]);
}

/** An ARP request from the host's IPv4 address: an unqualified `src host` would match it. */
function arpFrame(senderIp: string, targetIp: string): Buffer {
  const body = Buffer.alloc(28);
  body.writeUInt16BE(1, 0);
  body.writeUInt16BE(0x0800, 2);
  body.writeUInt8(6, 4);
  body.writeUInt8(4, 5);
  body.writeUInt16BE(1, 6);
  addressBytes(senderIp).copy(body, 14);
  addressBytes(targetIp).copy(body, 24);
  return Buffer.concat([Buffer.from('ffffffffffff020000000001', 'hex'), u16(0x0806), body]);
}

/** A libpcap file (little-endian, microseconds, Ethernet); record i has ts_sec = i + 1. */
function pcapFile(frames: readonly Buffer[]): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20);
  const records = frames.map((data, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(i + 1, 0);
    r.writeUInt32LE(data.length, 8);
    r.writeUInt32LE(data.length, 12);
    return Buffer.concat([r, data]);
  });
  return Buffer.concat([header, ...records]);
}

/** The frame indices (from ts_sec) of the records in a libpcap file. */
function recordIndices(file: Buffer): Set<number> {
  const out = new Set<number>();
  let o = 24;
  while (o + 16 <= file.length) {
    out.add(file.readUInt32LE(o) - 1);
    o += 16 + file.readUInt32LE(o + 8);
  }
  return out;
}

function syntheticFrames(): { frames: Buffer[]; vlan: Set<number> } {
  const next = random(2026);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const peers4 = ['10.77.2.5', '10.77.2.200', '10.77.3.1', '10.77.3.130', '10.77.1.2', '10.77.9.9'];
  const peers6 = ['fd77::2:5', 'fd77::2:ff', 'fd77::3:1', 'fd77::1:2', 'fd77::9:9', 'fd77::ffff:1'];
  const ports = [22, 53, 80, 443, 8000, 8050, 8100, 8101, 1023, 1024, 40000, 65535, 0];
  const frames: Buffer[] = [];
  const vlan = new Set<number>();
  for (let i = 0; i < 480; i++) {
    const v6 = next() < 0.45;
    const host = v6 ? HOST6 : HOST4;
    const peer = pick(v6 ? peers6 : peers4);
    const other = pick(v6 ? peers6 : peers4);
    const shape = next();
    // Outbound, inbound, transit (neither side the host) and host-to-host.
    const [src, dst] =
      shape < 0.4
        ? [host, peer]
        : shape < 0.8
          ? [peer, host]
          : shape < 0.95
            ? [peer, other]
            : [host, host];
    const proto = pick(['tcp', 'tcp', 'udp', 'udp', 'icmp'] as const);
    const fragRoll = next();
    const frag = fragRoll < 0.1 ? 'first' : fragRoll < 0.2 ? 'later' : undefined;
    const tagged = next() < 0.05;
    if (tagged) vlan.add(frames.length);
    frames.push(
      frame({
        src,
        dst,
        proto,
        srcPort: pick(ports),
        dstPort: pick(ports),
        ...(frag && { frag }),
        ...(tagged && { vlan: 100 }),
      }),
    );
  }
  for (let i = 0; i < 10; i++) frames.push(arpFrame(HOST4, pick(peers4)));
  for (let i = 0; i < 10; i++) frames.push(arpFrame(pick(peers4), HOST4));
  return { frames, vlan };
}

interface AgreementCase {
  readonly name: string;
  readonly filters: PacketCaptureFilter[];
  readonly hosts?: HostAddress[];
}

const agreementCases: AgreementCase[] = [
  { name: 'local port 80', filters: [{ localPort: '80' }] },
  { name: 'remote port 80', filters: [{ remotePort: '80' }] },
  { name: 'TCP', filters: [{ protocol: 'TCP' }] },
  { name: 'UDP', filters: [{ protocol: 'UDP' }] },
  {
    name: 'Create example on this host',
    filters: [{ protocol: 'TCP', localIPAddress: HOST4, localPort: '80' }],
  },
  { name: 'remote IPv4 CIDR', filters: [{ remoteIPAddress: '10.77.2.0/24' }] },
  { name: 'remote IPv6 CIDR', filters: [{ remoteIPAddress: 'fd77::2:0/112' }] },
  { name: 'local addresses of both families', filters: [{ localIPAddress: `${HOST4};${HOST6}` }] },
  { name: 'UDP local port range', filters: [{ protocol: 'UDP', localPort: '8000-8100' }] },
  { name: 'TCP remote ephemeral range', filters: [{ protocol: 'TCP', remotePort: '1024-65535' }] },
  {
    name: 'local set with remote range',
    filters: [{ localIPAddress: '10.77.0.0/16', remoteIPAddress: '10.77.3.0-10.77.3.127' }],
  },
  {
    name: 'two filters',
    filters: [
      { protocol: 'TCP', localPort: '22' },
      { protocol: 'UDP', remotePort: '53' },
    ],
  },
  {
    name: 'IPv6 remote with port list',
    filters: [{ remoteIPAddress: 'fd77::/64', remotePort: '443;80' }],
  },
  { name: 'the whole port space', filters: [{ localPort: '0-65535' }] },
  { name: 'one IPv6 peer over TCP', filters: [{ protocol: 'TCP', remoteIPAddress: 'fd77::2:5' }] },
  { name: 'every IPv4 remote', filters: [{ remoteIPAddress: '0.0.0.0/0' }] },
  { name: 'everything', filters: [{}] },
  {
    name: 'nothing on an IPv4-only host',
    filters: [{ remoteIPAddress: 'fd77::/64' }],
    hosts: [addr(HOST4)],
  },
  {
    name: 'mixed families, ranges, lists and ports',
    filters: [
      {
        localIPAddress: '10.77.1.1-10.77.1.9;fd77::1:0/120',
        localPort: '80;443;8000-8100',
        remoteIPAddress: '10.77.2.0/23;fd77::2:0/112',
      },
      { protocol: 'any', remotePort: '22;53;65535' },
    ],
  },
  {
    name: 'host addresses that include a transit peer',
    filters: [{ protocol: 'TCP', localPort: '22;443' }],
    hosts: [addr(HOST4), addr('10.77.2.5'), addr(HOST6)],
  },
];

describe('matchesFilters agrees with tcpdump on a synthetic capture', () => {
  let dir = '';
  let input = '';
  let frames: Buffer[] = [];
  let vlan = new Set<number>();
  let decoded: DecodedPacket[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wirewatch-match-test-'));
    ({ frames, vlan } = syntheticFrames());
    decoded = frames.map((f) => decodePacket(1, f));
    input = join(dir, 'in.pcap');
    await writeFile(input, pcapFile(frames));
  });
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('builds a file tcpdump reads in full', async () => {
    const out = join(dir, 'all.pcap');
    await execFileAsync('tcpdump', ['-r', input, '-w', out]);
    expect(recordIndices(await readFile(out)).size).toBe(frames.length);
    expect(decoded.filter((p) => p.ip?.fragment).length).toBeGreaterThan(40);
  });

  it.each(agreementCases)('$name', async ({ name, filters, hosts }) => {
    const specs = parseFilters(filters);
    const options = { hostAddresses: hosts ?? HOSTS };
    const expression = compileBpf(specs, options);
    const out = join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.pcap`);
    await execFileAsync('tcpdump', [
      '-r',
      input,
      '-w',
      out,
      ...(expression === '' ? [] : [expression]),
    ]);
    const kept = recordIndices(await readFile(out));

    const mismatches: string[] = [];
    decoded.forEach((packet, i) => {
      if (vlan.has(i)) return;
      const ours = matchesFilters(specs, packet, options);
      if (ours !== kept.has(i)) {
        mismatches.push(
          `frame ${i}: tcpdump ${kept.has(i)}, matcher ${ours}: ${frames[i]?.toString('hex')}`,
        );
      }
    });
    expect(mismatches, expression).toEqual([]);
    // Saved VLAN-tagged frames fail every non-empty expression in tcpdump (see match.ts).
    for (const i of vlan) expect(kept.has(i)).toBe(expression === '');
  });

  it('exercises both outcomes across the cases', () => {
    // Guard against a vacuous agreement: the filters keep different, non-trivial subsets.
    const sizes = new Set<number>();
    for (const { filters, hosts } of agreementCases) {
      const specs = parseFilters(filters);
      sizes.add(
        decoded.filter((p) => matchesFilters(specs, p, { hostAddresses: hosts ?? HOSTS })).length,
      );
    }
    expect(sizes.size).toBeGreaterThan(12);
    expect(sizes.has(0)).toBe(true);
    expect(sizes.has(frames.length)).toBe(true);
  });
});
