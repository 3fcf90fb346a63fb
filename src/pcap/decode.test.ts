import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodePacket } from './decode.js';
import {
  ethernet,
  icmp,
  ip4,
  ipv4,
  ipv6,
  ipv6AuthHeader,
  ipv6FragmentHeader,
  ipv6OptionsHeader,
  ipv6RoutingHeader,
  sll,
  sll2,
  tcp,
  udp,
} from '../../test/support/pcap-frames.js';
import {
  makeTempDir,
  removeTempDir,
  summarize,
  tsharkSummaries,
} from '../../test/support/pcap-tools.js';
import { LinkType } from './types.js';
import type { DecodedIp } from './types.js';
import { createPcapWriter } from './writer.js';

const A4 = ip4(192, 0, 2, 1);
const B4 = ip4(198, 51, 100, 7);
const A6 = 0x20010db8000000000000000000000001n;
const B6 = 0x20010db8000000000000000000abcdefn;
const SYN_ACK = 0x12;
const PSH_ACK = 0x18;

const udp4 = ipv4({ src: A4, dst: B4, protocol: 17, payload: udp(5353, 53, Buffer.alloc(30)) });
const tcpWithOptions = ipv4({
  src: A4,
  dst: B4,
  protocol: 6,
  options: Buffer.from([0x94, 0x04, 0x00, 0x00]), // Router Alert
  payload: tcp({
    srcPort: 443,
    dstPort: 50000,
    seq: 0xfffffff0,
    ack: 12345,
    flags: PSH_ACK,
    options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]), // NOP NOP timestamps
    payload: Buffer.alloc(100, 0x42),
  }),
});
const firstFragment = ipv4({
  src: A4,
  dst: B4,
  protocol: 17,
  flagsOffset: 0x2000,
  totalLength: 20 + 1480,
  payload: udp(4000, 4001, Buffer.alloc(1472)).subarray(0, 1480),
});
const middleFragment = ipv4({
  src: A4,
  dst: B4,
  protocol: 17,
  flagsOffset: 0x2000 | 185,
  payload: Buffer.alloc(1480, 7),
});
const lastFragment = ipv4({
  src: A4,
  dst: B4,
  protocol: 17,
  flagsOffset: 370,
  payload: Buffer.alloc(100, 7),
});
const v6Chain = ipv6({
  src: A6,
  dst: B6,
  nextHeader: 0,
  payload: Buffer.concat([
    ipv6OptionsHeader(60, 1), // hop-by-hop → destination options
    ipv6OptionsHeader(43, 2), // destination options → routing
    ipv6RoutingHeader(44), // routing → fragment
    ipv6FragmentHeader(51, 0, true), // first fragment → AH
    ipv6AuthHeader(6), // AH → TCP
    tcp({ srcPort: 22, dstPort: 61000, seq: 1, ack: 2, flags: SYN_ACK }),
  ]),
});
const v6LaterFragment = ipv6({
  src: A6,
  dst: B6,
  nextHeader: 44,
  payload: Buffer.concat([ipv6FragmentHeader(17, 181, false), Buffer.alloc(64)]),
});
const v6Udp = ipv6({ src: A6, dst: B6, nextHeader: 17, payload: udp(1, 2, Buffer.alloc(11)) });
const icmpEcho = ipv4({ src: A4, dst: B4, protocol: 1, payload: icmp(8, 0) });
const icmp6Echo = ipv6({ src: A6, dst: B6, nextHeader: 58, payload: icmp(128, 0) });
const mldReport = ipv6({
  src: A6,
  dst: 0xff020000000000000000000000000016n,
  nextHeader: 0,
  payload: Buffer.concat([ipv6OptionsHeader(58, 1), icmp(143, 0), Buffer.alloc(20)]),
});

