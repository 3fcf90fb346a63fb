/**
 * Packet decoding down to the 5-tuple: link layer (Ethernet with any number of VLAN tags, Linux
 * cooked v1/v2, raw IP, BSD loopback), IPv4, IPv6 with its extension headers, and the first
 * bytes of TCP, UDP, ICMP and ICMPv6. Nothing here throws on short or garbage input: a packet
 * cut by the snaplen is decoded as far as its bytes go.
 */
import { LinkType } from './types.js';
import type {
  DecodedIcmp,
  DecodedIp,
  DecodedPacket,
  DecodedTcp,
  DecodedUdp,
  PacketDirection,
} from './types.js';

// Link types decoded beyond those named in LinkType.
const LINKTYPE_LOOP = 108;
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100; // 802.1Q
const ETHERTYPE_QINQ = 0x88a8; // 802.1ad service tag
const ETHERTYPE_QINQ_LEGACY = 0x9100; // pre-standard QinQ, still sent by some switches

const ARPHRD_NETLINK = 824;

const IPPROTO_HOPOPTS = 0;
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ROUTING = 43;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_AH = 51;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_DSTOPTS = 60;
const IPPROTO_MOBILITY = 135;
const IPPROTO_HIP = 139;
const IPPROTO_SHIM6 = 140;

// Linux sll_pkttype values (linux/if_packet.h), in order from PACKET_HOST = 0.
const DIRECTIONS: readonly PacketDirection[] = [
  'inbound',
  'broadcast',
  'multicast',
  'otherhost',
  'outbound',
];

interface Decoding {
  linkType: number;
  vlanIds: number[];
  direction?: PacketDirection;
  ip?: DecodedIp;
  tcp?: DecodedTcp;
  udp?: DecodedUdp;
  icmp?: DecodedIcmp;
}

/**
 * Decodes a packet of the given link type (a pcap file's `linkType`).
 *
 * Link types: Ethernet (1; 802.1Q, 802.1ad and 0x9100 tags, any depth), Linux SLL (113) and
 * SLL2 (276, both giving `direction`), raw IP (101, 228, 229), BSD loopback (0, 108). Others
 * decode to just `{ linkType, vlanIds: [] }`.
 *
 * Never throws. Each part is present only if all of its fields were captured: `ip` needs the
 * fixed IP header, `tcp` its first 14 bytes (through the flags), `udp` 8, `icmp` 2. Transport
 * headers are decoded only in unfragmented packets and first fragments. Lengths come from the
 * headers, not the captured bytes, except when an IP length field is 0 (a TSO/GSO packet seen
 * before segmentation, or an IPv6 jumbogram): then the captured bytes stand in for it. When an
 * IPv6 extension header chain is cut short, `protocol` is the type of the header that could
 * not be read.
 */
export function decodePacket(linkType: number, data: Buffer): DecodedPacket {
  const out: Decoding = { linkType, vlanIds: [] };
  switch (linkType) {
    case LinkType.ETHERNET:
      if (data.length >= 14) decodeEthertype(data, data.readUInt16BE(12), 14, out);
      break;
    case LinkType.LINUX_SLL:
      // pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
      if (data.length >= 2) setDirection(data.readUInt16BE(0), out);
      if (data.length >= 16 && data.readUInt16BE(2) !== ARPHRD_NETLINK) {
        decodeEthertype(data, data.readUInt16BE(14), 16, out);
      }
      break;
    case LinkType.LINUX_SLL2:
      // protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
      if (data.length >= 11) setDirection(data.readUInt8(10), out);
      if (data.length >= 20 && data.readUInt16BE(8) !== ARPHRD_NETLINK) {
        decodeEthertype(data, data.readUInt16BE(0), 20, out);
      }
      break;
    case LinkType.RAW:
      decodeIp(data, 0, out);
      break;
    case LINKTYPE_IPV4:
      decodeIpv4(data, 0, out);
      break;
    case LINKTYPE_IPV6:
      decodeIpv6(data, 0, out);
      break;
    case LinkType.NULL:
    case LINKTYPE_LOOP:
      if (data.length >= 4) {
        // NULL stores the address family in the capturing host's byte order, LOOP in network
        // order; families fit in 16 bits, so whichever reading is small is the right one.
        const le = data.readUInt32LE(0);
        const family = le <= 0xffff ? le : data.readUInt32BE(0);
        if (family === 2) decodeIpv4(data, 4, out);
        // AF_INET6 is 10 on Linux, 24, 28 or 30 on the BSDs and macOS.
        else if (family === 10 || family === 24 || family === 28 || family === 30) {
          decodeIpv6(data, 4, out);
        }
      }
      break;
    default:
      break;
  }
  return out;
}

function setDirection(packetType: number, out: Decoding): void {
  const direction = DIRECTIONS[packetType];
  if (direction !== undefined) out.direction = direction;
}

function decodeEthertype(data: Buffer, ethertype: number, offset: number, out: Decoding): void {
  let type = ethertype;
  let o = offset;
  while (type === ETHERTYPE_VLAN || type === ETHERTYPE_QINQ || type === ETHERTYPE_QINQ_LEGACY) {
    if (data.length - o < 4) return;
    out.vlanIds.push(data.readUInt16BE(o) & 0x0fff);
    type = data.readUInt16BE(o + 2);
    o += 4;
  }
  if (type === ETHERTYPE_IPV4) decodeIpv4(data, o, out);
  else if (type === ETHERTYPE_IPV6) decodeIpv6(data, o, out);
}

