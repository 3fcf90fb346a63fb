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
import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { existingRingFiles, ringFileName } from '../capture/ring-buffer.js';
import { MAX_SNAPLEN } from '../capture/tcpdump.js';
import type { AgentMessage, ChannelError, ServerMessage } from '../model/channel.js';
import { BINARY_FRAME_ID_LENGTH, toChannelError } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import {
  FILE_HEADER_LENGTH,
  fractionsPerSecond,
  parseFileHeader,
  RECORD_HEADER_LENGTH,
} from '../pcap/format.js';
import { PcapRecordWalker } from '../pcap/record-walker.js';
import type { ByteOrder, TimestampPrecision } from '../pcap/types.js';
import type { AgentLog } from './agent-log.js';
import type { JournalEntry } from './journal.js';

/** Bytes of the ASCII stream id that starts every binary frame. */
/** Largest data part of one frame (a single larger record still goes whole, alone). */
export const MAX_FRAME_DATA = 256 * 1024;
/** How much a skip reads at a time while it walks record headers. */
const SKIP_CHUNK = 1024 * 1024;
/**
 * The largest record a capture can hold: tcpdump's largest snaplen. A larger length in a record
 * header means the file is not what the stream thinks it is.
 */
const MAX_RECORD_DATA = MAX_SNAPLEN;

