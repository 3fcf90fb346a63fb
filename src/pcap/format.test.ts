import { describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import {
  FILE_HEADER_LENGTH,
  RECORD_HEADER_LENGTH,
  encodeFileHeader,
  encodeRecordHeader,
  parseFileHeader,
  readRecordHeader,
} from './format.js';
import type { RecordHeader } from './format.js';
import type { PcapFileHeader } from './types.js';

function header(overrides: Partial<PcapFileHeader> = {}): PcapFileHeader {
  return {
    byteOrder: 'LE',
    precision: 'micro',
    versionMajor: 2,
    versionMinor: 4,
    snaplen: 65535,
    linkType: 1,
    ...overrides,
  };
}

describe('parseFileHeader', () => {
  it('reads the header tcpdump writes on little-endian hosts', () => {
    const buf = Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex');
    expect(parseFileHeader(buf)).toEqual(header());
  });

  it('reads big-endian and nanosecond headers', () => {
    const be = Buffer.from('a1b23c4d000200040000000000000000000400000000010c', 'hex');
    expect(parseFileHeader(be)).toEqual(
      header({ byteOrder: 'BE', precision: 'nano', snaplen: 262144, linkType: 268 }),
    );
  });

  it.each([
    ['LE', 'micro'],
    ['LE', 'nano'],
    ['BE', 'micro'],
    ['BE', 'nano'],
  ] as const)('round-trips %s %s headers', (byteOrder, precision) => {
    const h = header({ byteOrder, precision, snaplen: 1234, linkType: 276 });
    const buf = encodeFileHeader(h);
    expect(buf.length).toBe(FILE_HEADER_LENGTH);
    expect(parseFileHeader(buf)).toEqual(h);
  });

  it('drops the FCS bits that share the link-type field', () => {
    const buf = encodeFileHeader(header());
    buf.writeUInt32LE(0x14000001, 20); // FCS length 2 words, F bit set, LINKTYPE_ETHERNET
    expect(parseFileHeader(buf).linkType).toBe(1);
  });

  it('rejects pcapng with a message that says so', () => {
    const buf = Buffer.alloc(24);
    buf.writeUInt32LE(0x0a0d0d0a, 0);
    expect(() => parseFileHeader(buf)).toThrow(/pcapng/);
  });

  it('rejects short buffers and unknown magics with InvalidPcap', () => {
    for (const buf of [Buffer.alloc(10), Buffer.from('PK\x03\x04'.padEnd(24, '\0'))]) {
      try {
        parseFileHeader(buf);
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(WirewatchError);
        expect((error as WirewatchError).code).toBe('InvalidPcap');
        expect((error as WirewatchError).status).toBe(400);
      }
    }
  });
});

describe('record headers', () => {
  it.each(['LE', 'BE'] as const)('round-trip in %s at an offset, reusing the target', (order) => {
    const h: RecordHeader = {
      tsSec: 0xfffffff0,
      tsFrac: 999_999_999,
      capturedLength: 96,
      originalLength: 1514,
    };
    const buf = Buffer.alloc(100);
    encodeRecordHeader(h, order, buf, 7);
    const into: RecordHeader = { tsSec: 0, tsFrac: 0, capturedLength: 0, originalLength: 0 };
    expect(readRecordHeader(buf, 7, order, into)).toBe(into);
    expect(into).toEqual(h);
    expect(encodeRecordHeader(h, order).length).toBe(RECORD_HEADER_LENGTH);
  });

  it('uses the byte order given', () => {
    const buf = encodeRecordHeader(
      { tsSec: 1, tsFrac: 2, capturedLength: 3, originalLength: 4 },
      'BE',
    );
    expect(buf.toString('hex')).toBe('00000001000000020000000300000004');
  });
});
