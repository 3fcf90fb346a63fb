/**
 * Streaming pcapng reading: an incremental parser that takes bytes in chunks of any size and
 * returns the packets of Enhanced, Simple and (obsolete) Packet Blocks with the interface that
 * saw them. Both byte orders, any number of sections (each SHB starts a new interface
 * numbering, which the parser maps onto one list); blocks of other types are skipped.
 */
import { WirewatchError } from '../model/errors.js';
import {
  BLOCK_ENHANCED_PACKET,
  BLOCK_INTERFACE_DESCRIPTION,
  BLOCK_PACKET,
  BLOCK_SECTION_HEADER,
  BLOCK_SIMPLE_PACKET,
  BYTE_ORDER_MAGIC,
  OPT_END,
  OPT_IF_DESCRIPTION,
  OPT_IF_NAME,
  OPT_IF_TSOFFSET,
  OPT_IF_TSRESOL,
  padded,
} from './pcapng-format.js';
import type { PcapParserEnd } from './reader.js';
import { MAX_CAPTURED_LENGTH_LIMIT } from './reader.js';
import { FrameSplitter, PacketSlot, packetOf } from './frame-splitter.js';
import type { CaptureInterface, CapturePacket, PacketView } from './types.js';

/** Options of {@link createPcapngParser}. */
export interface PcapngParserOptions {
  /**
   * Largest block accepted before the parser reports the file as corrupt (default 64 MiB +
   * 64 KiB), so a corrupt length cannot make it buffer gigabytes.
   */
  readonly maxBlockLength?: number;
}

/** An incremental pcapng parser; see {@link createPcapngParser}. */
export interface PcapngParser {
  /** Every interface described so far, over all sections. */
  readonly interfaces: readonly CaptureInterface[];
  /** Sections begun so far. */
  readonly sections: number;
  /** Bytes consumed as whole blocks. */
  readonly offset: number;
  /** Packets parsed so far. */
  readonly packetCount: number;
  /**
   * Parses the next bytes, split anywhere, and returns the packets they complete. A packet's
   * `data` may share memory with the pushed chunks.
   *
   * @throws WirewatchError `InvalidPcap` for input that is not pcapng, a block length that is
   *   not a multiple of 4 or is beyond the limit, or a packet of an undescribed interface; the
   *   parser then stays failed.
   */
  push(chunk: Buffer): CapturePacket[];
  /** Takes the next bytes without parsing them: {@link next} steps through them in place. */
  feed(chunk: Buffer): void;
  /**
   * Steps to the next packet of what was fed (parsing the blocks before it) and describes it in
   * {@link packet}; false when more bytes are needed.
   *
   * @throws WirewatchError `InvalidPcap` as {@link push} does.
   */
  next(): boolean;
  /** The packet {@link next} stepped to, in place. */
  readonly packet: PacketView;
  /** Declares the input finished and reports the bytes of an incomplete trailing block. */
  end(): PcapParserEnd;
}

const BYTE_ORDER_MAGIC_SWAPPED = 0x4d3c2b1a;
const DEFAULT_MAX_BLOCK = MAX_CAPTURED_LENGTH_LIMIT + 64 * 1024;
const TWO_32 = 0x1_0000_0000;

/** How an interface's 64-bit timestamps become seconds and a fraction. */
interface Clock {
  readonly id: number;
  /** Units per second: 10^k or 2^k. */
  readonly units: bigint;
  /** The fast path: units of a microsecond and no offset. */
  readonly micro: boolean;
  /** Fractions of the interface's precision per second, as a bigint. */
  readonly perSecond: bigint;
  readonly offset: bigint;
  readonly snaplen: number;
}

