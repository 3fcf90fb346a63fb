/**
 * Repair and counting of pcap files on disk, reading only record headers: the repair that cuts
 * a file left by a crash back to its last whole record (and to a capture's limits), and the
 * count of the records a file another process is writing has gained.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { WirewatchError } from '../model/errors.js';
import { FILE_HEADER_LENGTH, RECORD_HEADER_LENGTH, parseFileHeader } from './format.js';
import {
  MAX_CAPTURED_LENGTH_LIMIT,
  MIN_CAPTURED_LENGTH_LIMIT,
  readAt,
  withPath,
  type OpenPcapFileOptions,
} from './reader.js';
import { placeInWindow, type RecordTimeWindow } from './record-time.js';
import { FileRecordWalker } from './record-walker.js';
import type { PcapFileHeader } from './types.js';

const REPAIR_CHUNK_SIZE = 1024 * 1024;

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
  /**
   * Where the first record removed from before the end lay (records after it moved down): bytes
   * from here on differ from what the file held, so whoever read them before (an upload under
   * way) must read them again. Undefined when the file was only cut at its end, or left whole.
   */
  readonly rewrittenFrom?: number;
}

/**
 * The stamps a capture's records may carry (see {@link RepairPcapFileOptions.window}), in whole
 * microseconds since the epoch ({@link RecordTimeWindow}): leading records stamped shortly before
 * the start are removed (one stamped even earlier is taken as a clock that stepped back: it and
 * all after it stay), and records stamped after the deadline that were written after it.
 */
export interface PcapTimeWindow extends RecordTimeWindow {
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
  const chunkSize = options.chunkSize ?? REPAIR_CHUNK_SIZE;
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
    const records = new FileRecordWalker((length, at) => readAt(fh, length, at), header.byteOrder, {
      start: FILE_HEADER_LENGTH,
      size,
      chunkSize,
      maxCapturedLength: maxCaptured,
    });
    // `records.start`: the record in the file as it was; `write`: where the next kept record
    // goes (behind it once a record was removed from the middle).
    let write = FILE_HEADER_LENGTH;
    let kept = 0;
    let outside = 0;
    let reachedMaxBytes = false;
    let removedAt: number | undefined;
    let leading = window !== undefined;
    // Kept records still to be moved down to `runTo`: [runFrom, runEnd) of the original file.
    let runFrom = -1;
    let runEnd = 0;
    let runTo = 0;
    const moveRun = async () => {
      if (runFrom >= 0) await moveBytes(fh, runFrom, runEnd, runTo, chunkSize);
      runFrom = -1;
    };
    for (;;) {
      if (!records.next()) {
        // Past the last whole record: garbage (an impossible length) or a record cut short.
        if (await records.refill()) continue;
        break;
      }
      const read = records.start;
      const end = records.end;
      if (window !== undefined && outsideWindow(window, records.buf, records.at, read)) {
        await moveRun();
        removedAt ??= write;
        outside++;
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
      kept++;
    }
    await moveRun();
    if (write < size) {
      await fh.truncate(write);
      await fh.sync();
    }
    // A record moved down means the bytes from the first removal on were rewritten; with none
    // moved, the file was only cut at its end.
    const moved = removedAt !== undefined && write > removedAt;
    return {
      keptRecords: kept,
      removedBytes: size - write,
      outsideWindow: outside,
      reachedMaxBytes,
      ...(moved ? { rewrittenFrom: removedAt } : {}),
    };

    function outsideWindow(w: PcapTimeWindow, b: Buffer, at: number, offset: number): boolean {
      // The deadline applies only to the records written after it passed.
      const endUs = offset >= (w.endFrom ?? 0) ? w.endUs : undefined;
      // Most records are neither leading nor late: their stamps are not read.
      if (!leading && endUs === undefined) return false;
      const place = placeInWindow(b, at, header, { ...w, endUs }, leading);
      if (place !== 'early') leading = false;
      return place !== 'inside';
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
    // This runs at every progress report over all that tcpdump wrote since the last: one buffer
    // for every chunk (the walker holds only the last) spares a fresh 1 MiB, and its page
    // faults, per chunk.
    const scratch = Buffer.allocUnsafe(Math.max(chunkSize, RECORD_HEADER_LENGTH));
    const walker = new FileRecordWalker(
      (length, at) => readAt(fh, length, at, scratch),
      header.byteOrder,
      {
        start: Math.max(from.bytes, FILE_HEADER_LENGTH),
        size,
        chunkSize,
      },
    );
    let records = from.records;
    for (;;) {
      if (walker.next()) records++;
      else if (!(await walker.refill())) break;
    }
    return { bytes: walker.end, records };
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
