/**
 * Live pcap streams re-framed as one pcapng stream, as they arrive: the merged live view of a
 * scale-set capture, one interface per instance. Unlike {@link mergePcapStreams}, nothing is
 * ordered across inputs (a live input may stay quiet for minutes, and a time-ordered merge would
 * hold every other input's packets back until it speaks): each input's records keep their own
 * order and go out as soon as they come, so the output is in arrival order. Everything is
 * synchronous and holds nothing: each call returns the bytes to send.
 *
 * ```ts
 * const relay = new PcapngRelay();
 * send(relay.header());
 * const web0 = relay.addInput('web_0');
 * send(web0.push(pcapHeaderFrame)); // the IDB
 * send(web0.push(recordsFrame).blocks); // EPBs
 * ```
 */
import { WirewatchError } from '../model/errors.js';
import {
  parseFileHeader,
  readRecordHeader,
  RECORD_HEADER_LENGTH,
  type RecordHeader,
} from './format.js';
import {
  EPB_OVERHEAD,
  encodeEnhancedPacket,
  encodeInterfaceDescription,
  encodeSectionHeader,
  padded,
} from './pcapng-format.js';
import { PcapRecordWalker } from './record-walker.js';
import type { ByteOrder, PcapFileHeader } from './types.js';

/** The output's byte order. */
const OUTPUT_ORDER: ByteOrder = 'LE';

/** One pcap input of a {@link PcapngRelay}. */
export interface PcapngRelayInput {
  /** The input's interface in the output, once its pcap header came. */
  readonly interfaceId: number | undefined;
  /**
   * Takes the next frame of the input's pcap stream: first its 24-byte file header (then the
   * interface's IDB is returned), then whole records (then their EPBs; a partial record at the
   * end of a frame is left out and counted in `partial`).
   *
   * @throws WirewatchError `InvalidPcap` when the first frame is no pcap file header.
   */
  push(frame: Buffer): PcapngRelayBlocks;
  /** The EPBs of the records of `frame` would be dropped: their count, nothing encoded. */
  count(frame: Buffer): number;
}

/** What a {@link PcapngRelayInput.push} makes. */
export interface PcapngRelayBlocks {
  /** The blocks to send (empty when there are none). */
  readonly blocks: Buffer;
  /** Packets in `blocks`. */
  readonly packets: number;
  /** Whether `blocks` is the input's IDB (which must reach the reader before its packets). */
  readonly interface: boolean;
}

/** Re-frames pcap inputs as one pcapng section; see the module comment. */
export class PcapngRelay {
  #interfaces = 0;

  /** The Section Header Block: the first bytes of the output. */
  header(): Buffer {
    return encodeSectionHeader(OUTPUT_ORDER, 'wirewatch');
  }

  /**
   * A new input, whose interface is named `name` (`if_name`). Inputs may be added at any time:
   * an IDB may come between packets, before the first packet on it.
   */
  addInput(name: string): PcapngRelayInput {
    let header: PcapFileHeader | undefined;
    let interfaceId: number | undefined;
    const scratch: RecordHeader = { tsSec: 0, tsFrac: 0, capturedLength: 0, originalLength: 0 };
    const nextId = () => this.#interfaces++;
    return {
      get interfaceId() {
        return interfaceId;
      },
      push(frame) {
        if (header === undefined) {
          header = parseFileHeader(frame);
          interfaceId = nextId();
          const idb = encodeInterfaceDescription(
            {
              linkType: header.linkType,
              snaplen: header.snaplen,
              precision: header.precision,
              name,
            },
            OUTPUT_ORDER,
          );
          return { blocks: idb, packets: 0, interface: true };
        }
        return epbs(frame, header, interfaceId!, scratch);
      },
      count(frame) {
        if (header === undefined) {
          throw new WirewatchError('InvalidPcap', `${name}: records came before the pcap header`);
        }
        return new PcapRecordWalker(frame, header.byteOrder).walk().records;
      },
    };
  }
}

/** The whole records of `frame` as EPBs on `interfaceId`, in one buffer. */
function epbs(
  frame: Buffer,
  header: PcapFileHeader,
  interfaceId: number,
  scratch: RecordHeader,
): PcapngRelayBlocks {
  const order = header.byteOrder;
  let size = 0;
  const sizing = new PcapRecordWalker(frame, order);
  while (sizing.next())
    size += EPB_OVERHEAD + padded(sizing.offset - sizing.start - RECORD_HEADER_LENGTH);
  const blocks = Buffer.allocUnsafe(size);
  const walker = new PcapRecordWalker(frame, order);
  let offset = 0;
  while (walker.next()) {
    const h = readRecordHeader(frame, walker.start, order, scratch);
    const captured = walker.offset - walker.start - RECORD_HEADER_LENGTH;
    encodeEnhancedPacket(
      {
        interfaceId,
        tsSec: h.tsSec,
        tsFrac: h.tsFrac,
        precision: header.precision,
        originalLength: Math.max(h.originalLength, captured),
        data: frame,
        dataStart: walker.start + RECORD_HEADER_LENGTH,
        capturedLength: captured,
      },
      OUTPUT_ORDER,
      blocks,
      offset,
    );
    offset += EPB_OVERHEAD + padded(captured);
  }
  return { blocks, packets: walker.records, interface: false };
}
