/**
 * Continuous captures: tcpdump's pcap stream, read by Node and written as whole records into a
 * ring of files, with the records stamped outside the capture's time window left out.
 */
import { FILE_HEADER_LENGTH, parseFileHeader } from '../pcap/format.js';
import { placeInWindow, type RecordStampFormat } from '../pcap/record-time.js';
import { PcapRecordWalker } from '../pcap/record-walker.js';
import { START_SLACK_US } from './capture-options.js';
import type { RingSettings } from '../model/capture-limits.js';
import { RingBuffer } from './ring-buffer.js';

export interface RingCaptureOptions {
  /** The name the ring's files are derived from. */
  readonly filePath: string;
  readonly ring: RingSettings;
  /** Ring file `index` is complete (see RingBufferOptions.onFileClosed). */
  readonly onFileClosed?: (path: string, index: number) => Promise<void> | void;
}

/** The ring a continuous capture writes; the runner sets its time window as it learns it. */
export class RingCapture {
  readonly #options: RingCaptureOptions;
  #ring: RingBuffer | undefined;
  /** Whole records written to the ring. */
  packets = 0;
  /** Records left out for their stamps. */
  outsideWindow = 0;
  /** The capture's start, µs since the epoch: leading records stamped just before it are left out. */
  startUs = 0;
  /** Set once the deadline has passed: records stamped after it are left out. */
  endUs: number | undefined;
  /** tcpdump's output ended with part of a record, which cannot be kept. */
  cutShort = false;
  #wroteRecord = false;

  constructor(options: RingCaptureOptions) {
    this.#options = options;
  }

  /** Bytes in the ring's files; undefined until tcpdump's file header has opened the ring. */
  get bytesWritten(): number | undefined {
    return this.#ring?.bytesWritten;
  }

  /**
   * Reads tcpdump's pcap stream and writes whole records into the ring; while `writing()` is
   * false the stream is drained unread, so that tcpdump can exit.
   */
  async consume(stream: AsyncIterable<Buffer>, writing: () => boolean): Promise<void> {
    let pending: Buffer | undefined;
    let format: RecordStampFormat = { byteOrder: 'LE', precision: 'micro' };
    for await (const chunk of stream) {
      if (!writing()) continue; // drain, so that tcpdump can exit
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      let offset = 0;
      if (this.#ring === undefined) {
        if (buf.length < FILE_HEADER_LENGTH) {
          pending = buf;
          continue;
        }
        format = parseFileHeader(buf.subarray(0, FILE_HEADER_LENGTH));
        this.#ring = await this.#openRing(buf.subarray(0, FILE_HEADER_LENGTH));
        offset = FILE_HEADER_LENGTH;
      }
      offset = await this.#writeRecords(buf, offset, format);
      if (offset < buf.length) pending = Buffer.from(buf.subarray(offset));
    }
    this.cutShort = pending !== undefined;
  }

  /** Closes the ring and returns its files, oldest first; undefined if it was never opened. */
  async close(): Promise<string[] | undefined> {
    if (this.#ring === undefined) return undefined;
    await this.#ring.close();
    return [...this.#ring.files];
  }

  /**
   * Whether the record at `offset` lies outside the capture's time window: a leading one stamped
   * just before the start, or one stamped after the deadline once it has passed (the same window
   * repairPcapFile cuts from a single file).
   */
  #isOutsideWindow(buf: Buffer, offset: number, format: RecordStampFormat): boolean {
    const window = { startUs: this.startUs, startSlackUs: START_SLACK_US, endUs: this.endUs };
    return placeInWindow(buf, offset, format, window, !this.#wroteRecord) !== 'inside';
  }

  async #openRing(header: Buffer): Promise<RingBuffer> {
    const ring = this.#options.ring;
    const buffer = new RingBuffer({
      path: this.#options.filePath,
      fileCount: ring.fileCount,
      fileSizeInBytes: ring.fileSizeInBytes,
      header: Buffer.from(header),
      ...(this.#options.onFileClosed === undefined
        ? {}
        : { onFileClosed: this.#options.onFileClosed }),
    });
    await buffer.start();
    return buffer;
  }

  /** Writes the whole records in buf from offset on; returns where the first incomplete one starts. */
  async #writeRecords(buf: Buffer, start: number, format: RecordStampFormat): Promise<number> {
    const ring = this.#ring!;
    let segmentStart = start;
    let records = 0;
    let room = ring.room();
    // Hot path: the walker reads only the captured length of each record header.
    const walker = new PcapRecordWalker(buf, format.byteOrder, { start });
    while (walker.next()) {
      const offset = walker.start;
      const end = walker.offset;
      // Stamps are read only at the edges: before the first packet and after the deadline.
      if (
        (!this.#wroteRecord || this.endUs !== undefined) &&
        this.#isOutsideWindow(buf, offset, format)
      ) {
        if (records > 0) await ring.append(buf.subarray(segmentStart, offset), records);
        this.packets += records;
        records = 0;
        this.outsideWindow++;
        segmentStart = end;
        continue;
      }
      this.#wroteRecord = true;
      // A record larger than a whole file still gets an empty file to itself.
      if (end - offset > room && (records > 0 || ring.hasRecords)) {
        if (records > 0) await ring.append(buf.subarray(segmentStart, offset), records);
        this.packets += records;
        records = 0;
        segmentStart = offset;
        await ring.rotate();
        room = ring.room();
      }
      room -= end - offset;
      records++;
    }
    if (records > 0) await ring.append(buf.subarray(segmentStart, walker.offset), records);
    this.packets += records;
    return walker.offset;
  }
}
