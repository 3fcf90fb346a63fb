/**
 * Hand-written pcap content for tests that read capture files while they are written (the
 * agent's live streams and their tail reader): a header, and numbered records that tell which
 * they are by their time stamp and bytes.
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
