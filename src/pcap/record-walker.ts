/**
 * The one loop that steps over the records of a pcap byte range by their 16-byte headers,
 * without copying or decoding them: the capture runner's ring writer, the agent's live-stream
 * tail, the server's stream relay and the CLI's stream all walk records with it, and the repair
 * and count of a file on disk walk it a chunk at a time ({@link FileRecordWalker}).
 */
import { RECORD_HEADER_LENGTH } from './format.js';
import type { ByteOrder } from './types.js';

/** Options of {@link PcapRecordWalker}. */
export interface PcapRecordWalkerOptions {
  /** Where the first record starts (default 0). */
  readonly start?: number;
  /**
   * Where the data ends (default the buffer's length): the walk stops there. It may lie beyond
   * the buffer when only record headers are read from it (a file read in chunks): the walk then
   * also stops at a header the buffer does not hold, with {@link PcapRecordWalker.pendingLength}
   * undefined.
   */
  readonly length?: number;
  /**
   * A captured length above this stops the walk at that record and sets
   * {@link PcapRecordWalker.badLength}, even when the record is not whole yet (default: none).
   */
  readonly maxCapturedLength?: number;
}

/**
 * Steps over the whole records of `buf[start, length)`, reading only their captured lengths.
 * What a partial record or a bad length means is up to the caller: the walker only stops there
 * and says why.
 *
 * ```ts
 * const walker = new PcapRecordWalker(buf, 'LE');
 * while (walker.next()) use(buf.subarray(walker.start, walker.offset));
 * ```
 */
export class PcapRecordWalker {
  readonly #buf: Buffer;
  readonly #littleEndian: boolean;
  readonly #length: number;
  readonly #maxCapturedLength: number;
  /** The end of the last whole record stepped over: where the next record starts. */
  offset: number;
  /** The start of the record the last successful {@link next} stepped over. */
  start: number;
  /** Whole records stepped over. */
  records = 0;
  /**
   * Once {@link next} returned false: the length (header included) of the record at
   * {@link offset} when its header is whole, undefined when not even that is there.
   */
  pendingLength: number | undefined;
  /** Once {@link next} returned false for a length above `maxCapturedLength`: that length. */
  badLength: number | undefined;

  constructor(buf: Buffer, byteOrder: ByteOrder, options: PcapRecordWalkerOptions = {}) {
    this.#buf = buf;
    this.#littleEndian = byteOrder === 'LE';
    this.#length = options.length ?? buf.length;
    this.#maxCapturedLength = options.maxCapturedLength ?? Number.POSITIVE_INFINITY;
    this.offset = options.start ?? 0;
    this.start = this.offset;
  }

