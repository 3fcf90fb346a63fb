/**
 * The pcapng file format (draft-ietf-opsawg-pcapng): blocks of a 32-bit type, a 32-bit total
 * length, a body padded to 32 bits and the total length again. A Section Header Block (SHB)
 * starts every section and sets its byte order; an Interface Description Block (IDB) per
 * interface gives its link type, snaplen, name and timestamp resolution; Enhanced Packet Blocks
 * (EPB) carry the packets. This module encodes the blocks wirewatch writes and holds the
 * constants and timestamp arithmetic the reader shares.
 */
import type { ByteOrder, TimestampPrecision } from './types.js';

/** Block type of the Section Header Block; also the first four bytes of every pcapng file. */
export const BLOCK_SECTION_HEADER = 0x0a0d0d0a;
/** Interface Description Block. */
export const BLOCK_INTERFACE_DESCRIPTION = 0x00000001;
/** The obsolete Packet Block, still read. */
export const BLOCK_PACKET = 0x00000002;
/** Simple Packet Block: no timestamp, interface 0. */
export const BLOCK_SIMPLE_PACKET = 0x00000003;
/** Enhanced Packet Block. */
export const BLOCK_ENHANCED_PACKET = 0x00000006;
/** The SHB's byte-order magic, as written in the section's own byte order. */
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes used here (opt_endofopt ends an option list). */
export const OPT_END = 0;
export const OPT_SHB_USERAPPL = 4;
export const OPT_IF_NAME = 2;
export const OPT_IF_DESCRIPTION = 3;
export const OPT_IF_TSRESOL = 9;
export const OPT_IF_TSOFFSET = 14;

/** Length of an EPB without its data and options: 28 bytes of header and the trailing length. */
export const EPB_OVERHEAD = 32;

/** `n` rounded up to a multiple of 4. */
export function padded(n: number): number {
  return (n + 3) & ~3;
}

/** One option of a block: its code and value (written padded to 32 bits). */
export interface PcapngOption {
  readonly code: number;
  readonly value: Buffer;
}

function optionsLength(options: readonly PcapngOption[]): number {
  if (options.length === 0) return 0;
  return options.reduce((n, o) => n + 4 + padded(o.value.length), 4);
}

/** Writes 32-bit and 16-bit fields in one byte order. */
class FieldWriter {
  constructor(
    readonly buf: Buffer,
    readonly le: boolean,
  ) {}
  u32(value: number, offset: number): void {
    if (this.le) this.buf.writeUInt32LE(value, offset);
    else this.buf.writeUInt32BE(value, offset);
  }
  u16(value: number, offset: number): void {
    if (this.le) this.buf.writeUInt16LE(value, offset);
    else this.buf.writeUInt16BE(value, offset);
  }
  /** Writes an option list at `offset`; returns where it ends. */
  options(options: readonly PcapngOption[], offset: number): number {
    if (options.length === 0) return offset;
    let at = offset;
    for (const option of options) {
      this.u16(option.code, at);
      this.u16(option.value.length, at + 2);
      option.value.copy(this.buf, at + 4);
      this.buf.fill(0, at + 4 + option.value.length, at + 4 + padded(option.value.length));
      at += 4 + padded(option.value.length);
    }
    this.u32(0, at); // opt_endofopt: code 0, length 0
    return at + 4;
  }
}

/** A block of `bodyLength` bytes of body, with its type and both lengths written. */
function block(type: number, bodyLength: number, byteOrder: ByteOrder): FieldWriter {
  const total = 12 + bodyLength;
  const w = new FieldWriter(Buffer.alloc(total), byteOrder === 'LE');
  w.u32(type, 0);
  w.u32(total, 4);
  w.u32(total, total - 4);
  return w;
}

/**
 * Encodes a Section Header Block, version 1.0, section length unknown (-1).
 *
 * @param application - written as `shb_userappl` when given.
 */
export function encodeSectionHeader(byteOrder: ByteOrder, application?: string): Buffer {
  const options: PcapngOption[] =
    application === undefined ? [] : [{ code: OPT_SHB_USERAPPL, value: Buffer.from(application) }];
  const w = block(BLOCK_SECTION_HEADER, 16 + optionsLength(options), byteOrder);
  w.u32(BYTE_ORDER_MAGIC, 8);
  w.u16(1, 12);
  w.u16(0, 14);
  w.buf.fill(0xff, 16, 24); // section length: -1, not given
  w.options(options, 24);
  return w.buf;
}

/** What an IDB says of its interface. */
export interface PcapngInterfaceFields {
  readonly linkType: number;
  readonly snaplen: number;
  /** `if_tsresol`: 6 (µs, the pcapng default, then not written) or 9 (ns). */
  readonly precision: TimestampPrecision;
  /** `if_name`, when given. */
  readonly name?: string;
}

