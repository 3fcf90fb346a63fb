/**
 * Streaming pcap reading: an incremental parser that takes bytes in chunks of any size, a file
 * reader built on it that never holds more than one read chunk at a time, and the repair that
 * cuts a file left by a crash back to its last whole record.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { WirewatchError } from '../model/errors.js';
import {
  FILE_HEADER_LENGTH,
  RECORD_HEADER_LENGTH,
  compareTimestamp,
  parseFileHeader,
  readRecordHeader,
} from './format.js';
import type { RecordHeader } from './format.js';
import type { PcapFileHeader, PcapRecord } from './types.js';

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
const REPAIR_CHUNK_SIZE = 1024 * 1024;

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
  let limit = 0;
  let offset = 0;
  let recordCount = 0;
  let failure: WirewatchError | undefined;
  let ended = false;
  // Bytes not yet consumed, kept as a list so that a record arriving in many small chunks is
  // copied once, when it is complete, rather than once per chunk.
  let pending: Buffer[] = [];
  let pendingLength = 0;
  // Bytes needed before parsing can make progress again.
  let needed = FILE_HEADER_LENGTH;
  const scratch: RecordHeader = { tsSec: 0, tsFrac: 0, capturedLength: 0, originalLength: 0 };

  function fail(error: WirewatchError): never {
    failure = error;
    pending = [];
    pendingLength = 0;
    throw error;
  }

  function push(chunk: Buffer): PcapRecord[] {
    if (failure !== undefined) throw failure;
    if (ended) throw new Error('PcapParser.push called after end()');
    if (chunk.length === 0) return [];
    if (pendingLength + chunk.length < needed) {
      pending.push(chunk);
      pendingLength += chunk.length;
      return [];
    }
    let buf: Buffer;
    if (pendingLength === 0) {
      buf = chunk;
    } else {
      pending.push(chunk);
      buf = Buffer.concat(pending, pendingLength + chunk.length);
    }
    pending = [];
    pendingLength = 0;

    let pos = 0;
    if (header === undefined) {
      let parsed: PcapFileHeader;
      try {
        parsed = parseFileHeader(buf);
      } catch (error) {
        if (error instanceof WirewatchError) fail(error);
        throw error;
      }
      header = parsed;
      limit =
        options.maxCapturedLength ??
        Math.max(MIN_CAPTURED_LENGTH_LIMIT, Math.min(parsed.snaplen, MAX_CAPTURED_LENGTH_LIMIT));
      pos = FILE_HEADER_LENGTH;
      offset = FILE_HEADER_LENGTH;
    }

    const byteOrder = header.byteOrder;
    const records: PcapRecord[] = [];
    needed = RECORD_HEADER_LENGTH;
    while (buf.length - pos >= RECORD_HEADER_LENGTH) {
      readRecordHeader(buf, pos, byteOrder, scratch);
      const capturedLength = scratch.capturedLength;
      if (capturedLength > limit) {
        fail(
          new WirewatchError(
            'InvalidPcap',
            `record ${recordCount + 1} at byte ${offset} claims a captured length of ${capturedLength} bytes, above the limit of ${limit}; the file is corrupt`,
          ),
        );
      }
      const end = pos + RECORD_HEADER_LENGTH + capturedLength;
      if (end > buf.length) {
        needed = RECORD_HEADER_LENGTH + capturedLength;
        break;
      }
      records.push({
        tsSec: scratch.tsSec,
        tsFrac: scratch.tsFrac,
        capturedLength,
        originalLength: scratch.originalLength,
        data: buf.subarray(pos + RECORD_HEADER_LENGTH, end),
      });
      pos = end;
      offset += RECORD_HEADER_LENGTH + capturedLength;
      recordCount++;
    }
    if (pos < buf.length) {
      pending.push(buf.subarray(pos));
      pendingLength = buf.length - pos;
    }
    return records;
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
    push,
    end() {
      ended = true;
      return { truncatedBytes: pendingLength };
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

/** What {@link repairPcapFile} did. */
export interface PcapRepairResult {
  /** Whole records left in the file. */
  readonly keptRecords: number;
  /** Bytes cut from the file (0 if it was whole). */
  readonly removedBytes: number;
  /** Whole records removed because they lie outside the time window. */
  readonly outsideWindow: number;
  /** Whole records were cut because they did not fit within `maxBytes`. */
  readonly reachedMaxBytes: boolean;
}