  /**
   * Steps over the record at {@link offset} if it is whole and its length is within bounds;
   * returns false, leaving the offset where it is, when it is not.
   */
  next(): boolean {
    const offset = this.offset;
    if (offset + RECORD_HEADER_LENGTH > Math.min(this.#length, this.#buf.length)) {
      this.pendingLength = undefined;
      return false;
    }
    // Bytes 8..11 of a record header: the captured length.
    const captured = this.#littleEndian
      ? this.#buf.readUInt32LE(offset + 8)
      : this.#buf.readUInt32BE(offset + 8);
    const end = offset + RECORD_HEADER_LENGTH + captured;
    this.pendingLength = end - offset;
    if (captured > this.#maxCapturedLength) {
      this.badLength = captured;
      return false;
    }
    if (end > this.#length) return false;
    this.pendingLength = undefined;
    this.start = offset;
    this.offset = end;
    this.records++;
    return true;
  }

  /** Steps over every whole record there is; returns the walker, to read where it stopped. */
  walk(): this {
    while (this.next());
    return this;
  }
}

/** The whole records in `buf[0, length)`, a byte range that starts at a record header. */
export function countWholeRecords(buf: Buffer, byteOrder: ByteOrder, length = buf.length): number {
  return new PcapRecordWalker(buf, byteOrder, { length }).walk().records;
}

/** Reads `length` bytes of a file at `position`; fewer only where the file ends. */
export type ReadAt = (length: number, position: number) => Promise<Buffer>;

/** Options of {@link FileRecordWalker}. */
export interface FileRecordWalkerOptions {
  /** Where the first record starts in the file. */
  readonly start: number;
  /** The file's size: records that end beyond it are not whole. */
  readonly size: number;
  /** Bytes read at a time (at least a record header's 16). */
  readonly chunkSize: number;
  /** As {@link PcapRecordWalkerOptions.maxCapturedLength}. */
  readonly maxCapturedLength?: number;
}

/**
 * Steps over the records of a file by reading it a chunk at a time, only the record headers
 * (a record's data is read only if it shares a chunk with a header). {@link next} is
 * synchronous, so a walk over millions of records awaits only once a chunk:
 *
 * ```ts
 * const records = new FileRecordWalker(read, 'LE', { start: 24, size, chunkSize });
 * for (;;) {
 *   if (!records.next()) {
 *     if (await records.refill()) continue;
 *     break; // records.end: the end of the last whole record
 *   }
 *   use(records.buf, records.at, records.start, records.end);
 * }
 * ```
 */
export class FileRecordWalker {
  readonly #read: ReadAt;
  readonly #byteOrder: ByteOrder;
  readonly #options: FileRecordWalkerOptions;
  readonly #chunkSize: number;
  #walker: PcapRecordWalker;
  /** The chunk read last, which holds the header of the record at {@link at}. */
  buf: Buffer = Buffer.alloc(0);
  /** Where {@link buf} starts in the file. */
  bufStart: number;

  constructor(read: ReadAt, byteOrder: ByteOrder, options: FileRecordWalkerOptions) {
    this.#read = read;
    this.#byteOrder = byteOrder;
    this.#options = options;
    this.#chunkSize = Math.max(options.chunkSize, RECORD_HEADER_LENGTH);
    this.bufStart = options.start;
    this.#walker = this.#walkerOf(this.buf);
  }

  /** The header of the record the last {@link next} stepped over: its offset in {@link buf}. */
  get at(): number {
    return this.#walker.start;
  }

  /** Where that record starts in the file. */
  get start(): number {
    return this.bufStart + this.#walker.start;
  }

  /** Where it ends in the file: where the next record starts, or the walk stopped. */
  get end(): number {
    return this.bufStart + this.#walker.offset;
  }

  /** Steps over the next record if its header is in {@link buf} and it is whole in the file. */
  next(): boolean {
    return this.#walker.next();
  }

  /**
   * Once {@link next} returned false: reads the chunk that holds the next header, if the walk
   * stopped only because this one ended. Returns false when the walk is over: the file's end,
   * a record cut short, or a captured length above `maxCapturedLength`.
   */
  async refill(): Promise<boolean> {
    const w = this.#walker;
    const at = this.end;
    if (w.badLength !== undefined || w.pendingLength !== undefined) return false;
    if (at + RECORD_HEADER_LENGTH > this.#options.size) return false;
    this.buf = await this.#read(Math.min(this.#chunkSize, this.#options.size - at), at);
    this.bufStart = at;
    // Walking on would read the same short chunk again and again.
    if (this.buf.length < RECORD_HEADER_LENGTH) {
      throw new RangeError(`the file ended at ${at + this.buf.length} while its records were read`);
    }
    this.#walker = this.#walkerOf(this.buf);
    return true;
  }

  #walkerOf(buf: Buffer): PcapRecordWalker {
    const { size, maxCapturedLength } = this.#options;
    return new PcapRecordWalker(buf, this.#byteOrder, {
      length: size - this.bufStart,
      ...(maxCapturedLength === undefined ? {} : { maxCapturedLength }),
    });
  }
}
