/**
 * Hand-written pcap content for the agent's tests: a header, numbered records that tell which
 * they are by their time stamp and bytes (for live streams and their tail reader), and whole
 * files with an optional cut record (for recovery and uploads).
 */
import { encodeFileHeader } from '../../src/pcap/format.js';
import { encodeRecord } from '../../src/pcap/writer.js';

export const HEADER = encodeFileHeader({
  byteOrder: 'LE',
  precision: 'micro',
  versionMajor: 2,
  versionMinor: 4,
  snaplen: 262144,
  linkType: 1,
});

/** Record n: n bytes of n & 0xff (plus 20), stamped n seconds after 2026-01-01. */
export function record(n: number, size = 20 + n): Buffer {
  return encodeRecord(
    { tsSec: 1_767_225_600 + n, tsFrac: 0, data: Buffer.alloc(size, n & 0xff) },
    { byteOrder: 'LE' },
  );
}

/** A pcap file of `records` 60-byte Ethernet frames, plus `tail` bytes of a cut record. */
export function pcapBytes(records: number, tail = 0): Buffer {
  const frames = Array.from({ length: records }, (_, i) =>
    encodeRecord(
      { tsSec: 1_700_000_000 + i, tsFrac: 0, data: Buffer.alloc(60, i) },
      { byteOrder: 'LE' },
    ),
  );
  const cut = encodeRecord({ tsSec: 1, tsFrac: 0, data: Buffer.alloc(60, 7) }, { byteOrder: 'LE' });
  return Buffer.concat([HEADER, ...frames, cut.subarray(0, tail)]);
}

/** Records from..to, one after the other. */
export const records = (from: number, to: number): Buffer =>
  Buffer.concat(Array.from({ length: to - from + 1 }, (_, i) => record(from + i)));

/**
 * Waits, generously (the machine may be busy with other tests), until `check` holds: the
 * conditions, not the time, are checked.
 */
export async function until(check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}
