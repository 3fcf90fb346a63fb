import { describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { bpfInstructions, isRoot } from '../../test/support/pcap-tools.js';
import { BPF_MATCH_NOTHING, compileBpf } from './bpf.js';
import { filterLimits, parseFilter, parseFilters } from './filter.js';
import type {
  FilterSpec,
  HostAddress,
  IpRange,
  PacketCaptureFilter,
  PortRange,
} from './filter-spec.js';

// Independent of ip.ts on purpose: expected values are built by hand.
const v4 = (text: string): bigint =>
  text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
/** An IPv6 address written out as 8 groups. */
const v6 = (full: string): bigint => {
  const groups = full.split(':');
  if (groups.length !== 8) throw new Error(`write all 8 groups: ${full}`);
  return BigInt(`0x${groups.map((g) => g.padStart(4, '0')).join('')}`);
};
const r4 = (first: string, last = first): IpRange => ({
  family: 4,
  first: v4(first),
  last: v4(last),
});
const r6 = (first: string, last = first): IpRange => ({
  family: 6,
  first: v6(first),
  last: v6(last),
});
const ports = (...ranges: (number | [number, number])[]): { ranges: PortRange[] } => ({
  ranges: ranges.map((r) =>
    typeof r === 'number' ? { first: r, last: r } : { first: r[0], last: r[1] },
  ),
});
const ips = (...ranges: IpRange[]): { ranges: IpRange[] } => ({ ranges });

/** The capturing host of every compiled expression below. */
const HOSTS: HostAddress[] = [
  { family: 4, value: v4('10.77.1.1') },
  { family: 6, value: v6('fd77:0:0:0:0:0:1:1') },
];
const H4 = 'ip src host 10.77.1.1';
const H6 = 'ip6 src host fd77::1:1';
const D4 = 'ip dst host 10.77.1.1';
const D6 = 'ip6 dst host fd77::1:1';
const SRC_HOST = `(${H4} or ${H6})`;
const DST_HOST = `(${D4} or ${D6})`;

interface ValidCase {
  readonly name: string;
  readonly filters: unknown;
  readonly model: FilterSpec[];
  readonly bpf: string;
}
interface InvalidCase {
  readonly name: string;
  readonly filters: unknown;
  readonly target: string;
  /** Text the message must contain: the offending token, or the limit broken. */
  readonly token: string;
}
type Case = ValidCase | InvalidCase;

const many = (n: number, make: (i: number) => string): string =>
  Array.from({ length: n }, (_, i) => make(i)).join(';');

const cases: Case[] = [
  // --- Azure's examples and notation
  {
    name: 'the Create example: 10.0.0.4 port 80 TCP',
    filters: [{ localIPAddress: '10.0.0.4', localPort: '80', protocol: 'TCP' }],
    model: [{ protocol: 'TCP', localAddress: ips(r4('10.0.0.4')), localPort: ports(80) }],
    bpf: 'tcp and ((ip src host 10.0.0.4 and src port 80) or (ip dst host 10.0.0.4 and dst port 80))',
  },
  {
    name: 'spec range 127.0.0.1-127.0.0.255 (8 CIDR blocks)',
    filters: [{ localIPAddress: '127.0.0.1-127.0.0.255' }],
    model: [{ protocol: 'Any', localAddress: ips(r4('127.0.0.1', '127.0.0.255')) }],
    bpf: ['src', 'dst']
      .map((side) =>
        [
          `ip ${side} host 127.0.0.1`,
          ...[31, 30, 29, 28, 27, 26, 25].map(
            (len) => `ip ${side} net 127.0.0.${2 ** (32 - len)}/${len}`,
          ),
        ].join(' or '),
      )
      .join(' or '),
  },
  {
    name: 'spec list 127.0.0.1;127.0.0.5; (trailing ;)',
    filters: [{ localIPAddress: '127.0.0.1;127.0.0.5;' }],
    model: [{ protocol: 'Any', localAddress: ips(r4('127.0.0.1'), r4('127.0.0.5')) }],
    bpf: 'ip src host 127.0.0.1 or ip src host 127.0.0.5 or ip dst host 127.0.0.1 or ip dst host 127.0.0.5',
  },
  {
    name: 'spec port range 80-85',
    filters: [{ localPort: '80-85' }],
    model: [{ protocol: 'Any', localPort: ports([80, 85]) }],
    bpf: `(tcp or udp) and ((${SRC_HOST} and src portrange 80-85) or (${DST_HOST} and dst portrange 80-85))`,
  },
  {
    name: 'spec port list 80;443;',
    filters: [{ localPort: '80;443;' }],
    model: [{ protocol: 'Any', localPort: ports(80, 443) }],
    bpf: `(tcp or udp) and ((${SRC_HOST} and (src port 80 or src port 443)) or (${DST_HOST} and (dst port 80 or dst port 443)))`,
  },
  // --- protocol
  { name: 'TCP alone', filters: [{ protocol: 'TCP' }], model: [{ protocol: 'TCP' }], bpf: 'tcp' },
  {
    name: 'udp, lower case',
    filters: [{ protocol: 'udp' }],
    model: [{ protocol: 'UDP' }],
    bpf: 'udp',
  },
  {
    name: 'protocol with spaces, mixed case',
    filters: [{ protocol: ' Tcp ' }],
    model: [{ protocol: 'TCP' }],
    bpf: 'tcp',
  },
  {
    name: 'ANY alone matches everything',
    filters: [{ protocol: 'ANY' }],
    model: [{ protocol: 'Any' }],
    bpf: '',
  },
  { name: 'empty filter object', filters: [{}], model: [{ protocol: 'Any' }], bpf: '' },
  {
    name: 'all fields empty strings',
    filters: [
      { protocol: '', localIPAddress: '', remoteIPAddress: '', localPort: '', remotePort: '' },
    ],
    model: [{ protocol: 'Any' }],
    bpf: '',
  },
  {
    name: 'null fields (Azure default = null)',
    filters: [{ protocol: null, localIPAddress: null, localPort: null }],
    model: [{ protocol: 'Any' }],
    bpf: '',
  },
  {
    name: 'whitespace-only field is empty',
    filters: [{ protocol: 'UDP', localPort: '   ' }],
    model: [{ protocol: 'UDP' }],
    bpf: 'udp',
  },
  { name: 'no filter list', filters: undefined, model: [], bpf: '' },
  { name: 'null filter list', filters: null, model: [], bpf: '' },
  { name: 'empty filter list', filters: [], model: [], bpf: '' },
  {
    name: 'a match-everything filter makes the list match everything',
    filters: [{ protocol: 'TCP', localPort: '22' }, { protocol: 'Any' }],
    model: [{ protocol: 'TCP', localPort: ports(22) }, { protocol: 'Any' }],
    bpf: '',
  },
  // --- ports
  {
    name: 'UDP remote port',
    filters: [{ protocol: 'UDP', remotePort: '53' }],
    model: [{ protocol: 'UDP', remotePort: ports(53) }],
    bpf: `udp and ((${SRC_HOST} and dst port 53) or (${DST_HOST} and src port 53))`,
  },
  {
    name: 'ports mixed with a range',
    filters: [{ protocol: 'TCP', localPort: '80;443;8000-8100' }],
    model: [{ protocol: 'TCP', localPort: ports(80, 443, [8000, 8100]) }],
    bpf: `tcp and ((${SRC_HOST} and (src port 80 or src port 443 or src portrange 8000-8100)) or (${DST_HOST} and (dst port 80 or dst port 443 or dst portrange 8000-8100)))`,
  },
  {
    name: 'several port ranges, overlapping and adjacent ones merged, sorted',
    filters: [{ protocol: 'TCP', remotePort: '9000-9010;85-100;80-90;101;7' }],
    model: [{ protocol: 'TCP', remotePort: ports(7, [80, 101], [9000, 9010]) }],
    bpf: `tcp and ((${SRC_HOST} and (dst port 7 or dst portrange 80-101 or dst portrange 9000-9010)) or (${DST_HOST} and (src port 7 or src portrange 80-101 or src portrange 9000-9010)))`,
  },
  {
    name: 'duplicate ports',
    filters: [{ protocol: 'TCP', localPort: '80;80' }],
    model: [{ protocol: 'TCP', localPort: ports(80) }],
    bpf: `tcp and ((${SRC_HOST} and src port 80) or (${DST_HOST} and dst port 80))`,
  },
  {
    name: 'spaces around port tokens',
    filters: [{ protocol: 'TCP', localPort: ' 80 ; 443 - 444 ; ' }],
    model: [{ protocol: 'TCP', localPort: ports(80, [443, 444]) }],
    bpf: `tcp and ((${SRC_HOST} and (src port 80 or src portrange 443-444)) or (${DST_HOST} and (dst port 80 or dst portrange 443-444)))`,
  },
  {
    name: 'ports 0 and 65535',
    filters: [{ protocol: 'UDP', localPort: '0;65535' }],
    model: [{ protocol: 'UDP', localPort: ports(0, 65535) }],
    bpf: `udp and ((${SRC_HOST} and (src port 0 or src port 65535)) or (${DST_HOST} and (dst port 0 or dst port 65535)))`,
  },
  {
    name: 'the whole port space',
    filters: [{ protocol: 'TCP', remotePort: '0-65535' }],
    model: [{ protocol: 'TCP', remotePort: ports([0, 65535]) }],
    bpf: `tcp and ((${SRC_HOST} and dst portrange 0-65535) or (${DST_HOST} and src portrange 0-65535))`,
  },
  {
    name: 'local and remote ports together',
    filters: [{ protocol: 'TCP', localPort: '40000-40100', remotePort: '443' }],
    model: [{ protocol: 'TCP', localPort: ports([40000, 40100]), remotePort: ports(443) }],
    bpf: `tcp and ((${SRC_HOST} and src portrange 40000-40100 and dst port 443) or (${DST_HOST} and dst portrange 40000-40100 and src port 443))`,
  },
  // --- IPv4 addresses
  {
    name: 'IPv4 CIDR remote',
    filters: [{ remoteIPAddress: '10.0.0.0/8' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r4('10.0.0.0', '10.255.255.255')) }],
    bpf: `(${H4} and ip dst net 10.0.0.0/8) or (${D4} and ip src net 10.0.0.0/8)`,
  },
  {
    name: 'IPv4 /32 CIDR is a host',
    filters: [{ localIPAddress: '10.77.1.1/32' }],
    model: [{ protocol: 'Any', localAddress: ips(r4('10.77.1.1')) }],
    bpf: `${H4} or ${D4}`,
  },
  {
    name: 'IPv4 0.0.0.0/0',
    filters: [{ protocol: 'TCP', remoteIPAddress: '0.0.0.0/0' }],
    model: [{ protocol: 'TCP', remoteAddress: ips(r4('0.0.0.0', '255.255.255.255')) }],
    bpf: `tcp and ((${H4} and ip dst net 0.0.0.0/0) or (${D4} and ip src net 0.0.0.0/0))`,
  },
  {
    name: 'one-address range is a host',
    filters: [{ localIPAddress: '10.0.0.5-10.0.0.5' }],
    model: [{ protocol: 'Any', localAddress: ips(r4('10.0.0.5')) }],
    bpf: 'ip src host 10.0.0.5 or ip dst host 10.0.0.5',
  },
  {
    name: 'adjacent addresses merge into a block',
    filters: [{ localIPAddress: '10.0.0.1;10.0.0.0' }],
    model: [{ protocol: 'Any', localAddress: ips(r4('10.0.0.0', '10.0.0.1')) }],
    bpf: 'ip src net 10.0.0.0/31 or ip dst net 10.0.0.0/31',
  },
  {
    name: 'several IPv4 ranges',
    filters: [{ remoteIPAddress: '10.77.2.10-10.77.2.11;10.77.3.0-10.77.3.255' }],
    model: [
      {
        protocol: 'Any',
        remoteAddress: ips(r4('10.77.2.10', '10.77.2.11'), r4('10.77.3.0', '10.77.3.255')),
      },
    ],
    bpf: `(${H4} and (ip dst net 10.77.2.10/31 or ip dst net 10.77.3.0/24)) or (${D4} and (ip src net 10.77.2.10/31 or ip src net 10.77.3.0/24))`,
  },
  {
    name: 'overlapping ranges and CIDR merged',
    filters: [{ remoteIPAddress: '10.0.0.0/24;10.0.0.128-10.0.1.255;10.0.0.7' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r4('10.0.0.0', '10.0.1.255')) }],
    bpf: `(${H4} and ip dst net 10.0.0.0/23) or (${D4} and ip src net 10.0.0.0/23)`,
  },
  {
    name: 'local address with remote address and ports',
    filters: [
      {
        protocol: 'TCP',
        localIPAddress: '10.77.1.1',
        remoteIPAddress: '10.77.2.0/24',
        localPort: '22',
        remotePort: '1024-65535',
      },
    ],
    model: [
      {
        protocol: 'TCP',
        localAddress: ips(r4('10.77.1.1')),
        remoteAddress: ips(r4('10.77.2.0', '10.77.2.255')),
        localPort: ports(22),
        remotePort: ports([1024, 65535]),
      },
    ],
    bpf: `tcp and ((${H4} and ip dst net 10.77.2.0/24 and src port 22 and dst portrange 1024-65535) or (${D4} and ip src net 10.77.2.0/24 and dst port 22 and src portrange 1024-65535))`,
  },
  // --- IPv6
  {
    name: 'IPv6 full form',
    filters: [{ localIPAddress: 'fd77:0000:0000:0000:0000:0000:0001:0001' }],
    model: [{ protocol: 'Any', localAddress: ips(r6('fd77:0:0:0:0:0:1:1')) }],
    bpf: `${H6} or ${D6}`,
  },
  {
    name: 'IPv6 compressed, upper case',
    filters: [{ protocol: 'UDP', remoteIPAddress: 'FD77::AB:1' }],
    model: [{ protocol: 'UDP', remoteAddress: ips(r6('fd77:0:0:0:0:0:ab:1')) }],
    bpf: `udp and ((${H6} and ip6 dst host fd77::ab:1) or (${D6} and ip6 src host fd77::ab:1))`,
  },
  {
    name: 'IPv6 ::',
    filters: [{ remoteIPAddress: '::' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r6('0:0:0:0:0:0:0:0')) }],
    bpf: `(${H6} and ip6 dst host ::) or (${D6} and ip6 src host ::)`,
  },
  {
    name: 'IPv4-mapped IPv6 ::ffff:10.0.0.1',
    filters: [{ remoteIPAddress: '::ffff:10.0.0.1' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r6('0:0:0:0:0:ffff:a00:1')) }],
    bpf: `(${H6} and ip6 dst host ::ffff:10.0.0.1) or (${D6} and ip6 src host ::ffff:10.0.0.1)`,
  },
  {
    name: 'IPv6 with an embedded IPv4 tail, printed canonically',
    filters: [{ remoteIPAddress: '64:ff9b::192.0.2.1' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r6('64:ff9b:0:0:0:0:c000:201')) }],
    bpf: `(${H6} and ip6 dst host 64:ff9b::c000:201) or (${D6} and ip6 src host 64:ff9b::c000:201)`,
  },
  {
    name: 'IPv6 printed per RFC 5952 (longest zero run, first on ties)',
    filters: [{ remoteIPAddress: '2001:db8:0:0:1:0:0:1' }],
    model: [{ protocol: 'Any', remoteAddress: ips(r6('2001:db8:0:0:1:0:0:1')) }],
    bpf: `(${H6} and ip6 dst host 2001:db8::1:0:0:1) or (${D6} and ip6 src host 2001:db8::1:0:0:1)`,
  },
  {
    name: 'IPv6 CIDR',
    filters: [{ protocol: 'TCP', remoteIPAddress: 'fd77::/64', remotePort: '443' }],
    model: [
      {
        protocol: 'TCP',
        remoteAddress: ips(r6('fd77:0:0:0:0:0:0:0', 'fd77:0:0:0:ffff:ffff:ffff:ffff')),
        remotePort: ports(443),
      },
    ],
    bpf: `tcp and ((${H6} and ip6 dst net fd77::/64 and dst port 443) or (${D6} and ip6 src net fd77::/64 and src port 443))`,
  },
  {
    name: 'IPv6 /128 is a host',
    filters: [{ localIPAddress: 'fd77::5/128' }],
    model: [{ protocol: 'Any', localAddress: ips(r6('fd77:0:0:0:0:0:0:5')) }],
    bpf: 'ip6 src host fd77::5 or ip6 dst host fd77::5',
  },
  {
    name: 'IPv6 ::/0',
    filters: [{ protocol: 'UDP', remoteIPAddress: '::/0' }],
    model: [
      {
        protocol: 'UDP',
        remoteAddress: ips(r6('0:0:0:0:0:0:0:0', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')),
      },
    ],
    bpf: `udp and ((${H6} and ip6 dst net ::/0) or (${D6} and ip6 src net ::/0))`,
  },
  {
    name: 'IPv6 range needing 8 CIDR blocks',
    filters: [{ remoteIPAddress: 'fd77::1-fd77::ff' }],
    model: [
      { protocol: 'Any', remoteAddress: ips(r6('fd77:0:0:0:0:0:0:1', 'fd77:0:0:0:0:0:0:ff')) },
    ],
    bpf: (() => {
      const blocks = (side: string): string =>
        [
          `ip6 ${side} host fd77::1`,
          ...[2, 4, 8, 0x10, 0x20, 0x40, 0x80].map(
            (base, i) => `ip6 ${side} net fd77::${base.toString(16)}/${127 - i}`,
          ),
        ].join(' or ');
      return `(${H6} and (${blocks('dst')})) or (${D6} and (${blocks('src')}))`;
    })(),
  },
  {
    name: 'IPv6 range needing 62 CIDR blocks',
    filters: [{ localIPAddress: 'fd77::1-fd77::ffff:fffe' }],
    model: [
      { protocol: 'Any', localAddress: ips(r6('fd77:0:0:0:0:0:0:1', 'fd77:0:0:0:0:0:ffff:fffe')) },
    ],
    bpf: (() => {
      const blocks = (side: string): string[] => {
        const out = [`ip6 ${side} host fd77::1`];
        // Rising from ::2/127 up to ::4000:0/98, then falling from ::8000:0/98 to ::ffff:fffe.
        for (let bit = 1; bit <= 30; bit++) {
          out.push(`ip6 ${side} net ${fmt(1n << BigInt(bit))}/${128 - bit}`);
        }
        for (let bit = 30; bit >= 1; bit--) {
          const base = 0xffffffffn - ((1n << BigInt(bit + 1)) - 1n);
          out.push(`ip6 ${side} net ${fmt(base)}/${128 - bit}`);
        }
        out.push(`ip6 ${side} host fd77::ffff:fffe`);
        return out;
      };
      const fmt = (low: bigint): string => {
        const hi = Number(low >> 16n);
        const lo = Number(low & 0xffffn);
        return hi === 0
          ? `fd77::${lo.toString(16)}`
          : `fd77::${hi.toString(16)}:${lo.toString(16)}`;
      };
      return [...blocks('src'), ...blocks('dst')].join(' or ');
    })(),
  },
  // --- mixed families
  {
    name: 'IPv4 and IPv6 in one list, with ranges and CIDR',
    filters: [{ remoteIPAddress: 'fd77::10;10.77.0.0/16;fd77::20-fd77::21;10.99.0.1' }],
    model: [
      {
        protocol: 'Any',
        remoteAddress: ips(
          r4('10.77.0.0', '10.77.255.255'),
          r4('10.99.0.1'),
          r6('fd77:0:0:0:0:0:0:10'),
          r6('fd77:0:0:0:0:0:0:20', 'fd77:0:0:0:0:0:0:21'),
        ),
      },
    ],
    bpf: `(${SRC_HOST} and (ip dst net 10.77.0.0/16 or ip dst host 10.99.0.1 or ip6 dst host fd77::10 or ip6 dst net fd77::20/127)) or (${DST_HOST} and (ip src net 10.77.0.0/16 or ip src host 10.99.0.1 or ip6 src host fd77::10 or ip6 src net fd77::20/127))`,
  },
  {
    name: 'remote IPv4 only: only the IPv4 host address identifies the side',
    filters: [{ protocol: 'TCP', remoteIPAddress: '192.168.0.0/16', remotePort: '80' }],
    model: [
      {
        protocol: 'TCP',
        remoteAddress: ips(r4('192.168.0.0', '192.168.255.255')),
        remotePort: ports(80),
      },
    ],
    bpf: `tcp and ((${H4} and ip dst net 192.168.0.0/16 and dst port 80) or (${D4} and ip src net 192.168.0.0/16 and src port 80))`,
  },
  {
    name: 'local of both families, remote IPv4: the IPv6 local blocks are left out',
    filters: [{ localIPAddress: '10.0.0.0/8;fd77::/64', remoteIPAddress: '192.168.1.1' }],
    model: [
      {
        protocol: 'Any',
        localAddress: ips(
          r4('10.0.0.0', '10.255.255.255'),
          r6('fd77:0:0:0:0:0:0:0', 'fd77:0:0:0:ffff:ffff:ffff:ffff'),
        ),
        remoteAddress: ips(r4('192.168.1.1')),
      },
    ],
    bpf: '(ip src net 10.0.0.0/8 and ip dst host 192.168.1.1) or (ip dst net 10.0.0.0/8 and ip src host 192.168.1.1)',
  },
  {
    name: 'both sides of both families',
    filters: [{ localIPAddress: '10.77.1.1;fd77::1:1', remoteIPAddress: '10.77.0.0/16;fd77::/64' }],
    model: [
      {
        protocol: 'Any',
        localAddress: ips(r4('10.77.1.1'), r6('fd77:0:0:0:0:0:1:1')),
        remoteAddress: ips(
          r4('10.77.0.0', '10.77.255.255'),
          r6('fd77:0:0:0:0:0:0:0', 'fd77:0:0:0:ffff:ffff:ffff:ffff'),
        ),
      },
    ],
    bpf: `(${SRC_HOST} and (ip dst net 10.77.0.0/16 or ip6 dst net fd77::/64)) or (${DST_HOST} and (ip src net 10.77.0.0/16 or ip6 src net fd77::/64))`,
  },
  {
    name: 'two filters are OR-ed',
    filters: [
      { protocol: 'TCP', localPort: '22' },
      { protocol: 'UDP', remoteIPAddress: '10.77.0.53', remotePort: '53' },
    ],
    model: [
      { protocol: 'TCP', localPort: ports(22) },
      { protocol: 'UDP', remoteAddress: ips(r4('10.77.0.53')), remotePort: ports(53) },
    ],
    bpf: `(tcp and ((${SRC_HOST} and src port 22) or (${DST_HOST} and dst port 22))) or (udp and ((${H4} and ip dst host 10.77.0.53 and dst port 53) or (${D4} and ip src host 10.77.0.53 and src port 53)))`,
  },
  {
    name: 'three filters, one protocol-only',
    filters: [
      { protocol: 'UDP' },
      { protocol: 'TCP', remotePort: '443' },
      { localIPAddress: 'fd77::9' },
    ],
    model: [
      { protocol: 'UDP' },
      { protocol: 'TCP', remotePort: ports(443) },
      { protocol: 'Any', localAddress: ips(r6('fd77:0:0:0:0:0:0:9')) },
    ],
    bpf: `udp or (tcp and ((${SRC_HOST} and dst port 443) or (${DST_HOST} and src port 443))) or ip6 src host fd77::9 or ip6 dst host fd77::9`,
  },

  // --- rejections: addresses
  bad(
    'IPv4 octet above 255',
    { localIPAddress: '10.0.0.300' },
    'filters[0].localIPAddress',
    '10.0.0.300',
  ),
  bad(
    'IPv4 octet 256 in a list',
    { remoteIPAddress: '10.0.0.1;10.0.0.256' },
    'filters[0].remoteIPAddress',
    '10.0.0.256',
  ),
  bad('three octets', { localIPAddress: '1.2.3' }, 'filters[0].localIPAddress', '1.2.3'),
  bad('five octets', { localIPAddress: '1.2.3.4.5' }, 'filters[0].localIPAddress', '1.2.3.4.5'),
  bad('leading zero', { localIPAddress: '010.0.0.1' }, 'filters[0].localIPAddress', '010.0.0.1'),
  bad('word', { remoteIPAddress: 'abc' }, 'filters[0].remoteIPAddress', 'abc'),
  bad('host name', { remoteIPAddress: 'localhost' }, 'filters[0].remoteIPAddress', 'localhost'),
  bad(
    'reversed IPv4 range',
    { localIPAddress: '10.0.0.9-10.0.0.1' },
    'filters[0].localIPAddress',
    '10.0.0.9-10.0.0.1',
  ),
  bad(
    'range across families',
    { localIPAddress: '10.0.0.1-fd77::1' },
    'filters[0].localIPAddress',
    '10.0.0.1-fd77::1',
  ),
  bad(
    'reversed IPv6 range',
    { remoteIPAddress: 'fd77::9-fd77::1' },
    'filters[0].remoteIPAddress',
    'fd77::9-fd77::1',
  ),
  bad(
    'range with three ends',
    { localIPAddress: '10.0.0.1-10.0.0.2-10.0.0.3' },
    'filters[0].localIPAddress',
    '10.0.0.1-10.0.0.2-10.0.0.3',
  ),
  bad('open range', { localIPAddress: '10.0.0.1-' }, 'filters[0].localIPAddress', '10.0.0.1-'),
  bad(
    'CIDR with host bits',
    { remoteIPAddress: '10.0.0.1/8' },
    'filters[0].remoteIPAddress',
    '10.0.0.1/8',
  ),
  bad(
    'IPv6 CIDR with host bits',
    { remoteIPAddress: 'fd77::1/64' },
    'filters[0].remoteIPAddress',
    'fd77::1/64',
  ),
  bad(
    'prefix /33',
    { remoteIPAddress: '10.0.0.0/33' },
    'filters[0].remoteIPAddress',
    '10.0.0.0/33',
  ),
  bad('bare /33', { remoteIPAddress: '/33' }, 'filters[0].remoteIPAddress', '/33'),
  bad(
    'IPv6 prefix /129',
    { remoteIPAddress: 'fd77::/129' },
    'filters[0].remoteIPAddress',
    'fd77::/129',
  ),
  bad('empty prefix', { remoteIPAddress: '10.0.0.0/' }, 'filters[0].remoteIPAddress', '10.0.0.0/'),
  bad(
    'prefix with a leading zero',
    { remoteIPAddress: '10.0.0.0/08' },
    'filters[0].remoteIPAddress',
    '10.0.0.0/08',
  ),
  bad(
    'IPv6 zone id',
    { localIPAddress: 'fe80::1%eth0' },
    'filters[0].localIPAddress',
    'fe80::1%eth0',
  ),
  bad(
    'IPv6 in brackets',
    { localIPAddress: '[fd77::1]' },
    'filters[0].localIPAddress',
    '[fd77::1]',
  ),
  bad('two ::', { localIPAddress: '1::2::3' }, 'filters[0].localIPAddress', '1::2::3'),
  bad(':::', { localIPAddress: ':::' }, 'filters[0].localIPAddress', ':::'),
  bad(
    '9 IPv6 groups',
    { localIPAddress: '1:2:3:4:5:6:7:8:9' },
    'filters[0].localIPAddress',
    '1:2:3:4:5:6:7:8:9',
  ),
  bad(
    '7 IPv6 groups without ::',
    { localIPAddress: '1:2:3:4:5:6:7' },
    'filters[0].localIPAddress',
    '1:2:3:4:5:6:7',
  ),
  bad(
    ':: with 8 other groups',
    { localIPAddress: '1:2:3:4::5:6:7:8' },
    'filters[0].localIPAddress',
    '1:2:3:4::5:6:7:8',
  ),
  bad(
    '5 hex digits',
    { localIPAddress: 'fd77::12345' },
    'filters[0].localIPAddress',
    'fd77::12345',
  ),
  bad('non-hex digit', { localIPAddress: 'fd77::g' }, 'filters[0].localIPAddress', 'fd77::g'),
  bad('leading single colon', { localIPAddress: ':1::' }, 'filters[0].localIPAddress', ':1::'),
  bad(
    'IPv4 tail before ::',
    { localIPAddress: '1.2.3.4::' },
    'filters[0].localIPAddress',
    '1.2.3.4::',
  ),
  bad(
    'bad embedded IPv4',
    { localIPAddress: '::ffff:10.0.0.300' },
    'filters[0].localIPAddress',
    '::ffff:10.0.0.300',
  ),
  bad(
    'empty address entry',
    { localIPAddress: '10.0.0.1;;10.0.0.2' },
    'filters[0].localIPAddress',
    '10.0.0.1;;10.0.0.2',
  ),
  bad(
    'local IPv4 and remote IPv6 never match',
    { localIPAddress: '10.0.0.1', remoteIPAddress: 'fd77::1' },
    'filters[0]',
    'share no address family',
  ),
  // --- rejections: ports
  bad('open port range', { localPort: '80-' }, 'filters[0].localPort', '80-'),
  bad('port range end too big', { localPort: '1-70000' }, 'filters[0].localPort', '1-70000'),
  bad('port too big', { remotePort: '65536' }, 'filters[0].remotePort', '65536'),
  bad('reversed port range', { localPort: '9-3' }, 'filters[0].localPort', '9-3'),
  bad('double ;', { localPort: '80;;443' }, 'filters[0].localPort', '80;;443'),
  bad('leading ;', { localPort: ';80' }, 'filters[0].localPort', ';80'),
  bad('only ;', { localPort: ';' }, 'filters[0].localPort', ';'),
  bad('two trailing ;', { localPort: '80;;' }, 'filters[0].localPort', '80;;'),
  bad('word as port', { localPort: 'abc' }, 'filters[0].localPort', 'abc'),
  bad('service name', { remotePort: 'http' }, 'filters[0].remotePort', 'http'),
  bad('negative port', { localPort: '-1' }, 'filters[0].localPort', '-1'),
  bad('port with a leading zero', { localPort: '080' }, 'filters[0].localPort', '080'),
  bad('hex port', { localPort: '0x50' }, 'filters[0].localPort', '0x50'),
  bad('exponent port', { localPort: '1e3' }, 'filters[0].localPort', '1e3'),
  bad('non-ASCII digits', { localPort: '٨٠' }, 'filters[0].localPort', '٨٠'),
  bad('port range with three ends', { localPort: '1-2-3' }, 'filters[0].localPort', '1-2-3'),
  bad(
    'port in the second filter',
    [{ protocol: 'TCP' }, { remotePort: '80-' }],
    'filters[1].remotePort',
    '80-',
  ),
  // --- rejections: protocol
  bad('ICMP', { protocol: 'ICMP' }, 'filters[0].protocol', 'ICMP'),
  bad('tcpx', { protocol: 'tcpx' }, 'filters[0].protocol', 'tcpx'),
  bad('protocol number', { protocol: '6' }, 'filters[0].protocol', '6'),
  bad(
    'protocol in the third filter',
    [{}, {}, { protocol: 'SCTP' }],
    'filters[2].protocol',
    'SCTP',
  ),
  // --- rejections: not strings, not objects
  bad('port as a number', { localPort: 80 }, 'filters[0].localPort', 'number 80'),
  bad(
    'address as an object',
    { localIPAddress: { ip: '10.0.0.1' } },
    'filters[0].localIPAddress',
    'an object',
  ),
  bad(
    'address as an array',
    { remoteIPAddress: ['10.0.0.1'] },
    'filters[0].remoteIPAddress',
    'an array',
  ),
  bad('protocol as a boolean', { protocol: true }, 'filters[0].protocol', 'boolean true'),
  bad('filter is a string', ['TCP'], 'filters[0]', 'string "TCP"'),
  bad('filter is null', [null], 'filters[0]', 'null'),
  bad('filter list is an object', { protocol: 'TCP' }, 'filters', 'an object', true),
  bad('filter list is a string', 'TCP', 'filters', 'string "TCP"', true),
  bad(
    'misspelt field',
    { localIpAddress: '10.0.0.1' },
    'filters[0].localIpAddress',
    'localIpAddress',
  ),
  // --- rejections: limits
  bad(
    'more than 64 CIDR blocks in a field',
    { localIPAddress: many(65, (i) => `10.0.${i * 2}.1`) },
    'filters[0].localIPAddress',
    `at most ${filterLimits.cidrsPerField}`,
  ),
  bad(
    'a range whose cover exceeds 64 blocks',
    { remoteIPAddress: '10.0.0.1-10.0.0.254;fd77::1-fd77::ffff:fffe' },
    'filters[0].remoteIPAddress',
    'covers 76 CIDR blocks',
  ),
  bad(
    'more than 64 port ranges in a field',
    { localPort: many(65, (i) => String(i * 2)) },
    'filters[0].localPort',
    `at most ${filterLimits.portRangesPerField}`,
  ),
  bad(
    'more than 16 filters',
    Array.from({ length: 17 }, () => ({ protocol: 'TCP' })),
    'filters',
    `at most ${filterLimits.filters}`,
    true,
  ),
  bad(
    'more than 256 CIDR blocks in a list',
    Array.from({ length: 5 }, () => ({ localIPAddress: many(60, (i) => `10.0.${i * 2}.1`) })),
    'filters',
    `at most ${filterLimits.cidrsPerList}`,
    true,
  ),
  bad(
    'more than 128 port ranges in a list',
    Array.from({ length: 3 }, () => ({ remotePort: many(60, (i) => String(i * 2)) })),
    'filters',
    `at most ${filterLimits.portRangesPerList}`,
    true,
  ),
  bad(
    'an over-long field',
    { localPort: '80;'.repeat(2000) },
    'filters[0].localPort',
    `at most ${filterLimits.fieldLength}`,
  ),
];

/** An invalid case; a single filter object is wrapped in a list unless `raw` is set. */
function bad(
  name: string,
  filters: unknown,
  target: string,
  token: string,
  raw = false,
): InvalidCase {
  return { name, filters: raw || Array.isArray(filters) ? filters : [filters], target, token };
}

const isValid = (c: Case): c is ValidCase => 'model' in c;
const valid = cases.filter(isValid);
const invalid = cases.filter((c): c is InvalidCase => !isValid(c));

const parse = (filters: unknown): FilterSpec[] =>
  parseFilters(filters as readonly PacketCaptureFilter[] | undefined);

describe('parseFilters and compileBpf', () => {
  it('has a big enough table', () => {
    expect(cases.length).toBeGreaterThanOrEqual(70);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it.each(valid)('accepts $name', ({ filters, model, bpf }) => {
    const parsed = parse(filters);
    expect(parsed).toEqual(model);
    expect(compileBpf(parsed, { hostAddresses: HOSTS })).toBe(bpf);
  });

  it.each(invalid)('rejects $name', ({ filters, target, token }) => {
    let error: unknown;
    try {
      parse(filters);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WirewatchError);
    const e = error as WirewatchError;
    expect(e.code).toBe('InvalidFilter');
    expect(e.target).toBe(target);
    expect(e.message).toContain(token);
    expect(e.message.startsWith(`${target}: `)).toBe(true);
  });

  it('parseFilter uses its index in targets', () => {
    expect(() => parseFilter({ localPort: '80-' }, 7)).toThrow(
      'filters[7].localPort: "80-" is not a port or port range (expected N or N-M, 0 ≤ N ≤ M ≤ 65535, without leading zeros)',
    );
  });

  it('compiles with the kernel direction when the host addresses are unknown', () => {
    expect(compileBpf(parse([{ localPort: '80' }]), { hostAddresses: [] })).toBe(
      '(tcp or udp) and ((outbound and src port 80) or (inbound and dst port 80))',
    );
    expect(
      compileBpf(parse([{ protocol: 'TCP', remoteIPAddress: '10.0.0.0/8' }]), {
        hostAddresses: [],
      }),
    ).toBe('tcp and ((outbound and ip dst net 10.0.0.0/8) or (inbound and ip src net 10.0.0.0/8))');
    // A local address set identifies the side by itself.
    expect(compileBpf(parse([{ localIPAddress: '10.0.0.1' }]), { hostAddresses: [] })).toBe(
      'ip src host 10.0.0.1 or ip dst host 10.0.0.1',
    );
  });

  it('compiles a filter that cannot match on this host to an expression matching nothing', () => {
    const v4Only: HostAddress[] = [{ family: 4, value: v4('10.77.1.1') }];
    expect(compileBpf(parse([{ remoteIPAddress: 'fd77::/64' }]), { hostAddresses: v4Only })).toBe(
      BPF_MATCH_NOTHING,
    );
    // …and leaves it out of a list that has other filters.
    expect(
      compileBpf(parse([{ remoteIPAddress: 'fd77::/64' }, { protocol: 'UDP' }]), {
        hostAddresses: v4Only,
      }),
    ).toBe('udp');
  });

  it('never puts user text into the expression', () => {
    // Every token of every compiled expression is a keyword, a number or a formatted address.
    const word =
      /^(\(*)(tcp|udp|or|and|ip|ip6|src|dst|host|net|port|portrange|outbound|inbound|[0-9]+(-[0-9]+)?|[0-9a-f:.]+(\/[0-9]+)?)(\)*)$/;
    for (const { filters } of valid) {
      for (const hostAddresses of [HOSTS, []]) {
        for (const token of compileBpf(parse(filters), { hostAddresses }).split(' ')) {
          if (token !== '') expect(token).toMatch(word);
        }
      }
    }
  });
});

describe.skipIf(!isRoot)(
  'tcpdump accepts the compiled expressions (skipped unless root: tcpdump -d -i lo needs root)',
  () => {
    it.each(valid.filter((c) => c.bpf !== ''))('$name', async ({ filters }) => {
      for (const hostAddresses of [HOSTS, []]) {
        const expression = compileBpf(parse(filters), { hostAddresses });
        expect(await bpfInstructions(expression)).toBeGreaterThan(1);
      }
    });

    it('accepts the match-nothing expression', async () => {
      expect(await bpfInstructions(BPF_MATCH_NOTHING)).toBeGreaterThan(1);
    });

    // The limits in filterLimits exist so that the worst case stays under the kernel's 4096
    // instructions. Worst measured: many filters at every list limit, both families alternating.
    it.each([
      { filters: 16, cidrs: 8, portRanges: 4 },
      { filters: 2, cidrs: 64, portRanges: 32 },
      { filters: 4, cidrs: 32, portRanges: 16 },
      { filters: 16, cidrs: 0, portRanges: 4 },
    ])(
      'the worst case at the limits stays under 4096 instructions: %o',
      async ({ filters, cidrs, portRanges }) => {
        const addresses = (net: number): string =>
          many(cidrs, (i) => (i % 2 === 0 ? `10.${net}.${i * 2}.1` : `fd77:${net}::${i * 2}:1`));
        const portList = (base: number): string =>
          many(portRanges, (i) => `${base + i * 10}-${base + i * 10 + 3}`);
        const list = Array.from({ length: filters }, () => ({
          localIPAddress: addresses(1),
          remoteIPAddress: addresses(2),
          localPort: portList(1000),
          remotePort: portList(3000),
        }));
        const parsed = parse(list);
        for (const hostAddresses of [HOSTS, []]) {
          const count = await bpfInstructions(compileBpf(parsed, { hostAddresses }));
          expect(count).toBeLessThanOrEqual(4096);
        }
      },
    );
  },
);
