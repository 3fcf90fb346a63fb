import { describe, expect, it } from 'vitest';
import { RECORD_HEADER_LENGTH, encodeRecordHeader } from './format.js';
import { PcapRecordWalker, countWholeRecords } from './record-walker.js';
import type { ByteOrder } from './types.js';
import { encodeRecord } from './writer.js';

/** Records of the given data lengths, stamped with nanosecond-sized fractions when asked. */
function records(byteOrder: ByteOrder, lengths: readonly number[], nano = false): Buffer {
  return Buffer.concat(
    lengths.map((length, i) =>
      encodeRecord(
        {
          tsSec: 1_700_000_000 + i,
          tsFrac: nano ? 999_999_999 - i : 999_999 - i,
          originalLength: length,
          data: Buffer.alloc(length, i),
        },
        { byteOrder },
      ),
    ),
  );
}

describe('PcapRecordWalker', () => {
  for (const byteOrder of ['LE', 'BE'] as const) {
    for (const nano of [false, true]) {
      it(`steps over whole records (${byteOrder}, ${nano ? 'nano' : 'micro'})`, () => {
        const buf = records(byteOrder, [0, 60, 1514], nano);
        const walker = new PcapRecordWalker(buf, byteOrder);
        const spans: [number, number][] = [];
        while (walker.next()) spans.push([walker.start, walker.offset]);
        expect(spans).toEqual([
          [0, 16],
          [16, 92],
          [92, 92 + 16 + 1514],
        ]);
        expect(walker.records).toBe(3);
        expect(walker.offset).toBe(buf.length);
        expect(walker.pendingLength).toBeUndefined();
        expect(walker.badLength).toBeUndefined();
      });
    }
  }

  it('stops before a record cut short and gives its length', () => {
    const buf = records('BE', [60, 100]);
    const walker = new PcapRecordWalker(buf.subarray(0, buf.length - 1), 'BE').walk();
    expect(walker.records).toBe(1);
    expect(walker.offset).toBe(76);
    expect(walker.pendingLength).toBe(116);
  });

  it('stops before a record header cut short, with no length', () => {
    const buf = records('LE', [60, 100]);
    const walker = new PcapRecordWalker(buf, 'LE', {
      length: 76 + RECORD_HEADER_LENGTH - 1,
    }).walk();
    expect(walker.records).toBe(1);
    expect(walker.offset).toBe(76);
    expect(walker.pendingLength).toBeUndefined();
  });

  it('starts at `start` and ends at `length`', () => {
    const buf = records('LE', [10, 20, 30]);
    const walker = new PcapRecordWalker(buf, 'LE', { start: 26, length: 26 + 36 }).walk();
    expect(walker.records).toBe(1);
    expect(walker.start).toBe(26);
    expect(walker.offset).toBe(62);
  });

  it('stops at a length above maxCapturedLength, whole or not', () => {
    const bogus = encodeRecordHeader(
      { tsSec: 1, tsFrac: 0, capturedLength: 0xffff_fff0, originalLength: 60 },
      'LE',
    );
    const buf = Buffer.concat([records('LE', [60]), bogus]);
    const walker = new PcapRecordWalker(buf, 'LE', { maxCapturedLength: 262_144 }).walk();
    expect(walker.records).toBe(1);
    expect(walker.offset).toBe(76);
    expect(walker.badLength).toBe(0xffff_fff0);
  });

  it('without a maximum, takes a bogus length for a record not yet whole', () => {
    const bogus = encodeRecordHeader(
      { tsSec: 1, tsFrac: 0, capturedLength: 0xffff_fff0, originalLength: 60 },
      'BE',
    );
    const walker = new PcapRecordWalker(Buffer.concat([records('BE', [60]), bogus]), 'BE').walk();
    expect(walker.records).toBe(1);
    expect(walker.badLength).toBeUndefined();
    expect(walker.pendingLength).toBe(0xffff_fff0 + RECORD_HEADER_LENGTH);
  });
});

describe('countWholeRecords', () => {
  it('counts only whole records, in either byte order', () => {
    const le = records('LE', [1, 2, 3]);
    const be = records('BE', [1, 2, 3]);
    expect(countWholeRecords(le, 'LE')).toBe(3);
    expect(countWholeRecords(be, 'BE')).toBe(3);
    expect(countWholeRecords(le.subarray(0, le.length - 1), 'LE')).toBe(2);
    expect(countWholeRecords(Buffer.alloc(0), 'LE')).toBe(0);
    // Read in the wrong byte order, the first length is huge: nothing is whole.
    expect(countWholeRecords(le, 'BE')).toBe(0);
  });
});
