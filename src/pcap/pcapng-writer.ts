/**
 * Streaming pcapng writing: one section (SHB), an IDB per interface as it is added, then an EPB
 * per packet, to any Writable with its backpressure respected. Wireshark shows each IDB's
 * `if_name` as the packets' `frame.interface_name`, which is how a merged scale-set capture
 * says which instance saw each packet.
 */
import type { Writable } from 'node:stream';
import { createOutputSink, toError } from './output-sink.js';
import {
  EPB_OVERHEAD,
  encodeEnhancedPacket,
  encodeInterfaceDescription,
  encodeSectionHeader,
  padded,
  type PcapngInterfaceFields,
} from './pcapng-format.js';
import { PacketSlot } from './frame-splitter.js';
import type { ByteOrder, PacketView, TimestampPrecision } from './types.js';
import { viewOf, type PcapRecordInput } from './writer.js';

const NO_DATA: Buffer = Buffer.alloc(0);

/** A packet to write: a pcap record on one of the writer's interfaces. */
export interface PcapngPacketInput extends PcapRecordInput {
  /** What {@link PcapngWriter.addInterface} returned; `tsFrac` is in its precision. */
  readonly interfaceId: number;
}

/** Options of {@link createPcapngWriter}. */
export interface PcapngWriterOptions {
  /** Default `'LE'`. */
  readonly byteOrder?: ByteOrder;
  /** Written as the section's `shb_userappl` (default "wirewatch"). */
  readonly application?: string;
  /**
   * Gather blocks into writes of this many bytes (see `OutputSinkOptions.batchBytes`); then
   * call {@link PcapngWriter.flush} whenever the reader should see what was written. Default 0.
   */
  readonly batchBytes?: number;
}

/** Writes a pcapng stream; see {@link createPcapngWriter}. */
export interface PcapngWriter {
  /** The interfaces added, by id. */
  readonly interfaces: readonly PcapngInterfaceFields[];
  readonly packetsWritten: number;
  /** Bytes handed to the output, blocks of every kind included. */
  readonly bytesWritten: number;
  /**
   * Writes an IDB (at once, also between packets) and returns the interface's id.
   *
   * @throws RangeError for a link type outside 0..65535 or a snaplen outside 0..2^32-1 (0: no
   *   limit).
   */
  addInterface(fields: PcapngInterfaceFields): number;
  /**
   * Writes one packet as an EPB; data beyond its interface's snaplen is cut. Resolves at once
   * while the output has room and otherwise when it drains.
   *
   * @throws (rejects) for an interface id never added, a timestamp that does not fit, after
   *   {@link close}, or with the output's error once it has failed.
   */
  write(packet: PcapngPacketInput): Promise<void>;
  /**
   * Writes the packet `view` describes (`interfaceId` an id of this writer's, `tsFrac` in its
   * precision), as {@link write} does, for a hot loop: returns undefined, with no promise and no
   * object made, while the output has room, else what {@link write} would.
   */
  writeView(view: PacketView): Promise<void> | undefined;
  /** Hands a batch being gathered to the output (see {@link PcapngWriterOptions.batchBytes}). */
  flush(): Promise<void>;
  /** Ends the output and resolves when it has flushed. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Creates a pcapng writer on `output` and writes the Section Header Block at once. The writer
 * owns `output` from then on: {@link PcapngWriter.close} ends it.
 */
export function createPcapngWriter(
  output: Writable,
  options: PcapngWriterOptions = {},
): PcapngWriter {
  const byteOrder = options.byteOrder ?? 'LE';
  const sink = createOutputSink(output, 'pcapng', { batchBytes: options.batchBytes ?? 0 });
  const interfaces: PcapngInterfaceFields[] = [];
  let packetsWritten = 0;
  // A failure here is the output's, which the next write or close reports.
  const send = (buf: Buffer): void => void sink.write(buf).catch(() => undefined);
  send(encodeSectionHeader(byteOrder, options.application ?? 'wirewatch'));
  // The packet being written, read by the one encoder every write uses.
  const fields = {
    interfaceId: 0,
    tsSec: 0,
    tsFrac: 0,
    precision: 'micro' as TimestampPrecision,
    capturedLength: 0,
    originalLength: 0,
    data: NO_DATA,
    dataStart: 0,
  };
  const encodeCurrent = (target: Buffer, offset: number): void =>
    void encodeEnhancedPacket(fields, byteOrder, target, offset);
  const slot = new PacketSlot();

  function writeView(view: PacketView): Promise<void> | undefined {
    const failure = sink.failure();
    if (failure !== undefined) return Promise.reject(failure);
    const idb = interfaces[view.interfaceId];
    if (idb === undefined) {
      return Promise.reject(new RangeError(`no interface ${view.interfaceId} was added`));
    }
    const capturedLength =
      idb.snaplen > 0 ? Math.min(view.capturedLength, idb.snaplen) : view.capturedLength;
    fields.interfaceId = view.interfaceId;
    fields.tsSec = view.tsSec;
    fields.tsFrac = view.tsFrac;
    fields.precision = idb.precision;
    fields.capturedLength = capturedLength;
    fields.originalLength = Math.max(view.originalLength, capturedLength);
    fields.data = view.data;
    fields.dataStart = view.dataStart;
    let written: Promise<void> | undefined;
    try {
      written = sink.writeInPlace(EPB_OVERHEAD + padded(capturedLength), encodeCurrent);
    } catch (error) {
      return Promise.reject(toError(error, 'pcapng'));
    }
    packetsWritten++;
    return written;
  }

  return {
    interfaces,
    get packetsWritten() {
      return packetsWritten;
    },
    get bytesWritten() {
      return sink.bytesWritten;
    },
    addInterface(fields) {
      const { linkType, snaplen } = fields;
      if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0xffff) {
        throw new RangeError(`linkType must be an integer in 0..65535, got ${linkType}`);
      }
      if (!Number.isInteger(snaplen) || snaplen < 0 || snaplen > 0xffffffff) {
        throw new RangeError(`snaplen must be an integer in 0..4294967295, got ${snaplen}`);
      }
      send(encodeInterfaceDescription(fields, byteOrder));
      return interfaces.push(fields) - 1;
    },
    write: (packet) => writeView(viewOf(packet, packet.interfaceId, slot)) ?? Promise.resolve(),
    writeView,
    flush: () => sink.flush(),
    close: () => sink.close(),
  };
}