function decodeIp(data: Buffer, offset: number, out: Decoding): void {
  if (data.length <= offset) return;
  const version = data.readUInt8(offset) >> 4;
  if (version === 4) decodeIpv4(data, offset, out);
  else if (version === 6) decodeIpv6(data, offset, out);
}

function decodeIpv4(data: Buffer, o: number, out: Decoding): void {
  if (data.length - o < 20) return;
  const versionIhl = data.readUInt8(o);
  const headerLength = (versionIhl & 0x0f) * 4;
  if (versionIhl >> 4 !== 4 || headerLength < 20) return;
  const totalLength = data.readUInt16BE(o + 2);
  const flagsOffset = data.readUInt16BE(o + 6);
  const moreFragments = (flagsOffset & 0x2000) !== 0;
  const fragmentOffset = flagsOffset & 0x1fff;
  const protocol = data.readUInt8(o + 9);
  const length = totalLength !== 0 ? totalLength : data.length - o;
  out.ip = {
    version: 4,
    src: BigInt(data.readUInt32BE(o + 12)),
    dst: BigInt(data.readUInt32BE(o + 16)),
    protocol,
    length,
    fragment: moreFragments || fragmentOffset !== 0,
    fragmentOffset,
  };
  if (fragmentOffset === 0) {
    decodeTransport(data, o + headerLength, length - headerLength, protocol, 4, out);
  }
}

function decodeIpv6(data: Buffer, o: number, out: Decoding): void {
  if (data.length - o < 40) return;
  if (data.readUInt8(o) >> 4 !== 6) return;
  const payloadLength = data.readUInt16BE(o + 4);
  const length = payloadLength !== 0 ? 40 + payloadLength : data.length - o;
  const end = o + length;
  let next = data.readUInt8(o + 6);
  let p = o + 40;
  let fragment = false;
  let fragmentOffset = 0;
  let complete = true;
  // Every extension header is at least 8 bytes, so this walk ends.
  walk: for (;;) {
    switch (next) {
      case IPPROTO_HOPOPTS:
      case IPPROTO_ROUTING:
      case IPPROTO_DSTOPTS:
      case IPPROTO_MOBILITY:
      case IPPROTO_HIP:
      case IPPROTO_SHIM6:
        if (data.length - p < 2) {
          complete = false;
          break walk;
        }
        next = data.readUInt8(p);
        p += (data.readUInt8(p + 1) + 1) * 8;
        break;
      case IPPROTO_FRAGMENT:
        if (data.length - p < 4) {
          complete = false;
          break walk;
        }
        fragment = true;
        fragmentOffset = data.readUInt16BE(p + 2) >> 3;
        next = data.readUInt8(p);
        p += 8;
        break;
      case IPPROTO_AH:
        // AH counts its length in 4-byte units, minus 2 (RFC 4302).
        if (data.length - p < 2) {
          complete = false;
          break walk;
        }
        next = data.readUInt8(p);
        p += (data.readUInt8(p + 1) + 2) * 4;
        break;
      default:
        break walk;
    }
  }
  out.ip = {
    version: 6,
    src: readUInt128BE(data, o + 8),
    dst: readUInt128BE(data, o + 24),
    protocol: next,
    length,
    fragment,
    fragmentOffset,
  };
  if (complete && fragmentOffset === 0) decodeTransport(data, p, end - p, next, 6, out);
}

function readUInt128BE(data: Buffer, o: number): bigint {
  return (data.readBigUInt64BE(o) << 64n) | data.readBigUInt64BE(o + 8);
}

/** `length` is the transport segment's length as the IP header says, header included. */
function decodeTransport(
  data: Buffer,
  o: number,
  length: number,
  protocol: number,
  ipVersion: 4 | 6,
  out: Decoding,
): void {
  const captured = data.length - o;
  switch (protocol) {
    case IPPROTO_TCP:
      if (captured < 14) return;
      out.tcp = {
        srcPort: data.readUInt16BE(o),
        dstPort: data.readUInt16BE(o + 2),
        flags: data.readUInt8(o + 13),
        seq: data.readUInt32BE(o + 4),
        ack: data.readUInt32BE(o + 8),
        payloadLength: Math.max(0, length - (data.readUInt8(o + 12) >> 4) * 4),
      };
      return;
    case IPPROTO_UDP: {
      if (captured < 8) return;
      // A UDP length of 0 is a jumbogram's (RFC 2675): the IP length rules.
      const udpLength = data.readUInt16BE(o + 4);
      out.udp = {
        srcPort: data.readUInt16BE(o),
        dstPort: data.readUInt16BE(o + 2),
        payloadLength: Math.max(0, (udpLength !== 0 ? udpLength : length) - 8),
      };
      return;
    }
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      if (captured < 2) return;
      if ((protocol === IPPROTO_ICMP) !== (ipVersion === 4)) return;
      out.icmp = { version: ipVersion, type: data.readUInt8(o), code: data.readUInt8(o + 1) };
      return;
    default:
      return;
  }
}
