/**
 * Single-file captures: the file tcpdump writes itself, watched for the byte limit and a full
 * disk while it grows, counted for progress, and cut to the capture's limits once tcpdump is done.
 */
import { rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';
import { FILE_HEADER_LENGTH } from '../pcap/format.js';
import { countPcapRecords, repairPcapFile, type PcapRecordCount } from '../pcap/repair.js';
import { START_SLACK_US } from './capture-options.js';
import { CaptureFile } from './capture-file.js';
import { MAX_SNAPLEN } from './tcpdump.js';

/** Free space below which a capture stops before the disk is full: two of the largest packets. */
const DEFAULT_DISK_RESERVE = 2 * (MAX_SNAPLEN + 16);

/** What {@link SingleFileCapture.watch} found that ends the capture. */
export type FileWatchStop =
  | { readonly reason: 'SessionBytesExceeded' }
  | { readonly reason: 'Error'; readonly error: WirewatchError };

/** What {@link SingleFileCapture.finish} did to a file tcpdump left with at least a header. */
export interface FinishedFile {
  readonly path: string;
  /** Records were cut because they did not fit within the byte limit. */
  readonly cutByLimit: boolean;
  /** Closing the file failed (the records are still counted). */
  readonly closeError: unknown;
}

export class SingleFileCapture {
  /** The whole records in the file and their bytes, as last counted. */
  count: PcapRecordCount = { bytes: 0, records: 0 };
  /** The file's size once tcpdump is done and the file is repaired. */
  finalBytes: number | undefined;
  /** The file's size when last measured before the deadline: every packet in it was stamped before. */
  sizeBeforeDeadline = 0;

  private constructor(readonly file: CaptureFile) {}

  /** Creates the empty file tcpdump will write: never overwrites, never follows a symlink. */
  static async create(filePath: string): Promise<SingleFileCapture> {
    return new SingleFileCapture(await CaptureFile.create(filePath));
  }

  get path(): string {
    return this.file.path;
  }

  /** The descriptor to give tcpdump as its stdout. */
  get fd(): number {
    return this.file.fd;
  }

  /** Stop at the byte limit, and before the disk is full. */
  async watch(options: {
    readonly beforeDeadline: () => boolean;
    readonly totalBytesPerSession: number;
    readonly diskReserveBytes: number | undefined;
  }): Promise<FileWatchStop | undefined> {
    const file = this.file;
    const size = await file.refreshSize();
    // Measured before the deadline: every packet in these bytes was stamped before it.
    if (options.beforeDeadline()) this.sizeBeforeDeadline = size;
    if (size > options.totalBytesPerSession) return { reason: 'SessionBytesExceeded' };
    const fs = await statfs(path.dirname(file.path));
    const reserve = options.diskReserveBytes ?? DEFAULT_DISK_RESERVE;
    if (fs.bavail * fs.bsize < reserve) {
      return {
        reason: 'Error',
        error: new WirewatchError(
          'LocalFileFailed',
          `no space left on device for ${path.basename(file.path)}; the capture was stopped`,
        ),
      };
    }
    return undefined;
  }

  /** Counts the records tcpdump has added; a file someone removed or cannot read keeps the count. */
  async recount(): Promise<void> {
    this.count = await countPcapRecords(this.file.path, this.count).catch(() => this.count);
  }

  /**
   * After tcpdump has exited: cut the file to the last whole packet within
   * totalBytesPerSession (tcpdump may have written past it before it was stopped, and a full
   * disk may have left half a record) and to the time window. Returns the records kept and
   * left out, or undefined when tcpdump never wrote a whole header and the file was removed.
   */
  async finish(options: {
    readonly totalBytesPerSession: number;
    readonly startedMs: number;
    readonly endUs: number | undefined;
  }): Promise<
    (FinishedFile & { packets: number; outsideWindow: number; rewrittenFrom?: number }) | undefined
  > {
    const file = this.file;
    let closeError: unknown;
    await file.close().catch((err: unknown) => (closeError = err));
    const before = (await stat(file.path)).size;
    if (before < FILE_HEADER_LENGTH) {
      // tcpdump never wrote a whole header (it failed at once, or the disk was full): no file
      // rather than a broken one.
      await rm(file.path, { force: true });
      this.finalBytes = 0;
      return undefined;
    }
    const repaired = await repairPcapFile(file.path, {
      maxBytes: options.totalBytesPerSession,
      window: {
        startUs: options.startedMs * 1000,
        startSlackUs: START_SLACK_US,
        ...(options.endUs === undefined
          ? {}
          : { endUs: options.endUs, endFrom: this.sizeBeforeDeadline }),
      },
    });
    this.finalBytes = before - repaired.removedBytes;
    return {
      path: file.path,
      cutByLimit: repaired.reachedMaxBytes,
      closeError,
      packets: repaired.keptRecords,
      outsideWindow: repaired.outsideWindow,
      ...(repaired.rewrittenFrom === undefined ? {} : { rewrittenFrom: repaired.rewrittenFrom }),
    };
  }

  /** Safe to call twice. */
  async close(): Promise<void> {
    await this.file.close();
  }
}
