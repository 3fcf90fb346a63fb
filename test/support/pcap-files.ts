/**
 * Small pcap files written by src/pcap's own writer, for the pcap and merge tests: each record's
 * data says where it came from ("<file>#<index>", padded to 60 bytes).
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { createPcapWriter } from '../../src/pcap/writer.js';
import type { ByteOrder, PcapRecord, TimestampPrecision } from '../../src/pcap/types.js';

export interface PcapFileSpec {
  readonly name: string;
  readonly precision: TimestampPrecision;
  readonly byteOrder?: ByteOrder;
  readonly snaplen?: number;
  readonly linkType?: number;
  /** [seconds, fraction in the file's precision] */
  readonly times: readonly (readonly [number, number])[];
}

/** A record's data: "<file>#<index>", padded to 60 bytes. */
export function label(name: string, index: number): Buffer {
  return Buffer.from(`${name}#${index}`.padEnd(60, '.'));
}

/** What {@link label} wrote into a record. */
export const labelOf = (r: Pick<PcapRecord, 'data'>): string =>
  r.data.toString().replace(/\.+$/, '');

/** Writes `{dir}/{spec.name}.pcap` as the spec says; returns its path. */
export async function writePcap(dir: string, spec: PcapFileSpec): Promise<string> {
  const file = join(dir, `${spec.name}.pcap`);
  const writer = createPcapWriter(createWriteStream(file), {
    linkType: spec.linkType ?? 1,
    snaplen: spec.snaplen ?? 65535,
    precision: spec.precision,
    byteOrder: spec.byteOrder ?? 'LE',
  });
  for (const [i, [tsSec, tsFrac]] of spec.times.entries()) {
    await writer.write({ tsSec, tsFrac, data: label(spec.name, i) });
  }
  await writer.close();
  return file;
}
