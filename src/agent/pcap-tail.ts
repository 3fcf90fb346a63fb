/**
 * Reading whole pcap records from the tail of a capture file that is still being written, for
 * live streams (src/agent/live-stream.ts): the record headers are walked, and a record the
 * writer has only partly written waits for its rest.
 */
import type { FileHandle } from 'node:fs/promises';
import { openCaptureFile } from '../capture/capture-path.js';
import { MAX_SNAPLEN } from '../capture/tcpdump.js';
import { WirewatchError } from '../model/errors.js';
import { FILE_HEADER_LENGTH, parseFileHeader, RECORD_HEADER_LENGTH } from '../pcap/format.js';
import { recordTimeMs } from '../pcap/record-time.js';
import { PcapRecordWalker } from '../pcap/record-walker.js';
import type { ByteOrder, TimestampPrecision } from '../pcap/types.js';

/** How much a skip reads at a time while it walks record headers. */
const SKIP_CHUNK = 1024 * 1024;
/**
 * The largest record a capture can hold: tcpdump's largest snaplen. A larger length in a record
 * header means the file is not what the stream thinks it is.
 */
const MAX_RECORD_DATA = MAX_SNAPLEN;

/** Whole records read from a file's tail. */
export interface RecordBatch {
  /** The `reserve` bytes asked for (left as they are), then the records as they are in the file. */
  readonly data: Buffer;
  readonly records: number;
  /** Capture time of the first record, ms since the epoch. */
  readonly firstMs: number;
}

/**
 * Reads whole pcap records from a file that is still being written: an offset that only ever
 * moves past whole records, so a record the writer has only partly written is read again, whole,
 * once it is complete.
 */
export class PcapTail {
  readonly path: string;
  #file: FileHandle | undefined;
  #offset = 0;
  #header: Buffer | undefined;
  #byteOrder: ByteOrder = 'LE';
  #precision: TimestampPrecision = 'micro';
  readonly #limit: number;

  private constructor(file: FileHandle, filePath: string, limit: number) {
    this.#file = file;
    this.path = filePath;
    this.#limit = limit;
  }

  /**
   * Opens a capture file for tailing: a regular file, not through a symbolic link, and really
   * under one of `roots` when any are given (src/capture/capture-path.ts `openCaptureFile`).
   * `limit`: bytes past it are never read (a single file cut at the session's byte limit).
   */
  static async open(
    filePath: string,
    limit = Number.MAX_SAFE_INTEGER,
    roots: readonly string[] = [],
  ): Promise<PcapTail> {
    const file = await openCaptureFile(filePath, { roots });
    return new PcapTail(file, filePath, limit);
  }

  /** The file's pcap header, once it has been read. */
  get header(): Buffer | undefined {
    return this.#header;
  }

  /** Where the next record starts. */
  get offset(): number {
    return this.#offset;
  }

  /**
   * Reads the 24-byte pcap header; undefined while the writer has not written all of it.
   *
   * @throws WirewatchError `InvalidPcap` when the file does not start with a pcap header.
   */
  async readHeader(): Promise<Buffer | undefined> {
    if (this.#header !== undefined) return this.#header;
    const buf = Buffer.alloc(FILE_HEADER_LENGTH);
    const { bytesRead } = await this.#handle().read(buf, 0, FILE_HEADER_LENGTH, 0);
    if (bytesRead < FILE_HEADER_LENGTH) return undefined;
    const parsed = parseFileHeader(buf);
    this.#byteOrder = parsed.byteOrder;
    this.#precision = parsed.precision;
    this.#header = buf;
    this.#offset = FILE_HEADER_LENGTH;
    return buf;
  }

  /**
   * The whole records from the offset on, at most `maxBytes` of them (but always the first
   * record whole, however large), after `reserve` free bytes (room for a frame's prefix);
   * undefined when no whole record is there yet.
   */
  async read(maxBytes: number, reserve = 0): Promise<RecordBatch | undefined> {
    const room = this.#limit - this.#offset;
    if (room < RECORD_HEADER_LENGTH) return undefined;
    let want = Math.min(maxBytes, room);
    for (;;) {
      const buf = Buffer.allocUnsafe(reserve + want);
      const { bytesRead } = await this.#handle().read(buf, reserve, want, this.#offset);
      const data = buf.subarray(reserve, reserve + bytesRead);
      const walk = this.#walk(data, data.length);
      if (walk.records > 0) {
        this.#offset += walk.end;
        return {
          data: buf.subarray(0, reserve + walk.end),
          records: walk.records,
          firstMs: recordTimeMs(data, 0, {
            byteOrder: this.#byteOrder,
            precision: this.#precision,
          }),
        };
      }
      // The first record is larger than what was read: read it alone, whole, if it is there.
      const needed = walk.firstLength;
      if (needed === undefined || needed <= want || needed > room || bytesRead < want) {
        return undefined;
      }
      want = needed;
    }
  }

  /**
   * Moves the offset past every whole record there is now, reading only to walk their headers.
   * Returns how many records it passed.
   */
  async skip(): Promise<number> {
    let skipped = 0;
    const buf = Buffer.allocUnsafe(SKIP_CHUNK);
    for (;;) {
      const want = Math.min(SKIP_CHUNK, this.#limit - this.#offset);
      if (want < RECORD_HEADER_LENGTH) return skipped;
      const { bytesRead } = await this.#handle().read(buf, 0, want, this.#offset);
      const walk = this.#walk(buf, bytesRead);
      if (walk.records === 0) {
        // A record larger than the chunk: step over it by its header alone, once it is whole.
        const length = walk.firstLength;
        if (length === undefined || length <= bytesRead) return skipped;
        const { size } = await this.#handle().stat();
        if (this.#offset + length > Math.min(size, this.#limit)) return skipped;
        this.#offset += length;
        skipped++;
        continue;
      }
      this.#offset += walk.end;
      skipped += walk.records;
      if (bytesRead < want) return skipped;
    }
  }

  async close(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.close();
  }

  #handle(): FileHandle {
    if (this.#file === undefined) throw new Error(`${this.path} is closed`);
    return this.#file;
  }

  /**
   * Walks the record headers of `buf[0, length)`: the number of whole records, where the last
   * one ends, and the length of the first (header included) when it can be read.
   */
  #walk(buf: Buffer, length: number): { records: number; end: number; firstLength?: number } {
    const walker = new PcapRecordWalker(buf, this.#byteOrder, {
      length,
      maxCapturedLength: MAX_RECORD_DATA,
    }).walk();
    if (walker.badLength !== undefined) {
      throw new WirewatchError(
        'InvalidPcap',
        `${this.path}: a record at offset ${this.#offset + walker.offset} claims ${walker.badLength} bytes, more than any capture holds`,
      );
    }
    // Only asked for when no record is whole: the length of the first one.
    const firstLength = walker.records === 0 ? walker.pendingLength : undefined;
    return {
      records: walker.records,
      end: walker.offset,
      ...(firstLength === undefined ? {} : { firstLength }),
    };
  }
}