/** Encodes an Interface Description Block. */
export function encodeInterfaceDescription(
  fields: PcapngInterfaceFields,
  byteOrder: ByteOrder,
): Buffer {
  const options: PcapngOption[] = [];
  if (fields.name !== undefined) {
    options.push({ code: OPT_IF_NAME, value: Buffer.from(fields.name) });
  }
  if (fields.precision === 'nano') options.push({ code: OPT_IF_TSRESOL, value: Buffer.of(9) });
  const w = block(BLOCK_INTERFACE_DESCRIPTION, 8 + optionsLength(options), byteOrder);
  w.u16(fields.linkType, 8);
  w.u16(0, 10);
  w.u32(fields.snaplen, 12);
  w.options(options, 16);
  return w.buf;
}

/** A packet for {@link encodeEnhancedPacket}. */
export interface EnhancedPacketFields {
  /** The IDB's index within its section. */
  readonly interfaceId: number;
  readonly tsSec: number;
  /** Fraction of the second in `precision`'s units. */
  readonly tsFrac: number;
  readonly precision: TimestampPrecision;
  /** Bytes the packet had on the wire; at least the captured length. */
  readonly originalLength: number;
  /** The captured bytes: `data[dataStart, dataStart + capturedLength)`. */
  readonly data: Buffer;
  /** Default 0. */
  readonly dataStart?: number;
  readonly capturedLength: number;
}

/**
 * Encodes an Enhanced Packet Block with no options into `target` at `offset` (a new buffer
 * when `target` is omitted).
 *
 * @returns the buffer written to; the block is {@link EPB_OVERHEAD} + padded(capturedLength)
 *   bytes long.
 */
export function encodeEnhancedPacket(
  p: EnhancedPacketFields,
  byteOrder: ByteOrder,
  target?: Buffer,
  offset = 0,
): Buffer {
  // The merge's hot path: direct writes, no object or array per packet.
  const captured = p.capturedLength;
  const total = EPB_OVERHEAD + padded(captured);
  const buf = target ?? Buffer.allocUnsafe(total);
  splitTimestamp(p.tsSec, p.tsFrac, p.precision);
  if (byteOrder === 'LE') {
    buf.writeUInt32LE(BLOCK_ENHANCED_PACKET, offset);
    buf.writeUInt32LE(total, offset + 4);
    buf.writeUInt32LE(p.interfaceId, offset + 8);
    buf.writeUInt32LE(tsHigh, offset + 12);
    buf.writeUInt32LE(tsLow, offset + 16);
    buf.writeUInt32LE(captured, offset + 20);
    buf.writeUInt32LE(p.originalLength, offset + 24);
    buf.writeUInt32LE(total, offset + total - 4);
  } else {
    buf.writeUInt32BE(BLOCK_ENHANCED_PACKET, offset);
    buf.writeUInt32BE(total, offset + 4);
    buf.writeUInt32BE(p.interfaceId, offset + 8);
    buf.writeUInt32BE(tsHigh, offset + 12);
    buf.writeUInt32BE(tsLow, offset + 16);
    buf.writeUInt32BE(captured, offset + 20);
    buf.writeUInt32BE(p.originalLength, offset + 24);
    buf.writeUInt32BE(total, offset + total - 4);
  }
  const dataStart = p.dataStart ?? 0;
  p.data.copy(buf, offset + 28, dataStart, dataStart + captured);
  for (let i = offset + 28 + captured; i < offset + total - 4; i++) buf[i] = 0;
  return buf;
}

const TWO_32 = 0x1_0000_0000;
const TWO_23 = 0x80_0000;

/**
 * The 64-bit timestamp of an EPB (units of 10^-6 or 10^-9 s since the epoch) as its high and
 * low 32-bit words, exactly: nanoseconds since the epoch pass 2^53, so they are split without
 * ever forming the whole number (s·10^9 = s·1953125·2^9).
 */
export function timestampUnits(
  tsSec: number,
  tsFrac: number,
  precision: TimestampPrecision,
): [high: number, low: number] {
  splitTimestamp(tsSec, tsFrac, precision);
  return [tsHigh, tsLow];
}

/** What {@link splitTimestamp} computed last: no array per packet. */
let tsHigh = 0;
let tsLow = 0;

/** {@link timestampUnits} into `tsHigh` and `tsLow`. */
function splitTimestamp(tsSec: number, tsFrac: number, precision: TimestampPrecision): void {
  if (precision === 'micro') {
    const units = tsSec * 1_000_000 + tsFrac; // < 2^53 for every 32-bit tsSec
    tsHigh = Math.floor(units / TWO_32);
    tsLow = units % TWO_32;
    return;
  }
  const m = tsSec * 1_953_125; // < 2^53
  const lowPart = (m % TWO_23) * 512 + tsFrac;
  tsHigh = Math.floor(m / TWO_23) + Math.floor(lowPart / TWO_32);
  tsLow = lowPart % TWO_32;
}
