/**
 * The one loop that steps over the records of a pcap byte range by their 16-byte headers,
 * without copying or decoding them: the capture runner's ring writer, the agent's live-stream
 * tail, the server's stream relay and the CLI's stream all walk records with it.
 */
import { RECORD_HEADER_LENGTH } from './format.js';
import type { ByteOrder } from './types.js';

/** Options of {@link PcapRecordWalker}. */
export interface PcapRecordWalkerOptions {
  /** Where the first record starts (default 0). */
  readonly start?: number;
  /** Bytes of the buffer that hold data: the walk stops there (default the buffer's length). */
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
    if (offset + RECORD_HEADER_LENGTH > this.#length) {
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