/**
 * The stamps a capture's records may carry (see {@link RepairPcapFileOptions.window}), in whole
 * microseconds since the epoch. Only the edges are trimmed, so that a host clock that steps
 * mid-capture costs no packet: at the start, the leading records stamped shortly before it; at
 * the end, records stamped after the deadline that were written after it.
 */
export interface PcapTimeWindow {
  /** The capture's start: leading records stamped before it are removed. */
  readonly startUs: number;
  /**
   * How far before startUs a stamp may lie and still count as early (µs). A leading record
   * stamped even earlier is taken as a clock that stepped back: it and all after it stay.
   */
  readonly startSlackUs: number;
  /** The deadline: records stamped after it, from `endFrom` on, are removed. */
  readonly endUs?: number;
  /**
   * Byte offset of the first record `endUs` applies to: records written before the deadline
   * passed are kept whatever their stamp says. Default: the first record.
   */
  readonly endFrom?: number;
}

/** Options of {@link repairPcapFile}. */
export interface RepairPcapFileOptions extends OpenPcapFileOptions {
  /**
   * Also cut the file to at most this many bytes, at the end of the last whole record that
   * fits (a capture's totalBytesPerSession).
   */
  readonly maxBytes?: number;
  /**
   * Remove the records stamped outside the capture's time window (a capture's start and
   * deadline). Records removed from the middle of the file are closed up, in place.
   */
  readonly window?: PcapTimeWindow;
}

/**
 * Truncates a pcap file to its last whole record, as needed after a crash cut it mid-write.
 * A record with an impossible captured length (garbage written by the crash) is cut too, with
 * everything after it. The result is a valid pcap file that tshark and tcpdump read.
 * With `window`, records stamped outside it are removed; with `maxBytes`, the records that
 * remain and end beyond it are cut as well.
 *
 * @throws WirewatchError `InvalidPcap` (target: the path) if not even a valid file header is
 *   there: without the link type nothing can be salvaged.
 */
export async function repairPcapFile(
  path: string,
  options: RepairPcapFileOptions = {},
): Promise<PcapRepairResult> {
  // Only record headers are read: this runs over whole captures (up to 4 GiB) at the end of
  // every session, so it must cost little more than reading the file once, without a record
  // object per packet. Record bytes are read only to close up a gap the window left.
  const chunkSize = Math.max(options.chunkSize ?? REPAIR_CHUNK_SIZE, RECORD_HEADER_LENGTH);
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
  const window = options.window;
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    let header: PcapFileHeader;
    try {
      header = parseFileHeader(await readAt(fh, FILE_HEADER_LENGTH, 0));
    } catch (error) {
      if (size < FILE_HEADER_LENGTH) {
        throw new WirewatchError(
          'InvalidPcap',
          `${path}: the file is ${size} bytes, shorter than a pcap file header; nothing to repair`,
          { target: path },
        );
      }
      throw withPath(error, path);
    }
    const maxCaptured =
      options.maxCapturedLength ??
      Math.max(MIN_CAPTURED_LENGTH_LIMIT, Math.min(header.snaplen, MAX_CAPTURED_LENGTH_LIMIT));
    const littleEndian = header.byteOrder === 'LE';
    let buf: Buffer = Buffer.alloc(0);
    let bufStart = 0;
    // `read`: the next record in the file as it was; `write`: where the next kept record goes
    // (behind `read` once a record was removed from the middle).
    let read = FILE_HEADER_LENGTH;
    let write = FILE_HEADER_LENGTH;
    let kept = 0;
    let outside = 0;
    let reachedMaxBytes = false;
    let leading = window !== undefined;
    // Kept records still to be moved down to `runTo`: [runFrom, runEnd) of the original file.
    let runFrom = -1;
    let runEnd = 0;
    let runTo = 0;
    const moveRun = async () => {
      if (runFrom >= 0) await moveBytes(fh, runFrom, runEnd, runTo, chunkSize);
      runFrom = -1;
    };
    while (read + RECORD_HEADER_LENGTH <= size) {
      if (read + RECORD_HEADER_LENGTH > bufStart + buf.length) {
        buf = await readAt(fh, Math.min(chunkSize, size - read), read);
        bufStart = read;
      }
      const at = read - bufStart;
      const captured = littleEndian ? buf.readUInt32LE(at + 8) : buf.readUInt32BE(at + 8);
      const end = read + RECORD_HEADER_LENGTH + captured;
      // Garbage (an impossible length) or a record cut short.
      if (captured > maxCaptured || end > size) break;
      if (window !== undefined && outsideWindow(window, buf, at, read)) {
        await moveRun();
        outside++;
        read = end;
        continue;
      }
      // Beyond the byte limit.
      if (write + (end - read) > maxBytes) {
        reachedMaxBytes = true;
        break;
      }
      if (write !== read) {
        if (runFrom < 0) {
          runFrom = read;
          runTo = write;
        }
        runEnd = end;
      }
      write += end - read;
      read = end;
      kept++;
    }
    await moveRun();
    if (write < size) {
      await fh.truncate(write);
      await fh.sync();
    }
    return {
      keptRecords: kept,
      removedBytes: size - write,
      outsideWindow: outside,
      reachedMaxBytes,
    };

    function outsideWindow(w: PcapTimeWindow, b: Buffer, at: number, offset: number): boolean {
      const tsSec = littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at);
      const tsFrac = littleEndian ? b.readUInt32LE(at + 4) : b.readUInt32BE(at + 4);
      if (leading) {
        const early = compareTimestamp(tsSec, tsFrac, header.precision, w.startUs);
        if (early < 0 && early >= -w.startSlackUs) return true;
        leading = false;
      }
      return (
        w.endUs !== undefined &&
        offset >= (w.endFrom ?? 0) &&
        compareTimestamp(tsSec, tsFrac, header.precision, w.endUs) > 0
      );
    }
  } finally {
    await fh.close();
  }
}

