import { describe, expect, it } from 'vitest';
import { FrameSplitter } from './frame-splitter.js';
import { createPcapParser } from './reader.js';
import { encodeRecord } from './writer.js';
import { HEADER } from '../../test/support/pcap-records.js';

/** Frames of a 4-byte length (counting itself) and bytes of their index, as a toy format. */
function frames(lengths: readonly number[]): Buffer {
  return Buffer.concat(
    lengths.map((length, i) => {
      const frame = Buffer.alloc(length, i);
      frame.writeUInt32LE(length, 0);
      return frame;
    }),
  );
}

const frameLength = (buf: Buffer, pos: number): number => buf.readUInt32LE(pos);

describe('FrameSplitter', () => {
  const lengths = [4, 9, 40, 5, 300, 4, 17];
  const bytes = frames(lengths);

  it('hands out each frame whole, however the bytes are cut', () => {
    for (const size of [1, 2, 3, 5, 8, 41, 299, bytes.length]) {
      const splitter = new FrameSplitter(4, frameLength);
      const seen: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += size) {
        splitter.feed(bytes.subarray(at, at + size));
        while (splitter.next()) {
          seen.push(Buffer.from(splitter.buf.subarray(splitter.start, splitter.end)));
        }
      }
      expect(seen.map((f) => f.length)).toEqual(lengths);
      expect(Buffer.concat(seen).equals(bytes)).toBe(true);
      expect(splitter.remaining).toBe(0);
    }
  });

  it('reads a frame inside a chunk where it lies, and joins only a frame split across two', () => {
    const splitter = new FrameSplitter(4, frameLength);
    const first = bytes.subarray(0, 20); // frames 0 and 1, and 7 bytes of frame 2
    const second = bytes.subarray(20);
    splitter.feed(first);
    expect(splitter.next()).toBe(true);
    expect([splitter.buf === first, splitter.start, splitter.end]).toEqual([true, 0, 4]);
    expect(splitter.next()).toBe(true);
    expect([splitter.buf === first, splitter.start, splitter.end]).toEqual([true, 4, 13]);
    expect(splitter.next()).toBe(false);
    expect(splitter.remaining).toBe(7);
    splitter.feed(second);
    expect(splitter.next()).toBe(true);
    // Frame 2 is joined into a buffer of its own 40 bytes, not of the whole chunk.
    expect([splitter.buf.length, splitter.start, splitter.end]).toEqual([40, 0, 40]);
    expect(splitter.buf.equals(bytes.subarray(13, 53))).toBe(true);
    expect(splitter.next()).toBe(true);
    expect([splitter.buf === second, splitter.start, splitter.end]).toEqual([true, 33, 38]);
  });

  it('says how many bytes of a last frame never came', () => {
    const splitter = new FrameSplitter(4, frameLength);
    splitter.feed(bytes.subarray(0, bytes.length - 3));
    let whole = 0;
    while (splitter.next()) whole++;
    expect(whole).toBe(lengths.length - 1);
    expect(splitter.remaining).toBe(14);
  });
});

describe('a parser read in place (feed, next, packet)', () => {
  it('describes each record where it lies, as push would return it', () => {
    const records = [0, 1, 2].map((i) =>
      encodeRecord(
        { tsSec: 100 + i, tsFrac: 7 * i, originalLength: 1000, data: Buffer.alloc(60 + i, i) },
        { byteOrder: 'LE' },
      ),
    );
    const chunk = Buffer.concat([HEADER, ...records]);
    const parser = createPcapParser();
    parser.feed(chunk);
    const seen: unknown[] = [];
    while (parser.next()) {
      const p = parser.packet;
      expect(p.data).toBe(chunk);
      seen.push([p.tsSec, p.tsFrac, p.originalLength, p.capturedLength, p.interfaceId]);
      expect(p.data.subarray(p.dataStart, p.dataStart + p.capturedLength)).toEqual(
        Buffer.alloc(p.capturedLength, p.tsSec - 100),
      );
    }
    expect(seen).toEqual([
      [100, 0, 1000, 60, 0],
      [101, 7, 1000, 61, 0],
      [102, 14, 1000, 62, 0],
    ]);
    expect(parser.recordCount).toBe(3);
  });
});
