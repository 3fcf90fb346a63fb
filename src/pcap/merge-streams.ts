/**
 * Merging capture byte streams by timestamp: the k-way merge behind {@link mergePcaps}, for
 * inputs that are not local files too (a download merges a ring's files as they come from blob
 * storage or from an agent; a scale-set download merges one stream per instance). Each input is
 * pcap or pcapng, parsed incrementally, and holds one pending packet at a time, so memory is
 * bounded by the inputs' own buffering, not by their size or number.
 *
 * Two outputs (`format`):
 * - `'pcap'` (default): one classic pcap stream; every input interface must have the same link
 *   type.
 * - `'pcapng'`: one section with an IDB per input interface, in input order, named by the
 *   caller (`interfaceName`, e.g. `vmss1_0`), each with its input's link type, snaplen and
 *   timestamp resolution, so Wireshark's `frame.interface_name` says which input saw a packet.
 *
 * ```ts
 * await mergePcapStreams(
 *   instances.map((i) => ({ name: i.blobName, interfaceName: `${ss}_${i.id}`, stream: i.body })),
 *   response,
 *   { format: 'pcapng', signal },
 * );
 * ```
 *
 * An input that is a ring of several files is one input with `files`: one interface for all.
 */
import type { Writable } from 'node:stream';
import { WirewatchError } from '../model/errors.js';
import type { MergePcapsOptions, MergePcapsResult } from './merge.js';
import { PacketSlot } from './frame-splitter.js';
import { SourceHeap, StreamSource, type InterfaceSink } from './merge-source.js';
import { createPcapngWriter } from './pcapng-writer.js';
import type { CaptureInterface, TimestampPrecision } from './types.js';
import { createPcapWriter } from './writer.js';

/** One input of {@link mergePcapStreams}: one stream, or the files of a ring in order. */
export type PcapStreamInput = {
  /** Names the input in errors (an error's `target`). */
  readonly name: string;
  /**
   * The name of its interface in a pcapng output (`if_name`); default {@link name}. A pcapng
   * input's further interfaces are named `{interfaceName}/{their if_name or index}`.
   */
  readonly interfaceName?: string;
} & (
  | {
      /**
       * A pcap or pcapng file's bytes, in chunks of any size. Read once, one chunk ahead of the
       * merge at most. When the merge fails it is left (its iterator's `return`), or destroyed
       * if it has a `destroy` and was never read.
       */
      readonly stream: AsyncIterable<Buffer>;
    }
  | {
      /**
       * Several files read one after the other as one input (a ring's files, oldest first):
       * each is opened when the one before has ended. The interfaces of each file are those of
       * the first, by position, when their link type, snaplen and precision agree.
       */
      readonly files: readonly (() => AsyncIterable<Buffer>)[];
    }
);

/** The output of {@link mergePcapStreams}. */
export type MergeFormat = 'pcap' | 'pcapng';

/** Options of {@link mergePcapStreams}. */
export interface MergePcapStreamsOptions extends MergePcapsOptions {
  /** Default `'pcap'`. */
  readonly format?: MergeFormat;
  /**
   * On failure, destroy `output` without the error (its writer learns of the failure from the
   * rejected promise alone and need not listen for `error`).
   */
  readonly destroyQuietly?: boolean;
  /**
   * The error for a pcap output whose inputs differ in link type (default `InvalidPcap` naming
   * the input): a caller that chose the format says what to choose instead.
   */
  readonly linkTypeMismatch?: (mismatch: LinkTypeMismatch) => Error;
}

/** Two inputs of a pcap output with different link types. */
export interface LinkTypeMismatch {
  /** The input that differs, and its link type. */
  readonly input: string;
  readonly linkType: number;
  /** The first input, and its link type. */
  readonly first: string;
  readonly firstLinkType: number;
}

/**
 * Bytes to read an input in at a time, for a caller that can choose (a file's read stream, a
 * blob's or an agent's download): chunks of 16 KiB, an HTTP body's usual, cost a third more
 * CPU in reads and promises; larger ones than this save nothing more and hold more memory (the
 * merge holds about two chunks per input: the one it reads and the one read ahead).
 */
export const MERGE_CHUNK_BYTES = 64 * 1024;

/** Packets are gathered into writes of this size, and flushed whenever an input may wait. */
const BATCH_BYTES = 64 * 1024;

/**
 * Merges pcap or pcapng streams into one stream ordered by timestamp, exactly as
 * {@link mergePcaps} merges files (same ordering, tie-breaking, precision and snaplen rules,
 * same output bytes). Packets with equal timestamps come in the order of `inputs`; each input's
 * own order is kept. An incomplete record at the end of an input is skipped, as a reader of
 * that file would. `output` is ended when the merge is done and destroyed with the error if it
 * fails, so that whoever reads it learns why (it needs an `error` listener, as a piped stream
 * has).
 *
 * A pcap output has nanosecond precision if any input interface has it at the start
 * (microsecond timestamps are converted), microsecond otherwise; its snaplen is the largest of
 * the inputs'. A pcapng output keeps each interface's own.
 *
 * @throws WirewatchError `InvalidPcap` if `inputs` is empty, if a pcap output's inputs do not
 *   all have the same link type (target: the first input that differs; or the error of
 *   `linkTypeMismatch`), or if an input is not a valid pcap or pcapng stream (target: its
 *   name); an input stream's own error as it is.
 */