/** Creates an incremental parser for a pcapng byte stream. */
export function createPcapngParser(options: PcapngParserOptions = {}): PcapngParser {
  const maxBlock = options.maxBlockLength ?? DEFAULT_MAX_BLOCK;
  const interfaces: CaptureInterface[] = [];
  let clocks: Clock[] = []; // this section's interfaces, by their id in the section
  let le = true;
  let sections = 0;
  let offset = 0;
  let packetCount = 0;
  let failure: WirewatchError | undefined;
  let ended = false;
  const view = new PacketSlot();
  const splitter = new FrameSplitter(12, blockLength);

  function fail(message: string): never {
    failure = new WirewatchError('InvalidPcap', message);
    splitter.clear();
    throw failure;
  }
  const u32 = (buf: Buffer, at: number): number =>
    le ? buf.readUInt32LE(at) : buf.readUInt32BE(at);
  const u16 = (buf: Buffer, at: number): number =>
    le ? buf.readUInt16LE(at) : buf.readUInt16BE(at);

  function describeInterface(buf: Buffer, pos: number, end: number): void {
    const linkType = u16(buf, pos + 8);
    const snaplen = u32(buf, pos + 12);
    let name: string | undefined;
    let description: string | undefined;
    let tsresol = 6;
    let tsoffset = 0n;
    for (let at = pos + 16; at + 4 <= end;) {
      const code = u16(buf, at);
      const length = u16(buf, at + 2);
      if (code === OPT_END || at + 4 + length > end) break;
      const value = buf.subarray(at + 4, at + 4 + length);
      if (code === OPT_IF_NAME) name = value.toString('utf8').replace(/\0+$/, '');
      else if (code === OPT_IF_DESCRIPTION) description = value.toString('utf8');
      else if (code === OPT_IF_TSRESOL && length >= 1) tsresol = value[0]!;
      else if (code === OPT_IF_TSOFFSET && length >= 8) {
        tsoffset = le ? value.readBigInt64LE(0) : value.readBigInt64BE(0);
      }
      at += 4 + padded(length);
    }
    const binary = (tsresol & 0x80) !== 0;
    const exponent = tsresol & 0x7f;
    if (exponent > (binary ? 63 : 19))
      fail(`interface ${interfaces.length}: if_tsresol ${tsresol} is out of range`);
    const units = binary ? 1n << BigInt(exponent) : 10n ** BigInt(exponent);
    const precision = units <= 1_000_000n ? 'micro' : 'nano';
    clocks.push({
      id: interfaces.length,
      units,
      micro: units === 1_000_000n && tsoffset === 0n,
      perSecond: precision === 'micro' ? 1_000_000n : 1_000_000_000n,
      offset: tsoffset,
      snaplen,
    });
    interfaces.push({
      linkType,
      snaplen,
      precision,
      ...(name === undefined ? {} : { name }),
      ...(description === undefined ? {} : { description }),
      section: sections - 1,
    });
  }

  function clockOf(id: number): Clock {
    const clock = clocks[id];
    if (clock === undefined) {
      fail(
        `block at byte ${offset}: a packet of interface ${id}, which no IDB of its section describes`,
      );
    }
    return clock;
  }

  /** Describes a packet in {@link view}; returns true. */
  function packet(
    clock: Clock,
    high: number,
    low: number,
    originalLength: number,
    dataStart: number,
    capturedLength: number,
  ): true {
    if (clock.micro && high < 0x20_0000) {
      const units = high * TWO_32 + low; // < 2^53
      view.tsSec = Math.floor(units / 1_000_000);
      view.tsFrac = units % 1_000_000;
    } else {
      const units = (BigInt(high) << 32n) | BigInt(low);
      view.tsSec = Number(units / clock.units + clock.offset);
      view.tsFrac = Number(((units % clock.units) * clock.perSecond) / clock.units);
    }
    view.interfaceId = clock.id;
    view.originalLength = originalLength;
    view.dataStart = dataStart;
    view.capturedLength = capturedLength;
    packetCount++;
    return true;
  }

  /** Parses the whole block at `pos`; true when it holds a packet, then in {@link view}. */
  function parseBlock(buf: Buffer, pos: number, length: number): boolean {
    const type = le ? buf.readUInt32LE(pos) : buf.readUInt32BE(pos);
    const end = pos + length - 4;
    switch (type) {
      case BLOCK_SECTION_HEADER: {
        const major = u16(buf, pos + 12);
        if (major !== 1) fail(`section ${sections + 1} has pcapng version ${major}, not 1`);
        sections++;
        clocks = [];
        return false;
      }
      case BLOCK_INTERFACE_DESCRIPTION:
        if (length < 20) fail(`block at byte ${offset}: an IDB of ${length} bytes is too short`);
        describeInterface(buf, pos, end);
        return false;
      case BLOCK_ENHANCED_PACKET:
      case BLOCK_PACKET: {
        if (length < 32)
          fail(`block at byte ${offset}: a packet block of ${length} bytes is too short`);
        const id = type === BLOCK_PACKET ? u16(buf, pos + 8) : u32(buf, pos + 8);
        const captured = u32(buf, pos + 20);
        if (pos + 28 + captured > end) {
          fail(
            `block at byte ${offset}: a captured length of ${captured} does not fit its block of ${length} bytes`,
          );
        }
        view.data = buf;
        return packet(
          clockOf(id),
          u32(buf, pos + 12),
          u32(buf, pos + 16),
          u32(buf, pos + 24),
          pos + 28,
          captured,
        );
      }
      case BLOCK_SIMPLE_PACKET: {
        if (length < 16)
          fail(`block at byte ${offset}: a simple packet block of ${length} bytes is too short`);
        const clock = clockOf(0);
        const originalLength = u32(buf, pos + 8);
        let captured = Math.min(originalLength, end - (pos + 12));
        if (clock.snaplen > 0) captured = Math.min(captured, clock.snaplen);
        // A simple packet has no timestamp: it is stamped 0.
        view.data = buf;
        return packet(clock, 0, 0, originalLength, pos + 12, captured);
      }
      default:
        return false; // a block wirewatch has no use for
    }
  }

  /** The length of the block at `pos`, from its first 12 bytes; throws for a corrupt one. */
  function blockLength(buf: Buffer, pos: number): number {
    const typeLE = buf.readUInt32LE(pos);
    if (typeLE === BLOCK_SECTION_HEADER) {
      const bom = buf.readUInt32LE(pos + 8);
      if (bom === BYTE_ORDER_MAGIC) le = true;
      else if (bom === BYTE_ORDER_MAGIC_SWAPPED) le = false;
      else fail(`section header at byte ${offset} has no byte-order magic`);
    } else if (sections === 0) {
      fail(
        `not a pcapng file: it starts with 0x${buf.readUInt32BE(pos).toString(16).padStart(8, '0')}, not a section header block`,
      );
    }
    const length = u32(buf, pos + 4);
    if (length < 12 || length % 4 !== 0 || length > maxBlock) {
      fail(
        `block at byte ${offset} has a length of ${length}, not a multiple of 4 in 12..${maxBlock}; the file is corrupt`,
      );
    }
    return length;
  }

  function feed(chunk: Buffer): void {
    if (failure !== undefined) throw failure;
    if (ended) throw new Error('PcapngParser.push called after end()');
    if (chunk.length > 0) splitter.feed(chunk);
  }

  function next(): boolean {
    if (failure !== undefined) throw failure;
    while (splitter.next()) {
      const { buf, start, end } = splitter;
      const isPacket = parseBlock(buf, start, end - start);
      offset += end - start;
      if (isPacket) return true;
    }
    return false;
  }

  return {
    interfaces,
    get sections() {
      return sections;
    },
    get offset() {
      return offset;
    },
    get packetCount() {
      return packetCount;
    },
    packet: view,
    feed,
    next,
    push(chunk) {
      feed(chunk);
      const packets: CapturePacket[] = [];
      while (next()) packets.push(packetOf(view));
      return packets;
    },
    end() {
      ended = true;
      return { truncatedBytes: splitter.remaining };
    },
  };
}
