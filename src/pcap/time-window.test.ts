/**
 * A capture's time window, cut from its file: UDP frames stamped on both sides of the start and
 * the deadline, trimmed by repairPcapFile and read back with tshark. Also the record count that
 * progress reports come from.
 */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFileHeader } from './format.js';
import { countPcapRecords, repairPcapFile } from './repair.js';
import { ethernet, ip4, ipv4, udp } from '../../test/support/pcap-frames.js';
import { makeTempDir, removeTempDir, tsharkFields } from '../../test/support/pcap-tools.js';
import type { ByteOrder, TimestampPrecision } from './types.js';
import { encodeRecord } from './writer.js';

const START_US = 1_700_000_000_000_000;
const END_US = START_US + 10_500_000;

/** One stamp per frame: `at` in µs since the epoch plus `extraNs` (nanosecond files only). */
interface Stamp {
  readonly us: number;
  readonly extraNs?: number;
  /** The frame's sequence number (its UDP payload); default its index. */
  readonly seq?: number;
}

function frame(seq: number): Buffer {
  const payload = Buffer.alloc(32);
  payload.writeUInt32BE(seq, 0);
  const packet = udp(5300, 5300, payload);
  return ethernet(
    0x0800,
    ipv4({ src: ip4(10, 77, 1, 2), dst: ip4(10, 77, 1, 1), protocol: 17, payload: packet }),
  );
}

function pcapOf(
  stamps: readonly Stamp[],
  precision: TimestampPrecision = 'micro',
  byteOrder: ByteOrder = 'LE',
): Buffer {
  const header = encodeFileHeader({
    byteOrder,
    precision,
    versionMajor: 2,
    versionMinor: 4,
    snaplen: 262144,
    linkType: 1,
  });
  const records = stamps.map((s, index) => {
    const tsSec = Math.floor(s.us / 1e6);
    const us = s.us % 1e6;
    const tsFrac = precision === 'micro' ? us : us * 1000 + (s.extraNs ?? 0);
    return encodeRecord({ tsSec, tsFrac, data: frame(s.seq ?? index) }, { byteOrder });
  });
  return Buffer.concat([header, ...records]);
}

/** The sequence numbers (UDP payload) and epoch stamps tshark reads from a file. */
async function readBack(file: string): Promise<{ seq: number; epoch: string }[]> {
  const rows = await tsharkFields(file, ['frame.time_epoch', 'data.data']);
  return rows.map(([epoch, data]) => ({ seq: parseInt(data!.slice(0, 8), 16), epoch: epoch! }));
}

let dir = '';
beforeEach(async () => {
  dir = await makeTempDir();
});
afterEach(async () => {
  await removeTempDir(dir);
});

