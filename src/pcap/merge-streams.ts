/**
 * Merging pcap byte streams by timestamp: the k-way merge of {@link mergePcaps} for inputs that
 * are not local files (a download merges a ring's files as they come from blob storage or from
 * an agent). Each input is parsed incrementally and holds one pending record at a time, so memory
 * is bounded by the inputs' own buffering, not by their size.
 */
import type { Writable } from 'node:stream';
import { WirewatchError } from '../model/errors.js';
import type { MergePcapsOptions, MergePcapsResult } from './merge.js';
import { createPcapParser, type PcapParser } from './reader.js';
import type { PcapFileHeader, PcapRecord, TimestampPrecision } from './types.js';
import { createPcapWriter } from './writer.js';

/** One input of {@link mergePcapStreams}. */
export interface PcapStreamInput {
  /** Names the input in errors (an error's `target`). */
  readonly name: string;
  /**
   * The pcap file's bytes, in chunks of any size. Read once. When the merge fails it is left
   * (its iterator's `return`), or destroyed if it has a `destroy` and was never read.
   */
  readonly stream: AsyncIterable<Buffer>;
}

/** Options of {@link mergePcapStreams}. */
export interface MergePcapStreamsOptions extends MergePcapsOptions {
  /**
   * On failure, destroy `output` without the error (its writer learns of the failure from the
   * rejected promise alone and need not listen for `error`).
   */
  readonly destroyQuietly?: boolean;
}

const NS_PER_SECOND = 1_000_000_000;
const MAX_UINT32 = 0xffffffff;

/**
 * Merges pcap streams into one pcap stream ordered by timestamp, exactly as {@link mergePcaps}
 * merges files (same ordering, tie-breaking, precision and snaplen rules, same output bytes).
 * An incomplete record at the end of an input is skipped, as a reader of that file would.
 * `output` is ended when the merge is done and destroyed with the error if it fails, so that
 * whoever reads it learns why (it needs an `error` listener, as a piped stream has).
 *
 * @throws WirewatchError `InvalidPcap` if `inputs` is empty, if the inputs do not all have the
 *   same link type (target: the first input that differs), or if an input is not a valid pcap
 *   stream (target: its name); an input stream's own error as it is.
 */
export async function mergePcapStreams(
  inputs: readonly PcapStreamInput[],
  output: Writable,
  options: MergePcapStreamsOptions = {},
): Promise<MergePcapsResult> {
  const { signal } = options;
  const sources = inputs.map((input) => new StreamSource(input));
  try {
    signal?.throwIfAborted();
    if (sources.length === 0) {
      throw new WirewatchError('InvalidPcap', 'there are no pcap streams to merge', {
        target: 'inputs',
      });
    }
    const headers: PcapFileHeader[] = [];
    for (const source of sources) headers.push(await source.open());
    const first = headers[0]!;
    for (const [i, header] of headers.entries()) {
      if (header.linkType !== first.linkType) {
        const name = sources[i]!.name;
        throw new WirewatchError(
          'InvalidPcap',
          `${name} has link type ${header.linkType}, but ${sources[0]!.name} has link type ${first.linkType}; only files of one link type can be merged`,
          { target: name },
        );
      }
    }
    const precision: TimestampPrecision = headers.some((h) => h.precision === 'nano')
      ? 'nano'
      : 'micro';
    const snaplen = Math.max(1, ...headers.map((h) => h.snaplen));
    const writer = createPcapWriter(output, { linkType: first.linkType, snaplen, precision });
    const toNs = headers.map((h) => (h.precision === 'nano' ? 1 : 1000));

    const heap = new HeadHeap();
    const advance = async (input: number): Promise<void> => {
      const record = await sources[input]!.next();
      if (record === undefined) return;
      // Fractions of a second beyond 1 s (files from the wild) are carried into the seconds.
      const ns = record.tsFrac * toNs[input]!;
      const tsSec = Math.min(record.tsSec + Math.floor(ns / NS_PER_SECOND), MAX_UINT32);
      heap.push({ record, tsSec, fracNs: ns % NS_PER_SECOND, input });
    };
    for (let i = 0; i < sources.length; i++) await advance(i);

    let records = 0;
    for (let head = heap.pop(); head !== undefined; head = heap.pop()) {
      signal?.throwIfAborted();
      await writer.write({
        tsSec: head.tsSec,
        tsFrac: precision === 'nano' ? head.fracNs : head.fracNs / 1000,
        originalLength: head.record.originalLength,
        data: head.record.data,
      });
      records++;
      await advance(head.input);
    }
    await writer.close();
    return { records, precision };
  } catch (error) {
    if (options.destroyQuietly) output.destroy();
    else output.destroy(error instanceof Error ? error : new Error(String(error)));
    throw error;
  } finally {
    await Promise.allSettled(sources.map((s) => s.close()));
  }
}

