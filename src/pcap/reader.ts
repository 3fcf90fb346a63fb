/**
 * Streaming pcap reading: an incremental parser that takes bytes in chunks of any size, and a
 * file reader built on it that never holds more than one read chunk at a time. The repair of a
 * file left by a crash is in repair.ts.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { WirewatchError } from '../model/errors.js';
import {
  FILE_HEADER_LENGTH,
  RECORD_HEADER_LENGTH,
  parseFileHeader,
  readRecordHeader,
} from './format.js';
import { FrameSplitter, PacketSlot } from './frame-splitter.js';
import type { PacketView, PcapFileHeader, PcapRecord } from './types.js';

/**
 * Captured lengths up to this are always accepted, whatever the snaplen says: it is libpcap's
 * own maximum snapshot length, and writers in the wild store snaplens smaller than their
 * records.
 */
export const MIN_CAPTURED_LENGTH_LIMIT = 262_144;

/**
 * A snaplen above this does not raise the captured-length limit any further, so a corrupt
 * header cannot make the parser buffer gigabytes for one "record".
 */
export const MAX_CAPTURED_LENGTH_LIMIT = 64 * 1024 * 1024;

const DEFAULT_CHUNK_SIZE = 64 * 1024;

/** Options of {@link createPcapParser}. */
export interface PcapParserOptions {
  /**
   * Largest capturedLength accepted before the parser reports the file as corrupt. Defaults to
   * max(snaplen, 262144), with snaplen counted up to 64 MiB.
   */
  readonly maxCapturedLength?: number;
}

/** What {@link PcapParser.end} found at the end of the input. */
export interface PcapParserEnd {
  /**
   * Bytes after the last whole record: a record (or the file header) cut short. A file with
   * truncatedBytes > 0 was cut mid-write; {@link repairPcapFile} removes them.
   */
  readonly truncatedBytes: number;
}

/** An incremental pcap parser; see {@link createPcapParser}. */
export interface PcapParser {
  /** The file header, once its 24 bytes have been pushed. */
  readonly header: PcapFileHeader | undefined;
  /** Bytes consumed as the file header and whole records (the end of the last whole record). */
  readonly offset: number;
  /** Whole records parsed so far. */
  readonly recordCount: number;
  /**
   * Parses the next bytes of the file, split anywhere (even inside a header), and returns the
   * records they complete. A record's `data` may share memory with the pushed chunks: do not
   * reuse a chunk's memory after pushing it.
   *
   * @throws WirewatchError `InvalidPcap` for a bad file header or a record whose
   *   capturedLength is beyond the limit; the parser then stays failed and throws again.
   */
  push(chunk: Buffer): PcapRecord[];
  /**
   * Takes the next bytes without parsing them: {@link next} then steps through their records
   * in place. For a reader that wants no object per record (the merge); {@link push} is the
   * two together.
   */
  feed(chunk: Buffer): void;
  /**
   * Steps to the next whole record of what was fed (parsing the file header on the way) and
   * describes it in {@link packet}; false when more bytes are needed.
   *
   * @throws WirewatchError `InvalidPcap` as {@link push} does.
   */
  next(): boolean;
  /** The record {@link next} stepped to, in place (interfaceId 0). */
  readonly packet: PacketView;
  /** Declares the input finished and reports the bytes of an incomplete trailing record. */
  end(): PcapParserEnd;
}

/**
 * Creates an incremental parser for a libpcap byte stream (both byte orders, micro- and
 * nanosecond files).
 *
 * The parser is strict about capturedLength (a value beyond {@link PcapParserOptions.maxCapturedLength}
 * means the file is corrupt) and lenient about originalLength, which real writers sometimes
 * set below capturedLength.
 */
export function createPcapParser(options: PcapParserOptions = {}): PcapParser {
  let header: PcapFileHeader | undefined;
  let le = true;
  let limit = 0;
  let offset = 0;
  let recordCount = 0;
  let failure: WirewatchError | undefined;
  let ended = false;
  const packet = new PacketSlot();
  const splitter = new FrameSplitter(FILE_HEADER_LENGTH, (buf, pos) => {
    if (header === undefined) return FILE_HEADER_LENGTH;
    const capturedLength = le ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8);
    if (capturedLength > limit) {
      fail(
        new WirewatchError(
          'InvalidPcap',
          `record ${recordCount + 1} at byte ${offset} claims a captured length of ${capturedLength} bytes, above the limit of ${limit}; the file is corrupt`,
        ),
      );
    }
    return RECORD_HEADER_LENGTH + capturedLength;
  });

  function fail(error: WirewatchError): never {
    failure = error;
    splitter.clear();
    throw error;
  }

  function readHeader(buf: Buffer): void {
    let parsed: PcapFileHeader;
    try {
      parsed = parseFileHeader(buf);
    } catch (error) {
      if (error instanceof WirewatchError) fail(error);
      throw error;
    }
    header = parsed;
    le = parsed.byteOrder === 'LE';
    limit =
      options.maxCapturedLength ??
      Math.max(MIN_CAPTURED_LENGTH_LIMIT, Math.min(parsed.snaplen, MAX_CAPTURED_LENGTH_LIMIT));
    offset = FILE_HEADER_LENGTH;
    splitter.headerLength = RECORD_HEADER_LENGTH;
  }

  function feed(chunk: Buffer): void {
    if (failure !== undefined) throw failure;
    if (ended) throw new Error('PcapParser.push called after end()');
    if (chunk.length > 0) splitter.feed(chunk);
  }

  function next(): boolean {
    if (failure !== undefined) throw failure;
    while (splitter.next()) {
      const { buf, start, end } = splitter;
      if (header === undefined) {
        readHeader(buf.subarray(start, end));
        continue;
      }
      readRecordHeader(buf, start, header.byteOrder, packet);
      packet.data = buf;
      packet.dataStart = start + RECORD_HEADER_LENGTH;
      offset += end - start;
      recordCount++;
      return true;
    }
    return false;
  }

  return {
    get header() {
      return header;
    },
    get offset() {
      return offset;
    },
    get recordCount() {
      return recordCount;
    },
    packet,
    feed,
    next,
    push(chunk) {
      feed(chunk);
      const records: PcapRecord[] = [];
      while (next()) {
        const { tsSec, tsFrac, capturedLength, originalLength, data, dataStart } = packet;
        records.push({
          tsSec,
          tsFrac,
          capturedLength,
          originalLength,
          data: data.subarray(dataStart, dataStart + capturedLength),
        });
      }
      return records;
    },
    end() {
      ended = true;
      return { truncatedBytes: splitter.remaining };
    },
  };
}

