/**
 * Streaming pcap writing: a file header, then one buffer per record, written to any Writable
 * with its backpressure respected.
 */
import type { Writable } from 'node:stream';
import {
  PCAP_VERSION_MAJOR,
  PCAP_VERSION_MINOR,
  RECORD_HEADER_LENGTH,
  encodeFileHeader,
  encodeRecordHeader,
} from './format.js';
import type { RecordHeader } from './format.js';
import { PacketSlot } from './frame-splitter.js';
import { createOutputSink, toError } from './output-sink.js';
import type { ByteOrder, PacketView, PcapFileHeader, TimestampPrecision } from './types.js';

/** A record to write: a `PcapRecord` without its capturedLength, which `data` gives. */
export interface PcapRecordInput {
  readonly tsSec: number;
  /** Fraction of the second in the writer's precision. */
  readonly tsFrac: number;
  /** Bytes the packet had on the wire; defaults to `data.length`. */
  readonly originalLength?: number;
  readonly data: Buffer;
}

/** Options of {@link encodeRecord}. */
export interface EncodeRecordOptions {
  readonly byteOrder: ByteOrder;
  /** Data beyond this many bytes is cut off, as a capture with this snaplen would have. */
  readonly snaplen?: number;
}

/**
 * Encodes one record (16-byte header and data) into a new buffer. The captured length is
 * `data.length` (cut to `snaplen`); the original length is raised to at least that.
 *
 * @throws RangeError if tsSec, tsFrac or originalLength is not an unsigned 32-bit integer.
 */
export function encodeRecord(
  record: PcapRecordInput,
  options: EncodeRecordOptions,
  target?: Buffer,
  offset = 0,
): Buffer {
  const { data } = record;
  const capturedLength = capturedLengthOf(data, options.snaplen);
  const originalLength = Math.max(record.originalLength ?? data.length, capturedLength);
  const buf = target ?? Buffer.allocUnsafe(RECORD_HEADER_LENGTH + capturedLength);
  encodeRecordHeader(
    { tsSec: record.tsSec, tsFrac: record.tsFrac, capturedLength, originalLength },
    options.byteOrder,
    buf,
    offset,
  );
  data.copy(buf, offset + RECORD_HEADER_LENGTH, 0, capturedLength);
  return buf;
}

/** Bytes of `data` a capture with `snaplen` keeps (0 or undefined: no limit). */
export function capturedLengthOf(data: Buffer, snaplen: number | undefined): number {
  return snaplen !== undefined && snaplen > 0 && data.length > snaplen ? snaplen : data.length;
}

/** `record` described in `slot`, on interface `interfaceId`: for a writer's `writeView`. */
export function viewOf(record: PcapRecordInput, interfaceId: number, slot: PacketSlot): PacketView {
  const { data } = record;
  slot.interfaceId = interfaceId;
  slot.data = data;
  slot.dataStart = 0;
  slot.capturedLength = data.length;
  slot.originalLength = record.originalLength ?? data.length;
  slot.tsSec = record.tsSec;
  slot.tsFrac = record.tsFrac;
  return slot;
}

/** Options of {@link createPcapWriter}. */
export interface PcapWriterOptions {
  /** LINKTYPE_* value of the packets (see `LinkType`). */
  readonly linkType: number;
  /** Largest number of bytes stored per packet; longer packets are cut. */
  readonly snaplen: number;
  /** Timestamp resolution of the records written; default `'micro'`. */
  readonly precision?: TimestampPrecision;
  /** Default `'LE'`. */
  readonly byteOrder?: ByteOrder;
  /**
   * Gather records into writes of this many bytes (see `OutputSinkOptions.batchBytes`); then
   * call {@link PcapWriter.flush} whenever the reader should see what was written. Default 0.
   */
  readonly batchBytes?: number;
}

