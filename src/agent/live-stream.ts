/**
 * Live streams (src/model/channel.ts `streamStart`): the packets of a running capture, sent to
 * the server as they reach the capture file, for `wirewatch capture stream`.
 *
 * A stream tails the capture's file(s) — the file tcpdump writes (single file), or the ring
 * files `stem_N` in order as they appear — and sends the pcap header once, then whole records
 * only: record headers are parsed from the tail, and a record the writer has only partly written
 * waits for its rest. It begins with the records written from the moment it starts (the older
 * ones are not the viewer's, and are not counted), and ends, after the last records, when the
 * capture ends.
 *
 * It only ever reads the files, so it can neither block nor slow the capture. A viewer that
 * cannot keep up loses records, never the capture: while more than `maxBufferedBytes` of this
 * stream's frames wait in the channel's send buffer, the stream jumps ahead to the newest data
 * in the file and counts the records it skipped as dropped (the server drops further for a slow
 * viewer on its side, and adds those).
 */
import path from 'node:path';
import { existingRingFiles, ringFileName } from '../capture/ring-buffer.js';
import type { Clock } from '../capture/runner.js';
import type { AgentMessage, ChannelError } from '../model/channel.js';
import { BINARY_FRAME_ID_LENGTH, toChannelError } from '../model/channel.js';
import type { AgentLog } from './agent-log.js';
import { PcapTail, type RecordBatch } from './pcap-tail.js';
import { exists } from './spool-files.js';

/** Largest data part of one frame (a single larger record still goes whole, alone). */
export const MAX_FRAME_DATA = 256 * 1024;

/** Where a stream reads: one file, or a ring of files `stem_N`. */
export type StreamSource =
  | {
      readonly kind: 'file';
      readonly path: string;
      /** Bytes of the file that may hold records (the session's byte limit). */
      readonly maxBytes?: number;
    }
  | { readonly kind: 'ring'; readonly stem: string };

export interface LiveStreamOptions {
  readonly streamId: string;
  /** Where to read; undefined while the capture has not yet decided (it is starting). */
  readonly source: () => StreamSource | undefined;
  /** Settles once the capture has ended and its files are final. */
  readonly captureEnded: Promise<unknown>;
  readonly send: (message: AgentMessage) => void;
  /** Sends one binary frame; resolves once it is handed to the OS, false when the channel is down. */
  readonly sendBinary: (frame: Buffer) => Promise<boolean>;
  readonly log: AgentLog;
  /** Called once the stream has ended, however it ended. */
  readonly onClosed?: () => void;
  /** Frames of this stream waiting to be sent above which records are skipped (default 2 MiB). */
  readonly maxBufferedBytes?: number;
  /** How often the file is looked at (default 50 ms). */
  readonly pollMs?: number;
  /** How often `streamStats` is sent (default 1000 ms). */
  readonly statsIntervalMs?: number;
  /**
   * Every file read must really lie under it (checked on each file opened, so no symbolic link
   * leads out); undefined: not checked.
   */
  readonly captureRoot?: string;
  /** The poll and stats timers, and the clock a record's lag is measured on (default: real). */
  readonly clock?: Clock;
}

/**
 * The system's clock; its timers do not keep the process alive. A handle is the timer's number,
 * which clearTimeout takes as it takes the timer.
 */
const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref()[Symbol.toPrimitive](),
  clearTimeout: (handle) => {
    if (typeof handle === 'number') clearTimeout(handle);
  },
};

const DEFAULT_MAX_BUFFERED = 2 * 1024 * 1024;

/** One viewer's stream of one session. Started by {@link startLiveStream}. */
export class LiveStream {
  readonly streamId: string;
  readonly #o: LiveStreamOptions;
  readonly #id: Buffer;
  readonly #maxBuffered: number;
  readonly #clock: Clock;
  readonly #statsIntervalMs: number;
  #tail: PcapTail | undefined;
  /** Ring: the number of the file being read. */
  #ringIndex = 0;
  /** Ring: the next file, seen to exist; the current one is read once more before moving. */
  #nextFile: { index: number; path: string } | undefined;
  #headerSent = false;
  /** The next look for the capture's file is the stream's first. */
  #firstLook = true;
  #packets = 0;
  #dropped = 0;
  #inFlight = 0;
  /** Largest lag of a record sent since the last stats. */
  #lagMs = 0;
  #captureEnded = false;
  #done = false;
  #timer: unknown;
  #stats: unknown;

