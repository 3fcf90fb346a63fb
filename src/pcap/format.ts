/**
 * The libpcap file format: a 24-byte file header, then records of a 16-byte header followed by
 * the captured bytes. Layout as in the tcpdump.org "pcap-savefile" man page and
 * draft-ietf-opsawg-pcap. These functions sit on the capture runner's hot path, so they read
 * and write fields directly on the caller's buffers and allocate only when asked to.
 */
import { WirewatchError } from '../model/errors.js';
import type { ByteOrder, PcapFileHeader, TimestampPrecision } from './types.js';

/** Length of the file header at the start of every pcap file. */
export const FILE_HEADER_LENGTH = 24;

/** Length of the header in front of every packet record. */
export const RECORD_HEADER_LENGTH = 16;

/** Magic number of files with microsecond timestamps, as read in the file's own byte order. */
export const MAGIC_MICRO = 0xa1b2c3d4;

/** Magic number of files with nanosecond timestamps, as read in the file's own byte order. */
export const MAGIC_NANO = 0xa1b23c4d;

/** First four bytes of every pcapng file (its Section Header Block type), in either byte order. */
export const PCAPNG_MAGIC = 0x0a0d0d0a;

/** The format version every writer since libpcap 0.4 puts in the header. */
export const PCAP_VERSION_MAJOR = 2;
/** @see PCAP_VERSION_MAJOR */
export const PCAP_VERSION_MINOR = 4;

// Byte-swapped forms of the magics: what a little-endian read of a big-endian file yields.
const MAGIC_MICRO_SWAPPED = 0xd4c3b2a1;
const MAGIC_NANO_SWAPPED = 0x4d3cb2a1;
// Alexey Kuznetzov's patched libpcap wrote this magic, with longer record headers.
const MAGIC_KUZNETZOV = 0xa1b2cd34;
const MAGIC_KUZNETZOV_SWAPPED = 0x34cdb2a1;

// The link-type field's upper bits carry FCS information (draft-ietf-opsawg-pcap §4); libpcap
// masks them off the same way (LT_LINKTYPE).
const LINK_TYPE_MASK = 0x03ffffff;

/** The fields of a record header, in the file's precision. */
export interface RecordHeader {
  /** Seconds since the epoch. */
  tsSec: number;
  /** Fraction of the second, in micro- or nanoseconds as the file says. */
  tsFrac: number;
  /** Bytes of the packet stored in the file after this header. */
  capturedLength: number;
  /** Bytes the packet had on the wire. */
  originalLength: number;
}

/**
 * Parses the 24-byte file header at the start of `buf`.
 *
 * Accepts both byte orders and both the microsecond (a1b2c3d4) and nanosecond (a1b23c4d)
 * magics. The link type is returned without the FCS bits that may share its field.
 *
 * @throws WirewatchError `InvalidPcap` if `buf` is shorter than 24 bytes or does not start with
 *   a libpcap magic (a pcapng file gets a message saying so).
 */
export function parseFileHeader(buf: Buffer): PcapFileHeader {
  if (buf.length < FILE_HEADER_LENGTH) {
    throw new WirewatchError(
      'InvalidPcap',
      `a pcap file header is ${FILE_HEADER_LENGTH} bytes, got only ${buf.length}`,
    );
  }
  const magic = buf.readUInt32LE(0);
  let byteOrder: ByteOrder;
  let precision: TimestampPrecision;
  switch (magic) {
    case MAGIC_MICRO:
      byteOrder = 'LE';
      precision = 'micro';
      break;
    case MAGIC_MICRO_SWAPPED:
      byteOrder = 'BE';
      precision = 'micro';
      break;
    case MAGIC_NANO:
      byteOrder = 'LE';
      precision = 'nano';
      break;
    case MAGIC_NANO_SWAPPED:
      byteOrder = 'BE';
      precision = 'nano';
      break;
    case PCAPNG_MAGIC:
      throw new WirewatchError(
        'InvalidPcap',
        'this is a pcapng file; only libpcap (.pcap) files are supported (convert it with `editcap -F pcap`)',
      );
    case MAGIC_KUZNETZOV:
    case MAGIC_KUZNETZOV_SWAPPED:
      throw new WirewatchError(
        'InvalidPcap',
        'this pcap file uses the modified (Kuznetzov) record format, which is not supported',
      );
    default:
      throw new WirewatchError(
        'InvalidPcap',
        `not a pcap file: magic number 0x${magic.toString(16).padStart(8, '0')} is neither a1b2c3d4 nor a1b23c4d in either byte order`,
      );
  }
  const le = byteOrder === 'LE';
  return {
    byteOrder,
    precision,
    versionMajor: le ? buf.readUInt16LE(4) : buf.readUInt16BE(4),
    versionMinor: le ? buf.readUInt16LE(6) : buf.readUInt16BE(6),
    snaplen: le ? buf.readUInt32LE(16) : buf.readUInt32BE(16),
    linkType: (le ? buf.readUInt32LE(20) : buf.readUInt32BE(20)) & LINK_TYPE_MASK,
  };
}

