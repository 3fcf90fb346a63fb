/**
 * Cutting a byte stream that comes in chunks of any size into whole frames — a pcap file
 * header or record, a pcapng block — in place: a frame inside one chunk is handed out as a
 * range of that chunk, with no copy and no allocation; only a frame split across chunks is
 * joined, and then only its own bytes. The pcap and pcapng parsers both step through their
 * input with it, so the merge can read each packet where it lies.
 */
import type { CapturePacket, PacketView } from './types.js';

/**
 * The length of the frame at `pos` of `buf`, from its first {@link FrameSplitter.headerLength}
 * bytes (which are there). Called again for the same frame when it is not whole yet, so it must
 * have no side effects; it throws for a length that says the input is corrupt.
 */
export type FrameLength = (buf: Buffer, pos: number) => number;

const EMPTY = Buffer.alloc(0);

/** The {@link PacketView} a parser fills in for each packet it steps to. */
export class PacketSlot implements PacketView {
  data: Buffer = EMPTY;
  dataStart = 0;
  capturedLength = 0;
  originalLength = 0;
  tsSec = 0;
  tsFrac = 0;
  interfaceId = 0;
}

/** The packet `view` describes as a record of its own (its data not copied), to keep. */
export function packetOf(view: PacketView): CapturePacket {
  const { dataStart, capturedLength } = view;
  return {
    interfaceId: view.interfaceId,
    tsSec: view.tsSec,
    tsFrac: view.tsFrac,
    capturedLength,
    originalLength: view.originalLength,
    data: view.data.subarray(dataStart, dataStart + capturedLength),
  };
}

/**
 * Steps over whole frames of the chunks fed to it.
 *
 * ```ts
 * splitter.feed(chunk);
 * while (splitter.next()) use(splitter.buf.subarray(splitter.start, splitter.end));
 * ```
 */
export class FrameSplitter {
  /** The buffer holding the frame {@link next} stepped to: `buf[start, end)`. */
  buf: Buffer = EMPTY;
  start = 0;
  end = 0;
  /** Bytes a frame needs before {@link FrameLength} can say its length. */
  headerLength: number;
  readonly #frameLength: FrameLength;
  #chunk: Buffer = EMPTY;
  /** Where the next frame starts in `#chunk`. */
  #pos = 0;
  /** The head of a frame split across chunks, before `#chunk`. */
  #pending: Buffer[] = [];
  #pendingLength = 0;

  constructor(headerLength: number, frameLength: FrameLength) {
    this.headerLength = headerLength;
    this.#frameLength = frameLength;
  }

  /** Bytes fed and not yet stepped over: an incomplete frame, at the end of the input. */
  get remaining(): number {
    return this.#pendingLength + this.#chunk.length - this.#pos;
  }

  /**
   * Takes the next chunk; what the last one left (the head of a frame) is kept before it.
   * Frames handed out before stay valid: a chunk's memory must not be reused after feeding it.
   */
  feed(chunk: Buffer): void {
    this.#carry();
    this.#chunk = chunk;
    this.#pos = 0;
  }

  /** Steps to the next whole frame; false, staying where it is, when more bytes are needed. */
  next(): boolean {
    if (this.#pendingLength > 0) return this.#nextJoined();
    const chunk = this.#chunk;
    const pos = this.#pos;
    const available = chunk.length - pos;
    if (available < this.headerLength) return false;
    const length = this.#frameLength(chunk, pos);
    if (length > available) return false;
    this.buf = chunk;
    this.start = pos;
    this.end = this.#pos = pos + length;
    return true;
  }

  /** Forgets what was fed (after a failure). */
  clear(): void {
    this.#pending = [];
    this.#pendingLength = 0;
    this.#chunk = EMPTY;
    this.#pos = 0;
  }

  /** A frame begun in earlier chunks: joins its bytes, and just those, into one buffer. */
  #nextJoined(): boolean {
    const available = this.remaining;
    if (available < this.headerLength) return false;
    let frame = this.#gather(this.headerLength);
    const length = this.#frameLength(frame, 0);
    if (length > available) return false;
    if (length > frame.length) frame = this.#gather(length);
    this.#pos += length - this.#pendingLength;
    this.#pending = [];
    this.#pendingLength = 0;
    this.buf = frame;
    this.start = 0;
    this.end = length;
    return true;
  }

  /** The first `n` bytes not yet stepped over, as one buffer. */
  #gather(n: number): Buffer {
    const parts = [
      ...this.#pending,
      this.#chunk.subarray(this.#pos, this.#pos + n - this.#pendingLength),
    ];
    return Buffer.concat(parts, n);
  }

  /** Keeps the rest of the current chunk as the head of the next frame. */
  #carry(): void {
    const rest = this.#chunk.length - this.#pos;
    if (rest > 0) {
      this.#pending.push(this.#pos === 0 ? this.#chunk : this.#chunk.subarray(this.#pos));
      this.#pendingLength += rest;
    }
    this.#chunk = EMPTY;
    this.#pos = 0;
  }
}
