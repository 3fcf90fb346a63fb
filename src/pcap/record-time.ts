/**
 * A record's timestamp read straight from its 16-byte header in a buffer, without decoding the
 * record: for the edges of a capture's time window (the ring writer, the repair of a single
 * file) and the capture time of a live stream's batch.
 */
import { compareTimestamp, fractionsPerSecond } from './format.js';
import type { ByteOrder, TimestampPrecision } from './types.js';

/** How a buffer's records are stamped: the file header's byte order and precision. */
export interface RecordStampFormat {
  readonly byteOrder: ByteOrder;
  readonly precision: TimestampPrecision;
}

/**
 * Compares the stamp of the record whose header starts at `offset` with an instant in whole
 * microseconds since the epoch, exactly for both precisions (see {@link compareTimestamp}).
 *
 * @returns negative if the record is stamped earlier, 0 at the instant, positive if later.
 */
export function compareRecordTime(
  buf: Buffer,
  offset: number,
  format: RecordStampFormat,
  instantUs: number,
): number {
  const [tsSec, tsFrac] = readStamp(buf, offset, format.byteOrder);
  return compareTimestamp(tsSec, tsFrac, format.precision, instantUs);
}

/** The stamp of the record whose header starts at `offset`, in ms since the epoch (fractional). */
export function recordTimeMs(buf: Buffer, offset: number, format: RecordStampFormat): number {
  const [tsSec, tsFrac] = readStamp(buf, offset, format.byteOrder);
  return tsSec * 1000 + (tsFrac * 1000) / fractionsPerSecond(format.precision);
}

/**
 * A capture's time window as its records' stamps are held against it, in whole microseconds
 * since the epoch. Only the edges count, so that a host clock that steps mid-capture costs no
 * packet: at the start, leading records stamped shortly before it; at the end, records stamped
 * after the deadline.
 */
export interface RecordTimeWindow {
  /** The capture's start. */
  readonly startUs: number;
  /**
   * How far before startUs a leading stamp may lie and still count as early (µs); a stamp even
   * earlier is taken as a clock that stepped back, and the record as inside.
   */
  readonly startSlackUs: number;
  /** The deadline, once it applies: records stamped after it are late. */
  readonly endUs?: number | undefined;
}

/** Where a record's stamp places it: before the start (`early`), after the deadline (`late`). */
export type WindowPlace = 'early' | 'inside' | 'late';

/**
 * Where the record whose header starts at `offset` lies in `window`. The start is looked at only
 * while `leading` (no record of the capture was kept yet); the deadline whenever it is set.
 */
export function placeInWindow(
  buf: Buffer,
  offset: number,
  format: RecordStampFormat,
  window: RecordTimeWindow,
  leading: boolean,
): WindowPlace {
  if (leading) {
    const early = compareRecordTime(buf, offset, format, window.startUs);
    if (early < 0 && early >= -window.startSlackUs) return 'early';
  }
  return window.endUs !== undefined && compareRecordTime(buf, offset, format, window.endUs) > 0
    ? 'late'
    : 'inside';
}

function readStamp(buf: Buffer, offset: number, byteOrder: ByteOrder): [number, number] {
  return byteOrder === 'LE'
    ? [buf.readUInt32LE(offset), buf.readUInt32LE(offset + 4)]
    : [buf.readUInt32BE(offset), buf.readUInt32BE(offset + 4)];
}