/** Ethernet frames, with their tags, that the tshark cross-check uses too. */
const ethernetFrames: Record<string, Buffer> = {
  'IPv4 UDP': ethernet(0x0800, udp4),
  'IPv4 options, TCP options': ethernet(0x0800, tcpWithOptions),
  '802.1Q': ethernet(0x0800, udp4, [{ tpid: 0x8100, id: 100, priority: 5 }]),
  'QinQ 802.1ad': ethernet(0x86dd, v6Udp, [
    { tpid: 0x88a8, id: 3000 },
    { tpid: 0x8100, id: 42 },
  ]),
  'three tags': ethernet(0x0800, icmpEcho, [
    { tpid: 0x88a8, id: 1 },
    { tpid: 0x8100, id: 2 },
    { tpid: 0x8100, id: 4095 },
  ]),
  'IPv4 first fragment': ethernet(0x0800, firstFragment),
  'IPv4 middle fragment': ethernet(0x0800, middleFragment),
  'IPv4 last fragment': ethernet(0x0800, lastFragment),
  'IPv6 extension chain': ethernet(0x86dd, v6Chain),
  'IPv6 later fragment': ethernet(0x86dd, v6LaterFragment),
  'IPv6 UDP': ethernet(0x86dd, v6Udp),
  ICMP: ethernet(0x0800, icmpEcho),
  ICMPv6: ethernet(0x86dd, icmp6Echo),
  'MLD behind hop-by-hop': ethernet(0x86dd, mldReport),
  ARP: ethernet(0x0806, Buffer.alloc(28)),
};

function addressesOf(ip: DecodedIp | undefined) {
  return ip === undefined ? undefined : [ip.version, ip.src, ip.dst, ip.length];
}

function decodeEthernet(name: string) {
  const frame = ethernetFrames[name];
  if (frame === undefined) throw new Error(`no frame ${name}`);
  return decodePacket(LinkType.ETHERNET, frame);
}