/** Where a count of a growing pcap file stands; see {@link countPcapRecords}. */
export interface PcapRecordCount {
  /** The end of the last whole record counted (the file header included). */
  readonly bytes: number;
  readonly records: number;
}

/**
 * Counts the whole records a pcap file that another process is writing has gained since `from`
 * (a previous count, or nothing), reading only their headers. Bytes and records describe the
 * same records, so they move together: a record being written counts for neither.
 */
export async function countPcapRecords(
  path: string,
  from: PcapRecordCount = { bytes: 0, records: 0 },
  chunkSize = REPAIR_CHUNK_SIZE,
): Promise<PcapRecordCount> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size < FILE_HEADER_LENGTH) return from;
    const header = parseFileHeader(await readAt(fh, FILE_HEADER_LENGTH, 0));
    const littleEndian = header.byteOrder === 'LE';
    let offset = Math.max(from.bytes, FILE_HEADER_LENGTH);
    let records = from.records;
    let buf: Buffer = Buffer.alloc(0);
    let bufStart = offset;
    while (offset + RECORD_HEADER_LENGTH <= size) {
      if (offset + RECORD_HEADER_LENGTH > bufStart + buf.length) {
        buf = await readAt(fh, Math.min(chunkSize, size - offset), offset);
        bufStart = offset;
      }
      const at = offset - bufStart + 8;
      const captured = littleEndian ? buf.readUInt32LE(at) : buf.readUInt32BE(at);
      const end = offset + RECORD_HEADER_LENGTH + captured;
      if (end > size) break;
      offset = end;
      records++;
    }
    return { bytes: offset, records };
  } finally {
    await fh.close();
  }
}

/** Copies the bytes [from, to) down to `dest` (< from) in chunks, within one file. */
async function moveBytes(
  fh: FileHandle,
  from: number,
  to: number,
  dest: number,
  chunkSize: number,
): Promise<void> {
  for (let pos = from; pos < to; pos += chunkSize) {
    const chunk = await readAt(fh, Math.min(chunkSize, to - pos), pos);
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await fh.write(
        chunk,
        written,
        chunk.length - written,
        dest + (pos - from) + written,
      );
      written += bytesWritten;
    }
  }
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
async function readAt(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buf.subarray(0, filled);
}

function withPath(error: unknown, path: string): unknown {
  if (error instanceof WirewatchError && error.code === 'InvalidPcap') {
    return new WirewatchError('InvalidPcap', `${path}: ${error.message}`, {
      target: path,
      cause: error,
    });
  }
  return error;
}
