/** Byte order of a pcap file, from its magic number. */
export type ByteOrder = 'LE' | 'BE';

/** Timestamp resolution of a pcap file: microseconds (magic a1b2c3d4) or nanoseconds (a1b23c4d). */
export type TimestampPrecision = 'micro' | 'nano';

/** Link-layer header types (LINKTYPE_* values of the tcpdump.org registry) that wirewatch decodes. */
export const LinkType = {
  NULL: 0,
  ETHERNET: 1,
  RAW: 101,
  LINUX_SLL: 113,
  LINUX_SLL2: 276,
} as const;

/** The 24-byte global header of a libpcap file. */
export interface PcapFileHeader {
  readonly byteOrder: ByteOrder;
  readonly precision: TimestampPrecision;
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Largest number of bytes stored per packet. */
  readonly snaplen: number;
  readonly linkType: number;
}

/** One packet record of a pcap file. */
export interface PcapRecord {
  /** Seconds since the epoch. */
  readonly tsSec: number;
  /** Fraction of the second, in the file's precision (micro- or nanoseconds). */
  readonly tsFrac: number;
  /** Bytes stored in the file (≤ snaplen). */
  readonly capturedLength: number;
  /** Bytes the packet had on the wire. */
  readonly originalLength: number;
  readonly data: Buffer;
}

/** Linux packet type, as the kernel (and SLL/SLL2 headers) record it. */
export type PacketDirection = 'inbound' | 'broadcast' | 'multicast' | 'otherhost' | 'outbound';

/** What the decoder found in a packet, as far as the 5-tuple, lengths and TCP flags. */
export interface DecodedPacket {
  readonly linkType: number;
  /** 802.1Q / 802.1ad tags, outermost first. */
  readonly vlanIds: readonly number[];
  /** Known only for SLL and SLL2 captures. */
  readonly direction?: PacketDirection;
  readonly ip?: DecodedIp;
  readonly tcp?: DecodedTcp;
  readonly udp?: DecodedUdp;
  readonly icmp?: DecodedIcmp;
}

export interface DecodedIp {
  readonly version: 4 | 6;
  /** Addresses as unsigned integers (32 bits for IPv4, 128 bits for IPv6). */
  readonly src: bigint;
  readonly dst: bigint;
  /** The upper-layer protocol number, after IPv6 extension headers. */
  readonly protocol: number;
  /** Length of the IP packet from its header (IPv4 total length, IPv6 40 + payload length). */
  readonly length: number;
  /** True for any fragment, first included (IPv4 MF or offset, IPv6 fragment header). */
  readonly fragment: boolean;
  /** Fragment offset in 8-byte units; 0 for unfragmented packets and first fragments. */
  readonly fragmentOffset: number;
}

export interface DecodedTcp {
  readonly srcPort: number;
  readonly dstPort: number;
  /** The 8 flag bits of byte 13: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80. */
  readonly flags: number;
  readonly seq: number;
  readonly ack: number;
  /** Payload bytes as the IP length says (not limited by snaplen). */
  readonly payloadLength: number;
}

export interface DecodedUdp {
  readonly srcPort: number;
  readonly dstPort: number;
  /** Payload bytes as the UDP header says. */
  readonly payloadLength: number;
}

export interface DecodedIcmp {
  readonly version: 4 | 6;
  readonly type: number;
  readonly code: number;
}

/**
 * An interface of a capture file: a classic pcap file has one (its header); a pcapng file one
 * per Interface Description Block, in the order of the blocks, over all its sections.
 */
export interface CaptureInterface {
  readonly linkType: number;
  /** Largest number of bytes stored per packet; 0 in a pcapng IDB means no limit. */
  readonly snaplen: number;
  /**
   * Resolution of its packets' `tsFrac`: `'micro'` for pcapng resolutions of a microsecond or
   * coarser, `'nano'` for finer ones (cut to the nanosecond).
   */
  readonly precision: TimestampPrecision;
  /** pcapng `if_name`. */
  readonly name?: string;
  /** pcapng `if_description`. */
  readonly description?: string;
  /** The pcapng section it belongs to, from 0 (a classic pcap file: 0). */
  readonly section: number;
}

/** A packet of a capture file of either format, with the interface that saw it. */
export interface CapturePacket extends PcapRecord {
  /** Index into the file's {@link CaptureInterface} list (a classic pcap file: 0). */
  readonly interfaceId: number;
}

/**
 * A packet read in place where it lies in a parser's input (see `CaptureParser.next`): its
 * bytes are `data[dataStart, dataStart + capturedLength)`. The parser reuses the one view for
 * every packet, so it is valid until the parser steps on.
 */
export interface PacketView {
  /** The buffer holding the packet, among other bytes. */
  readonly data: Buffer;
  readonly dataStart: number;
  readonly capturedLength: number;
  readonly originalLength: number;
  readonly tsSec: number;
  /** Fraction of the second, in its interface's precision. */
  readonly tsFrac: number;
  /** Index into the parser's interfaces (a classic pcap file: 0). */
  readonly interfaceId: number;
}