export async function mergePcapStreams(
  inputs: readonly PcapStreamInput[],
  output: Writable,
  options: MergePcapStreamsOptions = {},
): Promise<MergePcapsResult> {
  const { signal } = options;
  const sources = inputs.map((input, index) => new StreamSource(input, index));
  try {
    signal?.throwIfAborted();
    if (sources.length === 0) {
      throw new WirewatchError('InvalidPcap', 'there are no pcap streams to merge', {
        target: 'inputs',
      });
    }
    for (const source of sources) await source.open();
    const sink =
      options.format === 'pcapng'
        ? pcapngSink(output)
        : pcapSink(
            output,
            sources,
            sources.flatMap((s) => s.interfaces),
            options.linkTypeMismatch,
          );
    for (const source of sources) source.describeAll(sink);

    // What is gathered goes out before the merge may wait for an input (a live one).
    const flush = (): Promise<void> => sink.flush();
    const heap = new SourceHeap();
    for (const source of sources) if (await source.first(flush)) heap.push(source);

    // The hot loop: each packet is copied from its input's chunk into the output's batch, with
    // no object and no promise of its own unless an input or the output has to be waited for.
    const out = new PacketSlot();
    let records = 0;
    for (let source = heap.top; source !== undefined; source = heap.top) {
      signal?.throwIfAborted();
      const packet = source.packet;
      out.data = packet.data;
      out.dataStart = packet.dataStart;
      out.capturedLength = packet.capturedLength;
      out.originalLength = packet.originalLength;
      out.tsSec = source.tsSec;
      out.tsFrac = source.fracNs;
      out.interfaceId = source.describe(source.interface, sink);
      const full = sink.write(out);
      records++;
      if (full !== undefined) await full;
      if (source.step() || (await source.refill(flush))) heap.siftTop();
      else heap.popTop();
    }
    await sink.close();
    return { records, precision: sink.precision() };
  } catch (error) {
    // A failure before the writer took the output (which listens for its errors) must not be
    // an uncaught 'error' of an output nobody listens to: the rejection reports it.
    if (output.listenerCount('error') === 0) output.once('error', () => undefined);
    if (options.destroyQuietly) output.destroy();
    else output.destroy(error instanceof Error ? error : new Error(String(error)));
    throw error;
  } finally {
    await Promise.allSettled(sources.map((s) => s.close()));
  }
}

/** Where merged packets go: a pcap or a pcapng writer. */
interface MergeSink extends InterfaceSink {
  /**
   * Writes `packet`, whose `interfaceId` is the output's and whose `tsFrac` is in nanoseconds
   * (changed here to the interface's precision); undefined while the output has room.
   */
  write(packet: PacketSlot): Promise<void> | undefined;
  precision(): TimestampPrecision;
  /** Hands what is gathered to the output; resolves when the output has room again. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

function pcapSink(
  output: Writable,
  sources: readonly StreamSource[],
  known: readonly CaptureInterface[],
  mismatchError?: (mismatch: LinkTypeMismatch) => Error,
): MergeSink {
  const first = known[0];
  if (first === undefined) {
    throw new WirewatchError('InvalidPcap', 'the pcap streams to merge describe no interface', {
      target: sources[0]!.name,
    });
  }
  const firstName = sources.find((s) => s.interfaces.length > 0)!.name;
  const precision: TimestampPrecision = known.some((i) => i.precision === 'nano')
    ? 'nano'
    : 'micro';
  const nano = precision === 'nano';
  const snaplen = Math.max(1, ...known.map((i) => i.snaplen));
  const check = (source: StreamSource, iface: CaptureInterface): void => {
    if (iface.linkType === first.linkType) return;
    if (mismatchError !== undefined) {
      throw mismatchError({
        input: source.name,
        linkType: iface.linkType,
        first: firstName,
        firstLinkType: first.linkType,
      });
    }
    throw new WirewatchError(
      'InvalidPcap',
      `${source.name} has link type ${iface.linkType}, but ${firstName} has link type ${first.linkType}; only files of one link type can be merged`,
      { target: source.name },
    );
  };
  // Every interface known at the start is checked before the file header goes out.
  for (const source of sources) for (const iface of source.interfaces) check(source, iface);
  const writer = createPcapWriter(output, {
    linkType: first.linkType,
    snaplen,
    precision,
    batchBytes: BATCH_BYTES,
  });
  return {
    add(source, _local, iface) {
      check(source, iface);
      return 0;
    },
    write(packet) {
      if (!nano) packet.tsFrac = Math.floor(packet.tsFrac / 1000);
      return writer.writeView(packet);
    },
    precision: () => precision,
    flush: () => writer.flush(),
    close: () => writer.close(),
  };
}

function pcapngSink(output: Writable): MergeSink {
  const writer = createPcapngWriter(output, { batchBytes: BATCH_BYTES });
  /** Whether each output interface has nanosecond precision. */
  const nano: boolean[] = [];
  return {
    add(source, local, iface) {
      const base = source.interfaceName;
      nano.push(iface.precision === 'nano');
      return writer.addInterface({
        linkType: iface.linkType,
        snaplen: iface.snaplen,
        precision: iface.precision,
        name: local === 0 ? base : `${base}/${iface.name ?? local}`,
      });
    },
    write(packet) {
      if (nano[packet.interfaceId] !== true) packet.tsFrac = Math.floor(packet.tsFrac / 1000);
      return writer.writeView(packet);
    },
    precision: () => (nano.includes(true) ? 'nano' : 'micro'),
    flush: () => writer.flush(),
    close: () => writer.close(),
  };
}