describe('repairPcapFile with a time window', () => {
  it('keeps exactly the frames stamped within [start, deadline], the deadline itself included', async () => {
    // Every 100 ms from 200 ms before the start to 1.5 s past the deadline (10.5 s).
    const stamps = Array.from({ length: 123 }, (_, i) => ({
      seq: i,
      us: START_US - 200_000 + i * 100_000,
    }));
    const file = join(dir, 'window.pcap');
    await writeFile(file, pcapOf(stamps));

    const result = await repairPcapFile(file, {
      window: { startUs: START_US, startSlackUs: 2_000_000, endUs: END_US },
      chunkSize: 100, // moves and header reads cross chunk edges
    });

    const inside = stamps.flatMap((s, seq) => (s.us >= START_US && s.us <= END_US ? [seq] : []));
    expect(inside).toHaveLength(106); // 0 s … 10.5 s, both ends included
    expect(result).toMatchObject({ keptRecords: 106, outsideWindow: 17 });
    // The two leading frames went: every byte after the file header moved, and a reader of
    // the growing file (the blob upload) must read them again.
    expect(result.rewrittenFrom).toBe(24);
    const back = await readBack(file);
    expect(back.map((r) => r.seq)).toEqual(inside);
    expect(back[0]!.epoch).toBe('1700000000.000000000');
    expect(back.at(-1)!.epoch).toBe('1700000010.500000000');
    // The file is exactly the kept frames, closed up: what a capture of the window would be.
    expect(await readFile(file)).toEqual(pcapOf(stamps.filter((s) => inside.includes(s.seq))));
  });

  it.each(['LE', 'BE'] as const)(
    'compares nanosecond stamps exactly: 1 ns past the deadline is out (%s)',
    async (byteOrder) => {
      const stamps: Stamp[] = [
        { us: START_US - 1, extraNs: 999 },
        { us: START_US },
        { us: END_US - 1, extraNs: 999 },
        { us: END_US },
        { us: END_US, extraNs: 1 },
        { us: END_US + 1 },
      ];
      const file = join(dir, `nano-${byteOrder}.pcap`);
      await writeFile(file, pcapOf(stamps, 'nano', byteOrder));
      const result = await repairPcapFile(file, {
        window: { startUs: START_US, startSlackUs: 2_000_000, endUs: END_US },
      });
      expect(result).toMatchObject({ keptRecords: 3, outsideWindow: 3 });
      expect((await readBack(file)).map((r) => r.epoch)).toEqual([
        '1700000000.000000000',
        '1700000010.499999999',
        '1700000010.500000000',
      ]);
    },
  );

  it('trims the end only from endFrom on: frames written before the deadline stay (a clock that stepped back)', async () => {
    // Frames 0-2 were stamped by a clock 1 h ahead that then stepped back; frames 3-5 are the
    // drain after the deadline, 4 and 5 stamped past it.
    const stamps = [
      { us: START_US + 3600e6 },
      { us: START_US + 3601e6 },
      { us: START_US + 3602e6 },
      { us: END_US - 100 },
      { us: END_US + 100 },
      { us: END_US + 200 },
    ];
    const file = join(dir, 'stepped.pcap');
    const bytes = pcapOf(stamps);
    await writeFile(file, bytes);
    const endFrom = pcapOf(stamps.slice(0, 3)).length;
    const result = await repairPcapFile(file, {
      window: { startUs: START_US, startSlackUs: 2_000_000, endUs: END_US, endFrom },
    });
    expect(result).toMatchObject({ keptRecords: 4, outsideWindow: 2 });
    expect((await readBack(file)).map((r) => r.seq)).toEqual([0, 1, 2, 3]);
    // Only cut at its end: nothing a reader already read has changed.
    expect(result.rewrittenFrom).toBeUndefined();
  });

  it('drops only the leading frames stamped just before the start, never older ones', async () => {
    const stamps = [
      { us: START_US - 3_000_000 }, // beyond the slack: the clock stepped back; kept
      { us: START_US - 500 },
      { us: START_US + 100 },
    ];
    const file = join(dir, 'early.pcap');
    await writeFile(file, pcapOf(stamps));
    const window = { startUs: START_US, startSlackUs: 2_000_000 };
    expect(await repairPcapFile(file, { window })).toMatchObject({ keptRecords: 3 });

    // Early frames are dropped only while they lead: the window's start is the capture's.
    await writeFile(file, pcapOf([stamps[1]!, stamps[2]!, stamps[1]!]));
    expect(await repairPcapFile(file, { window })).toMatchObject({
      keptRecords: 2,
      outsideWindow: 1,
    });
    expect((await readBack(file)).map((r) => r.seq)).toEqual([1, 2]);
  });

  it('applies the byte limit to the frames the window keeps', async () => {
    const stamps = Array.from({ length: 10 }, (_, i) => ({ seq: i, us: START_US - 2 + i }));
    const file = join(dir, 'bytes.pcap');
    await writeFile(file, pcapOf(stamps));
    const kept = stamps.slice(2, 6);
    const maxBytes = pcapOf(kept).length + 10;
    const result = await repairPcapFile(file, {
      maxBytes,
      window: { startUs: START_US, startSlackUs: 2_000_000 },
    });
    expect(result).toMatchObject({ keptRecords: 4, outsideWindow: 2, reachedMaxBytes: true });
    expect(await readFile(file)).toEqual(pcapOf(kept).subarray(0, maxBytes - 10));
  });
});

describe('countPcapRecords', () => {
  it('counts whole records only, and bytes of exactly those records', async () => {
    const bytes = pcapOf(Array.from({ length: 5 }, (_, i) => ({ us: START_US + i })));
    const four = pcapOf(Array.from({ length: 4 }, (_, i) => ({ us: START_US + i }))).length;
    const file = join(dir, 'growing.pcap');
    await writeFile(file, bytes.subarray(0, 20));
    expect(await countPcapRecords(file)).toEqual({ bytes: 0, records: 0 });

    await appendFile(file, bytes.subarray(20, four + 7));
    const early = await countPcapRecords(file, undefined, 64);
    expect(early).toEqual({ bytes: four, records: 4 });

    await appendFile(file, bytes.subarray(four + 7));
    expect(await countPcapRecords(file, early)).toEqual({ bytes: bytes.length, records: 5 });
  });
});
