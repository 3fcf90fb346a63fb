/**
 * The inputs of `mergePcapStreams` (merge-streams.ts) as the merge reads them: each a stream
 * (or a ring's files in order) parsed in place a packet at a time, and the heap that orders
 * them by their current packet.
 */
import { WirewatchError } from '../model/errors.js';
import { createCaptureParser, type CaptureParser } from './capture-file.js';
import { PacketSlot } from './frame-splitter.js';
import type { PcapStreamInput } from './merge-streams.js';
import type { CaptureInterface, PacketView } from './types.js';

const NS_PER_SECOND = 1_000_000_000;
const MAX_UINT32 = 0xffffffff;

/** Where an input's interfaces are described: the merge's output. */
export interface InterfaceSink {
  /** Makes `iface` of `source` an interface of the output; returns its id there. */
  add(source: StreamSource, local: number, iface: CaptureInterface): number;
}

/**
 * An input being parsed: its interfaces, then its packets one at a time, each read in place
 * in the chunk that holds it ({@link packet}) with its timestamp as the merge orders it.
 */
export class StreamSource {
  readonly name: string;
  readonly interfaceName: string;
  /** Position of the input in the list: breaks ties, so equal timestamps keep input order. */
  readonly index: number;
  /** The files still to read, after the one being read. */
  readonly #files: (() => AsyncIterable<Buffer>)[];
  #stream: AsyncIterable<Buffer> | undefined;
  #parser: CaptureParser = createCaptureParser();
  /** The input's interfaces, over all its files. */
  readonly #interfaces: CaptureInterface[] = [];
  /** This input's interface for each interface of the file being read. */
  #fileInterfaces: number[] = [];
  /** The output's id of each of this input's interfaces, once described there. */
  readonly #outputIds: number[] = [];
  /** Nanoseconds per unit of each interface's `tsFrac`. */
  readonly #nsPerFraction: number[] = [];
  #iterator: AsyncIterator<Buffer> | undefined;
  /** The parser's packet view, the same object for every packet of a file. */
  #view: PacketView | undefined;
  /** {@link open} stepped to the first packet already. */
  #held = false;
  #done = false;
  /** The packet {@link step} stepped to, in place. */
  packet: PacketView = new PacketSlot();
  /** The input's interface of {@link packet}. */
  interface = 0;
  /** {@link packet}'s seconds, plus any whole seconds its fraction held. */
  tsSec = 0;
  /** Nanoseconds within the second of {@link packet}, whatever the input's precision. */
  fracNs = 0;

  constructor(input: PcapStreamInput, index: number) {
    this.name = input.name;
    this.interfaceName = input.interfaceName ?? input.name;
    this.index = index;
    this.#files = 'stream' in input ? [] : [...input.files];
    this.#stream = 'stream' in input ? input.stream : this.#files.shift()?.();
  }

  get interfaces(): readonly CaptureInterface[] {
    return this.#interfaces;
  }