describe('decodePacket', () => {
  it('decodes Ethernet, IPv4 and UDP', () => {
    expect(decodeEthernet('IPv4 UDP')).toEqual({
      linkType: 1,
      vlanIds: [],
      ip: {
        version: 4,
        src: 0xc0000201n,
        dst: 0xc6336407n,
        protocol: 17,
        length: 58,
        fragment: false,
        fragmentOffset: 0,
      },
      udp: { srcPort: 5353, dstPort: 53, payloadLength: 30 },
    });
  });

  it('skips IPv4 and TCP options', () => {
    const p = decodeEthernet('IPv4 options, TCP options');
    expect(p.ip?.length).toBe(24 + 32 + 100);
    expect(p.tcp).toEqual({
      srcPort: 443,
      dstPort: 50000,
      flags: PSH_ACK,
      seq: 0xfffffff0,
      ack: 12345,
      payloadLength: 100,
    });
  });

  it('walks VLAN tags of any depth, outermost first', () => {
    expect(decodeEthernet('802.1Q').vlanIds).toEqual([100]);
    const qinq = decodeEthernet('QinQ 802.1ad');
    expect(qinq.vlanIds).toEqual([3000, 42]);
    expect(qinq.udp?.dstPort).toBe(2);
    const three = decodeEthernet('three tags');
    expect(three.vlanIds).toEqual([1, 2, 4095]);
    expect(three.icmp).toEqual({ version: 4, type: 8, code: 0 });
  });

  it('marks IPv4 fragments and decodes ports only in the first', () => {
    const first = decodeEthernet('IPv4 first fragment');
    expect(first.ip).toMatchObject({ fragment: true, fragmentOffset: 0 });
    expect(first.udp).toEqual({ srcPort: 4000, dstPort: 4001, payloadLength: 1472 });
    const middle = decodeEthernet('IPv4 middle fragment');
    expect(middle.ip).toMatchObject({ fragment: true, fragmentOffset: 185, protocol: 17 });
    expect(middle.udp).toBeUndefined();
    expect(decodeEthernet('IPv4 last fragment').ip).toMatchObject({
      fragment: true,
      fragmentOffset: 370,
    });
    expect(decodeEthernet('IPv4 UDP').ip?.fragment).toBe(false);
  });

  it('walks IPv6 hop-by-hop, destination, routing, fragment and AH headers', () => {
    const p = decodeEthernet('IPv6 extension chain');
    expect(p.ip).toEqual({
      version: 6,
      src: A6,
      dst: B6,
      protocol: 6,
      length: v6Chain.length,
      fragment: true,
      fragmentOffset: 0,
    });
    expect(p.tcp).toMatchObject({ srcPort: 22, dstPort: 61000, flags: SYN_ACK, payloadLength: 0 });
    const later = decodeEthernet('IPv6 later fragment');
    expect(later.ip).toMatchObject({ protocol: 17, fragment: true, fragmentOffset: 181 });
    expect(later.udp).toBeUndefined();
  });

  it('decodes ICMP and ICMPv6, also behind extension headers', () => {
    expect(decodeEthernet('ICMP').icmp).toEqual({ version: 4, type: 8, code: 0 });
    expect(decodeEthernet('ICMPv6').icmp).toEqual({ version: 6, type: 128, code: 0 });
    expect(decodeEthernet('MLD behind hop-by-hop')).toMatchObject({
      ip: { protocol: 58 },
      icmp: { version: 6, type: 143 },
    });
  });

  it('leaves non-IP frames at the link layer', () => {
    expect(decodeEthernet('ARP')).toEqual({ linkType: 1, vlanIds: [] });
    expect(decodePacket(147, udp4)).toEqual({ linkType: 147, vlanIds: [] });
  });

  it('reads the direction of Linux cooked v1 and v2 headers', () => {
    const expected = ['inbound', 'broadcast', 'multicast', 'otherhost', 'outbound'];
    for (let type = 0; type < 5; type++) {
      const v1 = decodePacket(LinkType.LINUX_SLL, sll(type, 0x0800, udp4));
      const v2 = decodePacket(LinkType.LINUX_SLL2, sll2(type, 0x86dd, v6Udp));
      expect(v1.direction).toBe(expected[type]);
      expect(v2.direction).toBe(expected[type]);
      expect(v1.udp?.srcPort).toBe(5353);
      expect(v2.ip?.src).toBe(A6);
    }
    expect(decodePacket(LinkType.LINUX_SLL, sll(7, 0x0800, udp4)).direction).toBeUndefined();
    const tagged = sll2(4, 0x8100, Buffer.concat([Buffer.from([0, 9, 8, 0]), udp4]));
    expect(decodePacket(LinkType.LINUX_SLL2, tagged)).toMatchObject({
      vlanIds: [9],
      udp: { dstPort: 53 },
    });
  });

  it('decodes raw IP and BSD loopback', () => {
    expect(decodePacket(LinkType.RAW, udp4).udp?.dstPort).toBe(53);
    expect(decodePacket(LinkType.RAW, v6Udp).ip?.version).toBe(6);
    expect(decodePacket(228, udp4).ip?.version).toBe(4);
    expect(decodePacket(229, v6Udp).ip?.version).toBe(6);
    const le = Buffer.from([2, 0, 0, 0]);
    const be30 = Buffer.from([0, 0, 0, 30]);
    expect(decodePacket(LinkType.NULL, Buffer.concat([le, udp4])).ip?.src).toBe(BigInt(A4));
    expect(decodePacket(108, Buffer.concat([be30, v6Udp])).ip?.src).toBe(A6);
  });

  it('falls back to the captured bytes when the IP length is 0 (TSO)', () => {
    const tso = ipv4({
      src: A4,
      dst: B4,
      protocol: 6,
      totalLength: 0,
      payload: tcp({ srcPort: 1, dstPort: 2, flags: 0x10, payload: Buffer.alloc(3000) }),
    });
    expect(decodePacket(LinkType.RAW, tso).tcp?.payloadLength).toBe(3000);
  });

  it('decodes every prefix of every frame without throwing, as far as it goes', () => {
    const frames: [number, Buffer][] = [
      ...Object.values(ethernetFrames).map((f): [number, Buffer] => [LinkType.ETHERNET, f]),
      [LinkType.LINUX_SLL, sll(4, 0x0800, tcpWithOptions)],
      [LinkType.LINUX_SLL2, sll2(0, 0x86dd, v6Chain)],
      [LinkType.RAW, v6Chain],
      [LinkType.NULL, Buffer.concat([Buffer.from([2, 0, 0, 0]), icmpEcho])],
    ];
    for (const [linkType, frame] of frames) {
      const full = decodePacket(linkType, frame);
      for (let n = 0; n <= frame.length; n++) {
        const part = decodePacket(linkType, frame.subarray(0, n));
        // Whatever a prefix yields is what the whole frame yields.
        // (An IPv6 chain cut short has no upper-layer protocol yet: see the test below.)
        if (part.ip !== undefined) {
          expect(addressesOf(part.ip)).toEqual(addressesOf(full.ip));
          if (part.ip.version === 4) expect(part.ip).toEqual(full.ip);
        }
        if (part.tcp !== undefined) expect(part.tcp).toEqual(full.tcp);
        if (part.udp !== undefined) expect(part.udp).toEqual(full.udp);
        if (part.icmp !== undefined) expect(part.icmp).toEqual(full.icmp);
        if (part.direction !== undefined) expect(part.direction).toEqual(full.direction);
      }
    }
  });

  it('names the header it could not read when an IPv6 chain is cut short', () => {
    const cut = v6Chain.subarray(0, 40 + 8 + 16 + 24 + 1); // into the fragment header
    expect(decodePacket(LinkType.RAW, cut)).toEqual({
      linkType: LinkType.RAW,
      vlanIds: [],
      ip: {
        version: 6,
        src: A6,
        dst: B6,
        protocol: 44,
        length: v6Chain.length,
        fragment: false,
        fragmentOffset: 0,
      },
    });
  });

  it('survives random garbage on every link type', () => {
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (const linkType of [0, 1, 101, 108, 113, 228, 229, 276]) {
      for (let i = 0; i < 2000; i++) {
        const buf = Buffer.alloc(random() % 120);
        for (let j = 0; j < buf.length; j++) buf[j] = random() & 0xff;
        // Steer some frames into the IP decoders so the garbage reaches them.
        if (linkType === 1 && buf.length > 14) buf.writeUInt16BE(i % 2 ? 0x86dd : 0x0800, 12);
        if (buf.length > 0 && (linkType === 101 || linkType === 229)) buf[0] = 0x60;
        if (buf.length > 0 && linkType === 228) buf[0] = 0x45;
        expect(() => decodePacket(linkType, buf)).not.toThrow();
      }
    }
  });
});

describe('decodePacket against tshark', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('agrees with tshark on every hand-built Ethernet frame', async () => {
    const file = join(dir, 'frames.pcap');
    const writer = createPcapWriter(createWriteStream(file), { linkType: 1, snaplen: 65535 });
    const frames = Object.values(ethernetFrames);
    for (const [i, data] of frames.entries()) await writer.write({ tsSec: i, tsFrac: 0, data });
    await writer.close();
    const decoded = frames.map((f) => decodePacket(LinkType.ETHERNET, f));
    const theirs = await tsharkSummaries(file);
    // tshark leaves tcp.len out in fragments it does not reassemble.
    const ours = decoded.map((p, i) =>
      p.ip?.fragment === true && p.tcp !== undefined
        ? { ...summarize(p), payloadLength: theirs[i]?.payloadLength }
        : summarize(p),
    );
    expect(ours).toEqual(theirs);
  });
});
