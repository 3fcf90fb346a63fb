/**
 * Merging pcap files by timestamp, as mergecap does: a k-way merge that holds one record per
 * input, so memory does not grow with the files.
 */
import type { Writable } from 'node:stream';
import { WirewatchError } from '../model/errors.js';
import { openPcapFile } from './reader.js';
import type { PcapFileReader } from './reader.js';
import { createPcapWriter } from './writer.js';
import type { PcapRecord, TimestampPrecision } from './types.js';

/** Options of {@link mergePcaps}. */
export interface MergePcapsOptions {
  /** Stops the merge; it then rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** What {@link mergePcaps} wrote. */
export interface MergePcapsResult {
  /** Records written. */
  readonly records: number;
  readonly precision: TimestampPrecision;
}

const NS_PER_SECOND = 1_000_000_000;
const MAX_UINT32 = 0xffffffff;

interface Head {
  readonly record: PcapRecord;
  /** The record's seconds, plus any whole seconds its fraction held. */
  readonly tsSec: number;
  /** Nanoseconds within the second, whatever the input's precision. */
  readonly fracNs: number;
  /** Position of the input in the list: breaks ties, so equal timestamps keep input order. */
  readonly input: number;
}

/**
 * Merges pcap files into one pcap stream ordered by timestamp. Records with equal timestamps
 * come in the order of `inputs`; each input's own order is kept (inputs are assumed sorted, as
 * captures are).
 *
 * The output has nanosecond precision if any input has it (microsecond timestamps are
 * converted), microsecond otherwise; its snaplen is the largest of the inputs'. Records
 * longer than that (which only a malformed input can hold) are cut to it. `output` is ended
 * when the merge is done and destroyed if it fails.
 *
 * @throws WirewatchError `InvalidPcap` if `inputs` is empty, if the inputs do not all have the
 *   same link type (target: the first file that differs), or if an input is not a valid pcap
 *   file (target: that file).
 */
export async function mergePcaps(
  inputs: readonly string[],
  output: Writable,
  options: MergePcapsOptions = {},
): Promise<MergePcapsResult> {
  const { signal } = options;
  const readers: PcapFileReader[] = [];
  const iterators: AsyncIterator<PcapRecord>[] = [];
  try {
    signal?.throwIfAborted();
    if (inputs.length === 0) {
      throw new WirewatchError('InvalidPcap', 'there are no pcap files to merge', {
        target: 'inputs',
      });
    }
    for (const path of inputs) readers.push(await openPcapFile(path));
    const first = readers[0];
    if (first === undefined) throw new Error('unreachable: inputs is not empty');
    const linkType = first.header.linkType;
    for (const reader of readers) {
      if (reader.header.linkType !== linkType) {
        throw new WirewatchError(
          'InvalidPcap',
          `${reader.path} has link type ${reader.header.linkType}, but ${first.path} has link type ${linkType}; only files of one link type can be merged`,
          { target: reader.path },
        );
      }
    }
    const precision: TimestampPrecision = readers.some((r) => r.header.precision === 'nano')
      ? 'nano'
      : 'micro';
    const snaplen = Math.max(1, ...readers.map((r) => r.header.snaplen));
    const writer = createPcapWriter(output, { linkType, snaplen, precision });

    // Multiplier from each input's fractions to nanoseconds.
    const toNs = readers.map((r) => (r.header.precision === 'nano' ? 1 : 1000));
    const heap = new HeadHeap();
    const advance = async (input: number): Promise<void> => {
      const iterator = iterators[input];
      const next = await iterator?.next();
      if (next === undefined || next.done === true) return;
      const record = next.value;
      // Files from the wild can hold fractions of a second beyond 1 s; carry them over so
      // that they sort right and fit the output's 32-bit fields.
      const ns = record.tsFrac * (toNs[input] ?? 1);
      const tsSec = Math.min(record.tsSec + Math.floor(ns / NS_PER_SECOND), MAX_UINT32);
      heap.push({ record, tsSec, fracNs: ns % NS_PER_SECOND, input });
    };
    for (const reader of readers) iterators.push(reader.records[Symbol.asyncIterator]());
    for (let i = 0; i < iterators.length; i++) await advance(i);

    let records = 0;
    for (let head = heap.pop(); head !== undefined; head = heap.pop()) {
      signal?.throwIfAborted();
      const { record } = head;
      await writer.write({
        tsSec: head.tsSec,
        tsFrac: precision === 'nano' ? head.fracNs : head.fracNs / 1000,
        originalLength: record.originalLength,
        data: record.data,
      });
      records++;
      await advance(head.input);
    }
    await writer.close();
    return { records, precision };
  } catch (error) {
    output.destroy();
    throw error;
  } finally {
    await Promise.allSettled(iterators.map(async (it) => it.return?.()));
    await Promise.allSettled(readers.map((r) => r.close()));
  }
}

function before(a: Head, b: Head): boolean {
  if (a.tsSec !== b.tsSec) return a.tsSec < b.tsSec;
  if (a.fracNs !== b.fracNs) return a.fracNs < b.fracNs;
  return a.input < b.input;
}

/** A binary min-heap of input heads, ordered by {@link before}. */
class HeadHeap {
  private readonly items: Head[] = [];

  push(head: Head): void {
    const items = this.items;
    let i = items.push(head) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as Head;
      if (!before(head, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = head;
  }

  pop(): Head | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      let child = left;
      if (right < items.length && before(items[right] as Head, items[left] as Head)) child = right;
      const c = items[child] as Head;
      if (!before(c, last)) break;
      items[i] = c;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