  /** Reads until the first interface is described (a pcap file header is whole). */
  async open(): Promise<void> {
    this.#iterator = this.#stream?.[Symbol.asyncIterator]();
    for (;;) {
      this.#held = this.step();
      this.#mapInterfaces();
      if (this.#held || this.#interfaces.length > 0) return;
      if (!(await this.#pull())) {
        // A pcapng section without interfaces has no packets either: nothing to merge.
        if (this.#parser.format === 'pcapng' || this.#stream === undefined) return;
        throw new WirewatchError(
          'InvalidPcap',
          `${this.name}: the stream ended before a whole pcap file header`,
          { target: this.name },
        );
      }
    }
  }

  /** Describes every interface known so far to `sink`, in order. */
  describeAll(sink: InterfaceSink): void {
    for (let i = 0; i < this.#interfaces.length; i++) this.describe(i, sink);
  }

  /** The output's id of interface `local`, describing it to `sink` the first time. */
  describe(local: number, sink: InterfaceSink): number {
    return (this.#outputIds[local] ??= sink.add(this, local, this.#interfaces[local]!));
  }

  /** Steps to the first packet: false when there is none. */
  async first(beforeWait: () => Promise<void>): Promise<boolean> {
    if (this.#held) return true;
    return this.step() || (await this.refill(beforeWait));
  }

  /** Steps to the next packet of what has been read; false when more must be read. */
  step(): boolean {
    let stepped: boolean;
    try {
      stepped = this.#parser.next();
    } catch (error) {
      throw this.#named(error);
    }
    if (!stepped) return false;
    const packet = (this.#view ??= this.#parser.packet!);
    if (packet.interfaceId >= this.#fileInterfaces.length) this.#mapInterfaces();
    const local = this.#fileInterfaces[packet.interfaceId]!;
    this.packet = packet;
    this.interface = local;
    // Fractions of a second beyond 1 s (files from the wild) are carried into the seconds.
    const ns = packet.tsFrac * this.#nsPerFraction[local]!;
    this.tsSec = ns < NS_PER_SECOND ? packet.tsSec : packet.tsSec + Math.floor(ns / NS_PER_SECOND);
    if (this.tsSec > MAX_UINT32) this.tsSec = MAX_UINT32;
    this.fracNs = ns % NS_PER_SECOND;
    return true;
  }

  /**
   * Reads on until the next packet; false at the end of the input.
   *
   * @param beforeWait - awaited before reading more of the stream, which may wait.
   */
  async refill(beforeWait: () => Promise<void>): Promise<boolean> {
    for (;;) {
      await beforeWait();
      if (!(await this.#pull())) return false;
      if (this.step()) return true;
    }
  }

  /** Reads the next chunk, going on to the next file at the end of one; false at the end. */
  async #pull(): Promise<boolean> {
    if (this.#done || this.#iterator === undefined) return false;
    const chunk = await this.#iterator.next();
    if (chunk.done === true) {
      this.#parser.end();
      const nextFile = this.#files.shift();
      if (nextFile === undefined) {
        this.#done = true;
        return false;
      }
      this.#stream = nextFile();
      this.#iterator = this.#stream[Symbol.asyncIterator]();
      this.#parser = createCaptureParser();
      this.#view = undefined;
      this.#fileInterfaces = [];
      return true;
    }
    try {
      this.#parser.feed(chunk.value);
    } catch (error) {
      throw this.#named(error);
    }
    return true;
  }

  /** An InvalidPcap error of the parser, named after this input. */
  #named(error: unknown): unknown {
    if (error instanceof WirewatchError && error.code === 'InvalidPcap') {
      return new WirewatchError('InvalidPcap', `${this.name}: ${error.message}`, {
        target: this.name,
        cause: error,
      });
    }
    return error;
  }

  /** Maps the file's new interfaces onto the input's: the same position if alike, else new. */
  #mapInterfaces(): void {
    const fileInterfaces = this.#parser.interfaces;
    for (let i = this.#fileInterfaces.length; i < fileInterfaces.length; i++) {
      const iface = fileInterfaces[i]!;
      const same = this.#interfaces[i];
      const alike =
        same !== undefined &&
        same.linkType === iface.linkType &&
        same.snaplen === iface.snaplen &&
        same.precision === iface.precision &&
        !this.#fileInterfaces.includes(i);
      if (alike) this.#fileInterfaces.push(i);
      else {
        this.#fileInterfaces.push(this.#interfaces.push(iface) - 1);
        this.#nsPerFraction.push(iface.precision === 'nano' ? 1 : 1000);
      }
    }
  }

  /** Leaves the stream (a Readable is destroyed), also one the merge never got to read. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    if (this.#iterator === undefined) {
      // An iterator's return() does nothing before its first next(): destroy a stream as such.
      (this.#stream as { destroy?: () => void } | undefined)?.destroy?.();
      return;
    }
    await this.#iterator.return?.();
  }
}

/** Whether `a`'s packet goes before `b`'s: by timestamp, then by input. */
function before(a: StreamSource, b: StreamSource): boolean {
  if (a.tsSec !== b.tsSec) return a.tsSec < b.tsSec;
  if (a.fracNs !== b.fracNs) return a.fracNs < b.fracNs;
  return a.index < b.index;
}

/** A binary min-heap of the inputs by their current packet, ordered by {@link before}. */
export class SourceHeap {
  readonly #items: StreamSource[] = [];

  /** The input whose packet goes next. */
  get top(): StreamSource | undefined {
    return this.#items[0];
  }

  push(source: StreamSource): void {
    const items = this.#items;
    let i = items.push(source) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      if (!before(source, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = source;
  }

  /** The top input stepped to its next packet: puts it back in order. */
  siftTop(): void {
    const top = this.#items[0];
    if (top !== undefined) this.#siftDown(top);
  }

  /** The top input ended: removes it. */
  popTop(): void {
    const last = this.#items.pop();
    if (last !== undefined && this.#items.length > 0) this.#siftDown(last);
  }

  /** Places `item` at the root and sifts it down to its place. */
  #siftDown(item: StreamSource): void {
    const items = this.#items;
    const length = items.length;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && before(items[right]!, items[left]!) ? right : left;
      const c = items[child]!;
      if (!before(c, item)) break;
      items[i] = c;
      i = child;
    }
    items[i] = item;
  }
}