/** An input being parsed: its header, then its records one at a time. */
class StreamSource {
  readonly name: string;
  readonly #stream: AsyncIterable<Buffer>;
  readonly #parser: PcapParser = createPcapParser();
  #iterator: AsyncIterator<Buffer> | undefined;
  #parsed: PcapRecord[] = [];
  #position = 0;
  #done = false;

  constructor(input: PcapStreamInput) {
    this.name = input.name;
    this.#stream = input.stream;
  }

  /** Reads until the file header is complete. */
  async open(): Promise<PcapFileHeader> {
    this.#iterator = this.#stream[Symbol.asyncIterator]();
    while (this.#parser.header === undefined) {
      if (!(await this.#pull())) {
        throw new WirewatchError(
          'InvalidPcap',
          `${this.name}: the stream ended before a whole pcap file header`,
          { target: this.name },
        );
      }
    }
    return this.#parser.header;
  }

  async next(): Promise<PcapRecord | undefined> {
    while (this.#position >= this.#parsed.length) {
      if (!(await this.#pull())) return undefined;
    }
    return this.#parsed[this.#position++];
  }

  /** Parses the next chunk; false at the end of the stream. */
  async #pull(): Promise<boolean> {
    if (this.#done) return false;
    const chunk = await this.#iterator!.next();
    if (chunk.done === true) {
      this.#done = true;
      this.#parser.end();
      return false;
    }
    try {
      this.#parsed = this.#parser.push(chunk.value);
    } catch (error) {
      if (error instanceof WirewatchError && error.code === 'InvalidPcap') {
        throw new WirewatchError('InvalidPcap', `${this.name}: ${error.message}`, {
          target: this.name,
          cause: error,
        });
      }
      throw error;
    }
    this.#position = 0;
    return true;
  }

  /** Leaves the stream (a Readable is destroyed), also one the merge never got to read. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    if (this.#iterator === undefined) {
      // An iterator's return() does nothing before its first next(): destroy a stream as such.
      (this.#stream as { destroy?: () => void }).destroy?.();
      return;
    }
    await this.#iterator.return?.();
  }
}

interface Head {
  readonly record: PcapRecord;
  /** The record's seconds, plus any whole seconds its fraction held. */
  readonly tsSec: number;
  /** Nanoseconds within the second, whatever the input's precision. */
  readonly fracNs: number;
  /** Position of the input in the list: breaks ties, so equal timestamps keep input order. */
  readonly input: number;
}

function before(a: Head, b: Head): boolean {
  if (a.tsSec !== b.tsSec) return a.tsSec < b.tsSec;
  if (a.fracNs !== b.fracNs) return a.fracNs < b.fracNs;
  return a.input < b.input;
}

/** A binary min-heap of input heads, ordered by {@link before}. */
class HeadHeap {
  readonly #items: Head[] = [];

  push(head: Head): void {
    const items = this.#items;
    let i = items.push(head) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (!before(head, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = head;
  }

  pop(): Head | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && before(items[right]!, items[left]!) ? right : left;
      const c = items[child]!;
      if (!before(c, last)) break;
      items[i] = c;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