/** Where a stream reads: one file, or a ring of files `stem_N`. */
export type StreamSource =
  | {
      readonly kind: 'file';
      readonly path: string;
      /** Bytes of the file that may hold records (the session's byte limit). */
      readonly maxBytes?: number;
    }
  | { readonly kind: 'ring'; readonly stem: string };

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
   * Opens a capture file for tailing: a regular file, not through a symbolic link.
   * `limit`: bytes past it are never read (a single file cut at the session's byte limit).
   */
  static async open(filePath: string, limit = Number.MAX_SAFE_INTEGER): Promise<PcapTail> {
    const file = await open(
      filePath,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
    try {
      if (!(await file.stat()).isFile()) {
        throw new WirewatchError('InvalidCapturePath', `${filePath} is not a regular file`);
      }
    } catch (err) {
      await file.close();
      throw err;
    }
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
          firstMs: this.#timeMs(data, 0),
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

  #timeMs(buf: Buffer, offset: number): number {
    const le = this.#byteOrder === 'LE';
    const sec = le ? buf.readUInt32LE(offset) : buf.readUInt32BE(offset);
    const frac = le ? buf.readUInt32LE(offset + 4) : buf.readUInt32BE(offset + 4);
    return sec * 1000 + (frac * 1000) / fractionsPerSecond(this.#precision);
  }
}

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
  readonly now?: () => number;
}

const DEFAULT_MAX_BUFFERED = 2 * 1024 * 1024;

/** One viewer's stream of one session. Started by {@link startLiveStream}. */
export class LiveStream {
  readonly streamId: string;
  readonly #o: LiveStreamOptions;
  readonly #id: Buffer;
  readonly #maxBuffered: number;
  readonly #now: () => number;
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
  #timer: NodeJS.Timeout | undefined;
  readonly #stats: NodeJS.Timeout;

  constructor(options: LiveStreamOptions) {
    this.#o = options;
    this.streamId = options.streamId;
    this.#id = Buffer.from(options.streamId, 'latin1');
    this.#maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
    this.#now = options.now ?? Date.now;
    this.#stats = setInterval(() => this.#sendStats(), options.statsIntervalMs ?? 1000);
    this.#stats.unref();
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
      clearTimeout(this.#timer);
      this.#schedule(0);
    }
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
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
    this.#timer.unref();
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
    const tail = await openIfThere(filePath, source.kind === 'file' ? source.maxBytes : undefined);
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
    const tail = await openIfThere(next.path);
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
    this.#lagMs = Math.max(this.#lagMs, Math.round(this.#now() - batch.firstMs));
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
    clearTimeout(this.#timer);
    clearInterval(this.#stats);
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

/** A running session as a stream needs it. */
export interface StreamedSession {
  /** The session's journal entry now (its capture path appears once the capture is prepared). */
  readonly entry: () => JournalEntry | undefined;
  /** Settles once the capture has ended and its files are final. */
  readonly finished: Promise<unknown>;
  /**
   * Holds the capture's output flushed for a live viewer (packets reach the file as they are
   * captured, not 4 KiB at a time) until the returned function is called.
   */
  readonly watch?: () => () => void;
}

export interface StreamRequestOptions {
  /** A session this agent runs now; undefined for one it does not know or that has ended. */
  readonly session: (sessionId: string) => StreamedSession | undefined;
  /** Every capture file lies under it; nothing else is streamed. */
  readonly captureRoot: string;
  readonly send: (message: AgentMessage) => void;
  readonly sendBinary: (frame: Buffer) => Promise<boolean>;
  /** Subscribes to the channel's disconnection; returns the unsubscribe function. */
  readonly onDisconnect: (listener: () => void) => () => void;
  readonly log: AgentLog;
}

type StreamRequest = Extract<ServerMessage, { type: 'streamStart' | 'streamStop' }>;

/** Streams per channel (so a stop finds its stream, and a disconnect ends them all). */
const streamsOf = new WeakMap<object, Map<string, LiveStream>>();

/**
 * Handles a `streamStart` (starts the stream; returns at once) or a `streamStop`. `channel` is
 * the agent's channel client, which the streams are kept with.
 */
export function handleStreamRequest(
  channel: object,
  message: StreamRequest,
  options: StreamRequestOptions,
): void {
  let streams = streamsOf.get(channel);
  if (streams === undefined) {
    const own = new Map<string, LiveStream>();
    streams = own;
    streamsOf.set(channel, own);
    options.onDisconnect(() => {
      for (const stream of [...own.values()]) stream.abandon();
    });
  }
  if (message.type === 'streamStop') {
    streams.get(message.streamId)?.stop();
    return;
  }
  const { streamId, sessionId } = message;
  if (streams.has(streamId)) return;
  const refuse = (error: ChannelError) => {
    options.log('info', 'live stream refused', { streamId, sessionId, error });
    options.send({ type: 'streamEnd', streamId, packets: 0, dropped: 0, error });
  };
  const session = options.session(sessionId);
  if (session === undefined) {
    refuse({
      code: 'CaptureNotRunning',
      message: `session ${sessionId} is not running on this agent`,
    });
    return;
  }
  const root = path.resolve(options.captureRoot);
  const own = streams;
  const unwatch = session.watch?.();
  own.set(
    streamId,
    startLiveStream({
      streamId,
      source: () => sourceOf(session.entry(), root),
      captureEnded: session.finished,
      send: options.send,
      sendBinary: options.sendBinary,
      log: options.log,
      onClosed: () => {
        own.delete(streamId);
        unwatch?.();
      },
    }),
  );
  options.log('info', 'live stream started', { streamId, sessionId });
}

/** Where a session's capture is written, if it is known and lies under the capture root. */
function sourceOf(entry: JournalEntry | undefined, root: string): StreamSource | undefined {
  const capturePath = entry?.capturePath;
  if (entry === undefined || capturePath === undefined) return undefined;
  const resolved = path.resolve(capturePath);
  const relative = path.relative(root, resolved);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    throw new WirewatchError('InvalidCapturePath', `${capturePath} is not under the capture root`);
  }
  if (entry.assignment.continuousCapture) return { kind: 'ring', stem: resolved };
  return { kind: 'file', path: resolved, maxBytes: entry.assignment.totalBytesPerSession };
}

async function openIfThere(filePath: string, limit?: number): Promise<PcapTail | undefined> {
  try {
    return await PcapTail.open(filePath, limit);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await stat(filePath);
    return true;
  } catch {
    return false;
  }
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