/**
 * Encodes a file header (24 bytes) in the header's byte order, with the magic for its
 * precision, thiszone and sigfigs 0.
 *
 * @param target - where to write; a new buffer when omitted.
 * @param offset - where in `target` the header starts.
 * @returns the buffer written to.
 */
export function encodeFileHeader(h: PcapFileHeader, target?: Buffer, offset = 0): Buffer {
  const buf = target ?? Buffer.alloc(FILE_HEADER_LENGTH);
  const magic = h.precision === 'nano' ? MAGIC_NANO : MAGIC_MICRO;
  if (h.byteOrder === 'LE') {
    buf.writeUInt32LE(magic, offset);
    buf.writeUInt16LE(h.versionMajor, offset + 4);
    buf.writeUInt16LE(h.versionMinor, offset + 6);
    buf.writeInt32LE(0, offset + 8);
    buf.writeUInt32LE(0, offset + 12);
    buf.writeUInt32LE(h.snaplen, offset + 16);
    buf.writeUInt32LE(h.linkType, offset + 20);
  } else {
    buf.writeUInt32BE(magic, offset);
    buf.writeUInt16BE(h.versionMajor, offset + 4);
    buf.writeUInt16BE(h.versionMinor, offset + 6);
    buf.writeInt32BE(0, offset + 8);
    buf.writeUInt32BE(0, offset + 12);
    buf.writeUInt32BE(h.snaplen, offset + 16);
    buf.writeUInt32BE(h.linkType, offset + 20);
  }
  return buf;
}

/**
 * Reads the 16-byte record header at `offset`. The caller makes sure 16 bytes are there.
 *
 * @param into - an object to fill instead of allocating one; pass the same object on every
 *   call to read a stream of records without allocating.
 * @returns `into`, or a new header object.
 */
export function readRecordHeader(
  buf: Buffer,
  offset: number,
  byteOrder: ByteOrder,
  into?: RecordHeader,
): RecordHeader {
  const out = into ?? { tsSec: 0, tsFrac: 0, capturedLength: 0, originalLength: 0 };
  if (byteOrder === 'LE') {
    out.tsSec = buf.readUInt32LE(offset);
    out.tsFrac = buf.readUInt32LE(offset + 4);
    out.capturedLength = buf.readUInt32LE(offset + 8);
    out.originalLength = buf.readUInt32LE(offset + 12);
  } else {
    out.tsSec = buf.readUInt32BE(offset);
    out.tsFrac = buf.readUInt32BE(offset + 4);
    out.capturedLength = buf.readUInt32BE(offset + 8);
    out.originalLength = buf.readUInt32BE(offset + 12);
  }
  return out;
}

/**
 * Encodes a 16-byte record header.
 *
 * @param target - where to write; a new buffer when omitted.
 * @param offset - where in `target` the header starts.
 * @returns the buffer written to.
 */
export function encodeRecordHeader(
  h: Readonly<RecordHeader>,
  byteOrder: ByteOrder,
  target?: Buffer,
  offset = 0,
): Buffer {
  const buf = target ?? Buffer.allocUnsafe(RECORD_HEADER_LENGTH);
  if (byteOrder === 'LE') {
    buf.writeUInt32LE(h.tsSec, offset);
    buf.writeUInt32LE(h.tsFrac, offset + 4);
    buf.writeUInt32LE(h.capturedLength, offset + 8);
    buf.writeUInt32LE(h.originalLength, offset + 12);
  } else {
    buf.writeUInt32BE(h.tsSec, offset);
    buf.writeUInt32BE(h.tsFrac, offset + 4);
    buf.writeUInt32BE(h.capturedLength, offset + 8);
    buf.writeUInt32BE(h.originalLength, offset + 12);
  }
  return buf;
}

/** Units of `tsFrac` per second for a precision: 1e6 for micro, 1e9 for nano. */
export function fractionsPerSecond(precision: TimestampPrecision): number {
  return precision === 'nano' ? 1_000_000_000 : 1_000_000;
}

/**
 * Compares a record's timestamp with an instant given in whole microseconds since the epoch,
 * exactly for both precisions (a nanosecond stamp inside the instant's microsecond is later).
 *
 * @returns a negative number if the record is earlier, 0 if it is stamped at the instant, a
 *   positive number if it is later.
 */
export function compareTimestamp(
  tsSec: number,
  tsFrac: number,
  precision: TimestampPrecision,
  instantUs: number,
): number {
  if (precision === 'micro') return tsSec * 1_000_000 + tsFrac - instantUs;
  const us = tsSec * 1_000_000 + Math.floor(tsFrac / 1000);
  return us !== instantUs ? us - instantUs : tsFrac % 1000;
}
