/**
 * Reading a capture file whatever its format: the first four bytes say whether it is classic
 * pcap (either magic, either byte order) or pcapng, and the packets of both come out in one
 * shape, each with the interface that saw it. Whatever reads a file a user hands in (the merge
 * of downloads, {@link openCaptureFile}) reads it through here.
 */
import { createReadStream } from 'node:fs';
import { WirewatchError } from '../model/errors.js';
import { PCAPNG_MAGIC } from './format.js';
import { createPcapngParser, type PcapngParser } from './pcapng-reader.js';
import { createPcapParser, type PcapParser, type PcapParserEnd, withPath } from './reader.js';
import { packetOf } from './frame-splitter.js';
import type { CaptureInterface, CapturePacket, PacketView } from './types.js';

/** A capture file's format. */
export type CaptureFormat = 'pcap' | 'pcapng';

/** An incremental parser of either format; see {@link createCaptureParser}. */
export interface CaptureParser {
  /** Known once four bytes have been pushed. */
  readonly format: CaptureFormat | undefined;
  /** Interfaces described so far (classic pcap: the header's one, once it is whole). */
  readonly interfaces: readonly CaptureInterface[];
  /**
   * Parses the next bytes, split anywhere, and returns the packets they complete.
   *
   * @throws WirewatchError `InvalidPcap` as the pcap or pcapng parser does.
   */
  push(chunk: Buffer): CapturePacket[];
  /**
   * Takes the next bytes without parsing them; {@link next} then steps through their packets
   * in place, with no object per packet (the merge reads them so). {@link push} is the two.
   */
  feed(chunk: Buffer): void;
  /**
   * Steps to the next packet of what was fed and describes it in {@link packet}; false when
   * more bytes are needed (or the format is not known yet).
   *
   * @throws WirewatchError `InvalidPcap` as {@link push} does.
   */
  next(): boolean;
  /** The packet {@link next} stepped to, in place; undefined until the format is known. */
  readonly packet: PacketView | undefined;
  end(): PcapParserEnd;
}

/** Creates a parser that detects the format from the first bytes pushed. */
export function createCaptureParser(): CaptureParser {
  let format: CaptureFormat | undefined;
  let parser: PcapParser | PcapngParser | undefined;
  let pcap: PcapParser | undefined;
  let pcapng: PcapngParser | undefined;
  const pcapInterfaces: CaptureInterface[] = [];
  let head: Buffer[] = [];
  let headLength = 0;

  function feed(chunk: Buffer): void {
    if (parser !== undefined) {
      parser.feed(chunk);
      return;
    }
    head.push(chunk);
    headLength += chunk.length;
    if (headLength < 4) return;
    const start = head.length === 1 ? chunk : Buffer.concat(head, headLength);
    head = [];
    if (start.readUInt32LE(0) === PCAPNG_MAGIC) {
      format = 'pcapng';
      parser = pcapng = createPcapngParser();
    } else {
      format = 'pcap';
      parser = pcap = createPcapParser();
    }
    parser.feed(start);
  }

  const next = (): boolean => parser?.next() ?? false;

  return {
    get format() {
      return format;
    },
    get interfaces() {
      if (pcap === undefined) return pcapng?.interfaces ?? pcapInterfaces;
      // A classic pcap file's one interface is its header.
      if (pcapInterfaces.length === 0 && pcap.header !== undefined) {
        const { linkType, snaplen, precision } = pcap.header;
        pcapInterfaces.push({ linkType, snaplen, precision, section: 0 });
      }
      return pcapInterfaces;
    },
    get packet() {
      return parser?.packet;
    },
    feed,
    next,
    push(chunk) {
      feed(chunk);
      const packets: CapturePacket[] = [];
      while (parser?.next() === true) packets.push(packetOf(parser.packet));
      return packets;
    },
    end() {
      if (parser !== undefined) return parser.end();
      return { truncatedBytes: headLength };
    },
  };
}

/** A capture file of either format open for one pass; see {@link openCaptureFile}. */
export interface CaptureFileReader {
  readonly path: string;
  readonly format: CaptureFormat;
  /** The interfaces described so far: a pcapng file may describe more between its packets. */
  readonly interfaces: readonly CaptureInterface[];
  /**
   * The packets, read in chunks as they are consumed; an incomplete last block or record is
   * skipped. Can be iterated once; the file is closed when the iteration ends.
   *
   * @throws WirewatchError `InvalidPcap` (target: the path) at a corrupt block or record.
   */
  readonly packets: AsyncIterable<CapturePacket>;
  /** Closes the file. Safe to call more than once. */
  close(): void;
}

/**
 * Opens a pcap or pcapng file and reads up to its first packet (so its format and first
 * interfaces are known); never the whole file.
 *
 * @throws WirewatchError `InvalidPcap` (target: the path) if it is neither format; Node's
 *   errors (ENOENT, EACCES) as they are.
 */
export async function openCaptureFile(
  path: string,
  options: { readonly chunkSize?: number } = {},
): Promise<CaptureFileReader> {
  const stream = createReadStream(path, { highWaterMark: options.chunkSize ?? 64 * 1024 });
  const chunks: AsyncIterator<Buffer> = stream[Symbol.asyncIterator]();
  const parser = createCaptureParser();
  let first: CapturePacket[] = [];
  try {
    for (;;) {
      const next = await chunks.next();
      if (next.done === true) break;
      first = parser.push(next.value);
      if (first.length > 0 || parser.interfaces.length > 0) break;
    }
  } catch (error) {
    stream.destroy();
    throw withPath(error, path);
  }
  if (parser.format === undefined) {
    stream.destroy();
    throw withPath(
      new WirewatchError('InvalidPcap', 'the file is too short to be a pcap or pcapng file'),
      path,
    );
  }
  const format = parser.format;
  let started = false;
  async function* iterate(): AsyncGenerator<CapturePacket> {
    try {
      yield* first;
      for (;;) {
        const next = await chunks.next();
        if (next.done === true) break;
        let packets: CapturePacket[];
        try {
          packets = parser.push(next.value);
        } catch (error) {
          throw withPath(error, path);
        }
        yield* packets;
      }
      parser.end();
    } finally {
      stream.destroy();
    }
  }
  return {
    path,
    format,
    interfaces: parser.interfaces,
    packets: {
      [Symbol.asyncIterator]() {
        if (started) throw new Error(`the packets of ${path} can be iterated only once`);
        started = true;
        return iterate();
      },
    },
    close: () => stream.destroy(),
  };
}