/** Writes a pcap stream; see {@link createPcapWriter}. */
export interface PcapWriter {
  readonly header: PcapFileHeader;
  readonly recordsWritten: number;
  /** Bytes handed to the output, file header included. */
  readonly bytesWritten: number;
  /**
   * Writes one record. The promise resolves at once while the output has room and otherwise
   * when it drains, so `await writer.write(r)` in a loop never buffers more than the output's
   * highWaterMark. Calls that do not wait are still written in order.
   *
   * @throws (rejects) after {@link close}, with the output's error once it has failed, or with
   *   a RangeError for a field that does not fit its 32 bits (the record is then not written).
   */
  write(record: PcapRecordInput): Promise<void>;
  /**
   * Writes the packet `view` describes (its `tsFrac` in the writer's precision; its
   * `interfaceId` is not used), as {@link write} does, for a hot loop: returns undefined, with
   * no promise and no object made, while the output has room, else what {@link write} would.
   */
  writeView(view: PacketView): Promise<void> | undefined;
  /** Hands a batch being gathered to the output (see {@link PcapWriterOptions.batchBytes}). */
  flush(): Promise<void>;
  /**
   * Ends the output and resolves when it has flushed (`finish`). Safe to call more than once.
   */
  close(): Promise<void>;
}

/**
 * Creates a pcap writer on `output` and writes the file header at once.
 *
 * The writer owns `output` from then on: {@link PcapWriter.close} ends it. An error of
 * `output` is caught and returned by the next `write` or `close`.
 *
 * @throws RangeError for a snaplen outside 1..2^32-1 or a link type outside 0..2^26-1.
 */
export function createPcapWriter(output: Writable, options: PcapWriterOptions): PcapWriter {
  const { linkType, snaplen } = options;
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0xffffffff) {
    throw new RangeError(`snaplen must be an integer in 1..4294967295, got ${snaplen}`);
  }
  if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0x03ffffff) {
    throw new RangeError(`linkType must be an integer in 0..67108863, got ${linkType}`);
  }
  const header: PcapFileHeader = {
    byteOrder: options.byteOrder ?? 'LE',
    precision: options.precision ?? 'micro',
    versionMajor: PCAP_VERSION_MAJOR,
    versionMinor: PCAP_VERSION_MINOR,
    snaplen,
    linkType,
  };
  const sink = createOutputSink(output, 'pcap', { batchBytes: options.batchBytes ?? 0 });
  let recordsWritten = 0;
  // The record being written, read by the one encoder every write uses.
  let current: PacketView = new PacketSlot();
  const fields: RecordHeader = { tsSec: 0, tsFrac: 0, capturedLength: 0, originalLength: 0 };
  const encodeCurrent = (target: Buffer, offset: number): void => {
    const { data, dataStart } = current;
    encodeRecordHeader(fields, header.byteOrder, target, offset);
    data.copy(target, offset + RECORD_HEADER_LENGTH, dataStart, dataStart + fields.capturedLength);
  };
  const slot = new PacketSlot();

  function writeView(view: PacketView): Promise<void> | undefined {
    const capturedLength = Math.min(view.capturedLength, snaplen);
    current = view;
    fields.tsSec = view.tsSec;
    fields.tsFrac = view.tsFrac;
    fields.capturedLength = capturedLength;
    fields.originalLength = Math.max(view.originalLength, capturedLength);
    let written: Promise<void> | undefined;
    try {
      written = sink.writeInPlace(RECORD_HEADER_LENGTH + capturedLength, encodeCurrent);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    recordsWritten++;
    return written;
  }

  // A failure here is the output's, which the next write or close reports.
  sink.write(encodeFileHeader(header)).catch(() => undefined);

  return {
    header,
    get recordsWritten() {
      return recordsWritten;
    },
    get bytesWritten() {
      return sink.bytesWritten;
    },
    write: (record) => writeView(viewOf(record, 0, slot)) ?? Promise.resolve(),
    writeView,
    flush: () => sink.flush(),
    close: () => sink.close(),
  };
}