  constructor(options: LiveStreamOptions) {
    this.#o = options;
    this.streamId = options.streamId;
    this.#id = Buffer.from(options.streamId, 'latin1');
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
    this.#clock = options.clock ?? systemClock;
    this.#statsIntervalMs = options.statsIntervalMs ?? 1000;
    this.#scheduleStats();
    void options.captureEnded.then(
      () => this.#onCaptureEnded(),
      () => this.#onCaptureEnded(),
    );
    this.#schedule(0);
  }

  get packets(): number {
    return this.#packets;
  }

  get dropped(): number {
    return this.#dropped;
  }

  /** The server's `streamStop`: ends at once, with the counts so far. */
  stop(): void {
    void this.#end();
  }

  /** The channel is gone: ends without a word (nobody would hear it). */
  abandon(): void {
    void this.#end({ silent: true });
  }

  #onCaptureEnded(): void {
    this.#captureEnded = true;
    // Read what is left at once rather than at the next poll.
    if (!this.#done && this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#schedule(0);
    }
  }

  /** `streamStats` every statsIntervalMs while the stream runs. */
  #scheduleStats(): void {
    this.#stats = this.#clock.setTimeout(() => {
      if (this.#done) return;
      this.#sendStats();
      this.#scheduleStats();
    }, this.#statsIntervalMs);
  }

  #schedule(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#pump().then(
        () => {
          if (!this.#done) this.#schedule(this.#o.pollMs ?? 50);
        },
        (err: unknown) => {
          // A read cut short by the stream's own end is no failure.
          if (this.#done) return;
          this.#o.log('warn', 'live stream failed', { streamId: this.streamId, error: err });
          void this.#end({ error: toChannelError(err, 'LocalFileFailed') });
        },
      );
    }, ms);
  }

  /** Sends what is new; once the capture has ended, what is left, and then the end. */
  async #pump(): Promise<void> {
    // Taken before reading: if the capture had ended by now, this read sees the final files.
    const ended = this.#captureEnded;
    if (this.#done) return;
    if (this.#tail === undefined && !(await this.#openFirst())) {
      if (ended) await this.#end();
      return;
    }
    for (;;) {
      if (this.#done) return;
      const current = this.#tail!;
      if (this.#inFlight > this.#maxBuffered) {
        // The viewer's side is behind: jump to the newest data, counting what is passed over.
        this.#dropped += await current.skip();
        if (await this.#advanceRing()) continue;
        break;
      }
      const batch = await current.read(MAX_FRAME_DATA, BINARY_FRAME_ID_LENGTH);
      if (batch !== undefined) {
        this.#sendRecords(batch);
        continue;
      }
      if (!(await this.#advanceRing())) break;
    }
    if (ended) await this.#end();
  }

  /**
   * Opens where the stream begins. What the capture held at the stream's first look was there
   * before the viewer: the stream begins after it (in the newest ring file). If the capture held
   * nothing then, it begins at the first record (in the oldest ring file). False while there is
   * nothing to open yet.
   */
  async #openFirst(): Promise<boolean> {
    const fromNow = this.#firstLook;
    this.#firstLook = false;
    const source = this.#o.source();
    if (source === undefined) return false;
    let filePath: string;
    if (source.kind === 'file') {
      filePath = source.path;
    } else {
      const files = await ringFiles(source.stem);
      const first = fromNow ? files.at(-1) : files[0];
      if (first === undefined) return false;
      this.#ringIndex = first.index;
      filePath = first.path;
    }
    const tail = await this.#open(filePath, source.kind === 'file' ? source.maxBytes : undefined);
    if (tail === undefined) return false;
    const header = await tail.readHeader().catch(async (err: unknown) => {
      await tail.close();
      throw err;
    });
    if (header === undefined) {
      await tail.close();
      return false;
    }
    if (fromNow) await tail.skip();
    if (this.#done) {
      await tail.close();
      return false;
    }
    this.#tail = tail;
    this.#sendFrame(header);
    this.#headerSent = true;
    return true;
  }

  /**
   * Ring: moves to the next file once the current one is complete. A ring closes a file before
   * it creates the next, so once the next exists the current one is read once more, to its
   * end, and left. True when there is another file to read now.
   */
  async #advanceRing(): Promise<boolean> {
    const source = this.#o.source();
    if (source?.kind !== 'ring') return false;
    if (this.#nextFile === undefined) {
      this.#nextFile = await this.#findNext(source.stem);
      // Read the current file to its end once more before leaving it.
      return this.#nextFile !== undefined;
    }
    const next = this.#nextFile;
    const tail = await this.#open(next.path);
    if (tail === undefined) {
      // Deleted by the ring before the stream got there: on to whatever follows it.
      this.#ringIndex = next.index;
      this.#nextFile = await this.#findNext(source.stem);
      this.#o.log('debug', 'live stream passed a ring file that was already deleted', {
        streamId: this.streamId,
        file: next.path,
      });
      return this.#nextFile !== undefined;
    }
    if ((await tail.readHeader()) === undefined) {
      // Created, its header not yet written: the next poll comes back for it.
      await tail.close();
      return false;
    }
    await this.#tail?.close();
    this.#tail = tail;
    this.#ringIndex = next.index;
    this.#nextFile = undefined;
    return true;
  }

  /** Opens a file of the capture, undefined while it is not there. */
  async #open(filePath: string, limit?: number): Promise<PcapTail | undefined> {
    const root = this.#o.captureRoot;
    try {
      return await PcapTail.open(filePath, limit, root === undefined ? [] : [root]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** The ring file after the current one, if it exists (the first one still there). */
  async #findNext(stem: string): Promise<{ index: number; path: string } | undefined> {
    const nextPath = ringFileName(stem, this.#ringIndex + 1);
    if (await exists(nextPath)) return { index: this.#ringIndex + 1, path: nextPath };
    // Only if the current file is gone from the ring can a later one exist without the next.
    if (await exists(ringFileName(stem, this.#ringIndex))) return undefined;
    const later = (await ringFiles(stem)).filter((f) => f.index > this.#ringIndex);
    return later[0];
  }

  #sendRecords(batch: RecordBatch): void {
    this.#id.copy(batch.data, 0);
    this.#packets += batch.records;
    this.#lagMs = Math.max(this.#lagMs, Math.round(this.#clock.now() - batch.firstMs));
    this.#sendPrefixed(batch.data);
  }

  /** Sends `data` (no prefix yet) as one frame. */
  #sendFrame(data: Buffer): void {
    const frame = Buffer.allocUnsafe(BINARY_FRAME_ID_LENGTH + data.length);
    this.#id.copy(frame, 0);
    data.copy(frame, BINARY_FRAME_ID_LENGTH);
    this.#sendPrefixed(frame);
  }

  #sendPrefixed(frame: Buffer): void {
    this.#inFlight += frame.length;
    void this.#o.sendBinary(frame).then((sent) => {
      this.#inFlight -= frame.length;
      if (!sent) this.abandon();
    });
  }

  #sendStats(): void {
    if (this.#done) return;
    this.#o.send({
      type: 'streamStats',
      streamId: this.streamId,
      packets: this.#packets,
      dropped: this.#dropped,
      lagMs: Math.max(0, this.#lagMs),
    });
    this.#lagMs = 0;
  }

  async #end(how: { error?: ChannelError; silent?: boolean } = {}): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#clock.clearTimeout(this.#timer);
    this.#clock.clearTimeout(this.#stats);
    await this.#tail?.close().catch(() => undefined);
    this.#tail = undefined;
    if (!how.silent) {
      this.#o.send({
        type: 'streamEnd',
        streamId: this.streamId,
        packets: this.#packets,
        dropped: this.#dropped,
        ...(how.error === undefined ? {} : { error: how.error }),
      });
    }
    this.#o.log('info', 'live stream ended', {
      streamId: this.streamId,
      packets: this.#packets,
      dropped: this.#dropped,
      headerSent: this.#headerSent,
      ...(how.error === undefined ? {} : { error: how.error }),
    });
    this.#o.onClosed?.();
  }
}

/** Starts a stream; it runs until the capture ends, `stop()` or `abandon()`. */
export function startLiveStream(options: LiveStreamOptions): LiveStream {
  return new LiveStream(options);
}

/** The ring's files that exist, by number. */
async function ringFiles(stem: string): Promise<{ index: number; path: string }[]> {
  const ext = path.extname(stem);
  return (await existingRingFiles(stem))
    .map((file) => ({
      index: Number(path.basename(file, ext).slice(path.basename(stem, ext).length + 1)),
      path: file,
    }))
    .filter((f) => Number.isSafeInteger(f.index) && f.index > 0)
    .sort((x, y) => x.index - y.index);
}
