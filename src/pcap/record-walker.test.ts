import { describe, expect, it } from 'vitest';
import { RECORD_HEADER_LENGTH, encodeRecordHeader } from './format.js';
import {
  FileRecordWalker,
  PcapRecordWalker,
  countWholeRecords,
  type FileRecordWalkerOptions,
} from './record-walker.js';
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

/** Walks `file` the way repair and count do; returns the spans and where the walk ended. */
async function walkFile(
  file: Buffer,
  byteOrder: ByteOrder,
  options: Omit<FileRecordWalkerOptions, 'size'>,
): Promise<{ spans: [number, number][]; end: number; reads: number[] }> {
  const reads: number[] = [];
  const read = (length: number, at: number) => {
    reads.push(at);
    return Promise.resolve(Buffer.from(file.subarray(at, at + length)));
  };
  const walker = new FileRecordWalker(read, byteOrder, { ...options, size: file.length });
  const spans: [number, number][] = [];
  for (;;) {
    if (!walker.next()) {
      if (await walker.refill()) continue;
      break;
    }
    // The header is read from the chunk the walker holds.
    const at = walker.at + 8;
    const captured = byteOrder === 'LE' ? walker.buf.readUInt32LE(at) : walker.buf.readUInt32BE(at);
    expect(captured).toBe(walker.end - walker.start - RECORD_HEADER_LENGTH);
    spans.push([walker.start, walker.end]);
  }
  return { spans, end: walker.end, reads };
}

describe('FileRecordWalker', () => {
  it('walks a file a chunk at a time, reading only where a header starts a chunk', async () => {
    const file = Buffer.concat([Buffer.alloc(24), records('BE', [10, 200, 3, 40])]);
    const { spans, end, reads } = await walkFile(file, 'BE', { start: 24, chunkSize: 32 });
    expect(spans).toEqual([
      [24, 50],
      [50, 266],
      [266, 285],
      [285, 341],
    ]);
    expect(end).toBe(file.length);
    // A chunk that holds a header but not the record's data is enough; none is read twice.
    expect(reads).toEqual([24, 50, 266, 285]);
  });

  it('stops at a record cut short, and at a length above maxCapturedLength', async () => {
    const whole = records('LE', [10, 20]);
    const cut = await walkFile(whole.subarray(0, whole.length - 1), 'LE', {
      start: 0,
      chunkSize: 16,
    });
    expect(cut.spans).toEqual([[0, 26]]);
    expect(cut.end).toBe(26);

    const bogus = encodeRecordHeader(
      { tsSec: 1, tsFrac: 0, capturedLength: 70_000, originalLength: 60 },
      'LE',
    );
    const garbage = Buffer.concat([whole, bogus, Buffer.alloc(70_000)]);
    const bad = await walkFile(garbage, 'LE', {
      start: 0,
      chunkSize: 1024,
      maxCapturedLength: 65_535,
    });
    expect(bad.spans).toEqual([
      [0, 26],
      [26, 62],
    ]);
    expect(bad.end).toBe(62);
  });

  it('refuses a file that ends before the size it was given', async () => {
    const file = records('LE', [10]);
    const walker = new FileRecordWalker(
      (length, at) => Promise.resolve(file.subarray(at, Math.min(at + length, 10))),
      'LE',
      { start: 0, size: file.length, chunkSize: 64 },
    );
    expect(walker.next()).toBe(false);
    await expect(walker.refill()).rejects.toThrow(RangeError);
  });
});
