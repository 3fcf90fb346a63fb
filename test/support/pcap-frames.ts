/**
 * Builders of hand-made frames for the decoder tests. Checksums are left 0: neither the
 * decoder nor tshark (by default) checks them. Not part of the build.
 */
import { encodeFileHeader } from '../../src/pcap/format.js';
import type { PcapFileHeader } from '../../src/pcap/types.js';
import { encodeRecord } from '../../src/pcap/writer.js';

export interface Ipv4Fields {
  readonly src: number;
  readonly dst: number;
  readonly protocol: number;
  /** Bytes after the IPv4 header. */
  readonly payload: Buffer;
  readonly options?: Buffer;
  /** The flags and fragment offset word (MF = 0x2000, offset in 8-byte units). */
  readonly flagsOffset?: number;
  /** Overrides the total length field. */
  readonly totalLength?: number;
}

export function ipv4(f: Ipv4Fields): Buffer {
  const options = f.options ?? Buffer.alloc(0);
  const headerLength = 20 + options.length;
  const h = Buffer.alloc(20);
  h.writeUInt8(0x40 | (headerLength / 4), 0);
  h.writeUInt16BE(f.totalLength ?? headerLength + f.payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(f.flagsOffset ?? 0x4000, 6);
  h.writeUInt8(64, 8);
  h.writeUInt8(f.protocol, 9);
  h.writeUInt32BE(f.src, 12);
  h.writeUInt32BE(f.dst, 16);
  return Buffer.concat([h, options, f.payload]);
}

export interface Ipv6Fields {
  readonly src: bigint;
  readonly dst: bigint;
  readonly nextHeader: number;
  /** Extension headers and upper-layer bytes. */
  readonly payload: Buffer;
}

export function ipv6(f: Ipv6Fields): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(f.payload.length, 4);
  h.writeUInt8(f.nextHeader, 6);
  h.writeUInt8(64, 7);
  writeUInt128BE(h, f.src, 8);
  writeUInt128BE(h, f.dst, 24);
  return Buffer.concat([h, f.payload]);
}

function writeUInt128BE(buf: Buffer, value: bigint, offset: number): void {
  buf.writeBigUInt64BE(value >> 64n, offset);
  buf.writeBigUInt64BE(value & 0xffffffffffffffffn, offset + 8);
}

/** An extension header of the (type, length in 8-octet units - 1) kind, padded with PadN. */
export function ipv6OptionsHeader(nextHeader: number, units = 1): Buffer {
  const h = Buffer.alloc(units * 8);
  h.writeUInt8(nextHeader, 0);
  h.writeUInt8(units - 1, 1);
  h.writeUInt8(1, 2); // PadN
  h.writeUInt8(units * 8 - 4, 3);
  return h;
}

/** A type 0 routing header with one address and no segments left (24 bytes). */
export function ipv6RoutingHeader(nextHeader: number): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt8(nextHeader, 0);
  h.writeUInt8(2, 1);
  h.writeUInt8(0, 2); // routing type 0
  h.writeUInt8(0, 3); // segments left
  writeUInt128BE(h, 0x20010db8000000000000000000000099n, 8);
  return h;
}

export function ipv6FragmentHeader(
  nextHeader: number,
  offsetUnits: number,
  more: boolean,
  id = 0xabcdef,
): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(nextHeader, 0);
  h.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
  h.writeUInt32BE(id, 4);
  return h;
}

/** An AH header with a 12-byte ICV (payload length field 4). */
export function ipv6AuthHeader(nextHeader: number): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt8(nextHeader, 0);
  h.writeUInt8(4, 1);
  h.writeUInt32BE(0x1000, 4); // SPI
  h.writeUInt32BE(1, 8); // sequence number
  return h;
}

export interface TcpFields {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq?: number;
  readonly ack?: number;
  readonly flags: number;
  readonly options?: Buffer;
  readonly payload?: Buffer;
}

export function tcp(f: TcpFields): Buffer {
  const options = f.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20);
  h.writeUInt16BE(f.srcPort, 0);
  h.writeUInt16BE(f.dstPort, 2);
  h.writeUInt32BE(f.seq ?? 1000, 4);
  h.writeUInt32BE(f.ack ?? 0, 8);
  h.writeUInt8(((20 + options.length) / 4) << 4, 12);
  h.writeUInt8(f.flags, 13);
  h.writeUInt16BE(65535, 14);
  return Buffer.concat([h, options, f.payload ?? Buffer.alloc(0)]);
}

export function udp(srcPort: number, dstPort: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(srcPort, 0);
  h.writeUInt16BE(dstPort, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

export function icmp(type: number, code: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(type, 0);
  h.writeUInt8(code, 1);
  return h;
}

export interface VlanTag {
  readonly tpid: number;
  readonly id: number;
  readonly priority?: number;
}

export function ethernet(
  ethertype: number,
  payload: Buffer,
  tags: readonly VlanTag[] = [],
): Buffer {
  const h = Buffer.alloc(12);
  Buffer.from([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]).copy(h);
  const parts: Buffer[] = [h];
  for (const tag of tags) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(tag.tpid, 0);
    t.writeUInt16BE(((tag.priority ?? 0) << 13) | tag.id, 2);
    parts.push(t);
  }
  const type = Buffer.alloc(2);
  type.writeUInt16BE(ethertype, 0);
  parts.push(type, payload);
  return Buffer.concat(parts);
}

/** A Linux cooked (v1) header: packet type, ARPHRD_ETHER, 6-byte address, protocol. */
export function sll(packetType: number, protocol: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(packetType, 0);
  h.writeUInt16BE(1, 2);
  h.writeUInt16BE(6, 4);
  h.writeUInt16BE(protocol, 14);
  return Buffer.concat([h, payload]);
}

/** A Linux cooked v2 header. */
export function sll2(packetType: number, protocol: number, payload: Buffer, ifindex = 1): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(protocol, 0);
  h.writeUInt32BE(ifindex, 4);
  h.writeUInt16BE(1, 8);
  h.writeUInt8(packetType, 10);
  h.writeUInt8(6, 11);
  return Buffer.concat([h, payload]);
}

export const ip4 = (a: number, b: number, c: number, d: number): number =>
  ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;

/** A pcap file of `count` records of assorted lengths (the reader and repair tests). */
export function fileBytes(header: Partial<PcapFileHeader>, count: number): Buffer {
  const h: PcapFileHeader = {
    byteOrder: 'LE',
    precision: 'micro',
    versionMajor: 2,
    versionMinor: 4,
    snaplen: 65535,
    linkType: 1,
    ...header,
  };
  const parts = [encodeFileHeader(h)];
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc((i * 37) % 300, i & 0xff);
    parts.push(
      encodeRecord(
        { tsSec: 1000 + i, tsFrac: i * 7, originalLength: data.length + (i % 3), data },
        { byteOrder: h.byteOrder },
      ),
    );
  }
  return Buffer.concat(parts);
}