/** Options of {@link openPcapFile}. */
export interface OpenPcapFileOptions extends PcapParserOptions {
  /** Bytes read from the file at a time (default 64 KiB). */
  readonly chunkSize?: number;
}

/** A pcap file open for one streaming pass over its records; see {@link openPcapFile}. */
export interface PcapFileReader {
  readonly path: string;
  readonly header: PcapFileHeader;
  /**
   * The file's records, read in chunks as they are consumed. Can be iterated once; the file is
   * closed when the iteration ends, also when it is left early.
   *
   * @throws WirewatchError `InvalidPcap` (target: the path) when a corrupt record is reached.
   */
  readonly records: AsyncIterable<PcapRecord>;
  /**
   * Bytes of an incomplete trailing record, once {@link records} has been read to the end;
   * undefined before that.
   */
  truncatedBytes(): number | undefined;
  /** Closes the file. Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Opens a pcap file and reads its header; the records are then streamed with
 * {@link PcapFileReader.records}. Never reads the whole file into memory.
 *
 * @throws WirewatchError `InvalidPcap` (target: the path) if the file is shorter than a header
 *   or is not a libpcap file; Node's errors (ENOENT, EACCES) as they are.
 */
export async function openPcapFile(
  path: string,
  options: OpenPcapFileOptions = {},
): Promise<PcapFileReader> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const fh = await open(path, 'r');
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= fh.close());

  let headerBytes: Buffer;
  let header: PcapFileHeader;
  try {
    headerBytes = await readAt(fh, FILE_HEADER_LENGTH, 0);
    header = parseFileHeader(headerBytes);
  } catch (error) {
    await close();
    throw withPath(error, path);
  }

  let started = false;
  let truncated: number | undefined;

  async function* iterate(): AsyncGenerator<PcapRecord> {
    try {
      const parser = createPcapParser(options);
      parser.push(headerBytes);
      let position = FILE_HEADER_LENGTH;
      for (;;) {
        const buf = Buffer.allocUnsafe(chunkSize);
        const { bytesRead } = await fh.read(buf, 0, chunkSize, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        let records: PcapRecord[];
        try {
          records = parser.push(buf.subarray(0, bytesRead));
        } catch (error) {
          throw withPath(error, path);
        }
        yield* records;
      }
      truncated = parser.end().truncatedBytes;
    } finally {
      await close();
    }
  }

  return {
    path,
    header,
    records: {
      [Symbol.asyncIterator]() {
        if (started) throw new Error(`the records of ${path} can be iterated only once`);
        started = true;
        return iterate();
      },
    },
    truncatedBytes: () => truncated,
    close,
  };
}

/**
 * Streams the records of a pcap file (use {@link openPcapFile} to see its header too).
 *
 * @throws WirewatchError `InvalidPcap` (target: the path) for a file that is not a libpcap file
 *   or is corrupt; an incomplete last record is not an error and is skipped.
 */
export async function* readPcapFile(
  path: string,
  options: OpenPcapFileOptions = {},
): AsyncGenerator<PcapRecord> {
  const file = await openPcapFile(path, options);
  try {
    yield* file.records;
  } finally {
    await file.close();
  }
}

/**
 * Reads up to `length` bytes at `position`; fewer only at the end of the file. With `into` (at
 * least `length` bytes), into that buffer: the result is a view of it.
 */
export async function readAt(
  fh: FileHandle,
  length: number,
  position: number,
  into?: Buffer,
): Promise<Buffer> {
  const buf = into ?? Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

/** An InvalidPcap error with the path in front of its message and as its target. */
export function withPath(error: unknown, path: string): unknown {
  if (error instanceof WirewatchError && error.code === 'InvalidPcap') {
    return new WirewatchError('InvalidPcap', `${path}: ${error.message}`, {
      target: path,
      cause: error,
    });
  }
  return error;
}
