import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { encodeRecordHeader } from './format.js';
import { createPcapParser, openPcapFile, readPcapFile } from './reader.js';
import { fileBytes } from '../../test/support/pcap-frames.js';
import { makeTempDir, removeTempDir } from '../../test/support/pcap-tools.js';
import type { PcapRecord } from './types.js';

function plain(records: readonly PcapRecord[]): unknown[] {
  return records.map((r) => ({ ...r, data: r.data.toString('hex') }));
}

function parseInChunks(bytes: Buffer, sizes: (i: number) => number) {
  const parser = createPcapParser();
  const records: PcapRecord[] = [];
  for (let pos = 0, i = 0; pos < bytes.length; i++) {
    const size = Math.max(1, sizes(i));
    records.push(...parser.push(bytes.subarray(pos, pos + size)));
    pos += size;
  }
  return { parser, records, end: parser.end() };
}

describe('createPcapParser', () => {
  it.each(['LE', 'BE'] as const)(
    'gives the same records for 1-byte chunks, odd chunks and the whole file (%s)',
    (byteOrder) => {
      const bytes = fileBytes({ byteOrder, precision: 'nano' }, 40);
      const whole = parseInChunks(bytes, () => bytes.length);
      expect(whole.records).toHaveLength(40);
      expect(whole.end.truncatedBytes).toBe(0);
      expect(whole.parser.header).toMatchObject({ byteOrder, precision: 'nano' });
      const oneByte = parseInChunks(bytes, () => 1);
      const odd = parseInChunks(bytes, (i) => (i * 7919) % 97);
      expect(plain(oneByte.records)).toEqual(plain(whole.records));
      expect(plain(odd.records)).toEqual(plain(whole.records));
      expect(oneByte.end.truncatedBytes).toBe(0);
      expect(whole.records[5]).toMatchObject({
        tsSec: 1005,
        tsFrac: 35,
        capturedLength: 185,
        originalLength: 187,
      });
    },
  );

  it('has no header until 24 bytes have come', () => {
    const parser = createPcapParser();
    const bytes = fileBytes({}, 0);
    expect(parser.push(bytes.subarray(0, 23))).toEqual([]);
    expect(parser.header).toBeUndefined();
    parser.push(bytes.subarray(23));
    expect(parser.header?.linkType).toBe(1);
  });

  it('reports the bytes of a record cut short, wherever the cut is', () => {
    const bytes = fileBytes({}, 3);
    const lastStart = bytes.length - (16 + 74);
    for (let cut = lastStart; cut < bytes.length; cut++) {
      const { records, end } = parseInChunks(bytes.subarray(0, cut), (i) => 5 + i);
      expect(records).toHaveLength(2);
      expect(end.truncatedBytes).toBe(cut - lastStart);
    }
    expect(parseInChunks(bytes.subarray(0, 10), () => 3).end.truncatedBytes).toBe(10);
  });

  it('rejects an absurd captured length, and stays failed', () => {
    const bytes = Buffer.concat([
      fileBytes({ snaplen: 1500 }, 2),
      encodeRecordHeader(
        { tsSec: 1, tsFrac: 0, capturedLength: 0x7fffffff, originalLength: 60 },
        'LE',
      ),
    ]);
    const parser = createPcapParser();
    expect(() => parser.push(bytes)).toThrow(WirewatchError);
    expect(() => parser.push(bytes)).toThrow(/captured length of 2147483647/);
    expect(parser.recordCount).toBe(2);
  });

  it('accepts captured lengths above a small snaplen up to 262144, and originalLength < capturedLength', () => {
    const data = Buffer.alloc(70_000);
    const bytes = Buffer.concat([
      fileBytes({ snaplen: 96 }, 0),
      encodeRecordHeader(
        { tsSec: 1, tsFrac: 0, capturedLength: data.length, originalLength: 1 },
        'LE',
      ),
      data,
    ]);
    const records = createPcapParser().push(bytes);
    expect(records).toHaveLength(1);
    expect(records[0]?.originalLength).toBe(1);
  });

  it('rejects pcapng input', () => {
    const ng = Buffer.from('0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000', 'hex');
    expect(() => createPcapParser().push(ng)).toThrow(/pcapng/);
  });
});

describe('pcap files', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('streams records and reports a truncated tail', async () => {
    const file = join(dir, 'cut.pcap');
    const bytes = fileBytes({ byteOrder: 'BE' }, 10);
    await writeFile(file, bytes.subarray(0, bytes.length - 5));
    const reader = await openPcapFile(file, { chunkSize: 100 });
    expect(reader.header.byteOrder).toBe('BE');
    expect(reader.truncatedBytes()).toBeUndefined();
    const records = [];
    for await (const r of reader.records) records.push(r);
    expect(records).toHaveLength(9);
    expect(reader.truncatedBytes()).toBe(16 + ((9 * 37) % 300) - 5);
    expect(() => reader.records[Symbol.asyncIterator]()).toThrow(/only once/);
  });

  it('closes the file when iteration stops early', async () => {
    const file = join(dir, 'early.pcap');
    await writeFile(file, fileBytes({}, 10));
    const reader = await openPcapFile(file);
    for await (const r of reader.records) {
      expect(r.tsSec).toBe(1000);
      break;
    }
    await reader.close(); // already closed: must not throw
  });

  it('names the file in InvalidPcap errors', async () => {
    const file = join(dir, 'not.pcap');
    await writeFile(file, 'this is not a capture file at all');
    const error = await openPcapFile(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WirewatchError);
    expect(error).toMatchObject({ code: 'InvalidPcap', target: file });

    const empty = join(dir, 'empty.pcap');
    await writeFile(empty, '');
    await expect(readPcapFile(empty).next()).rejects.toThrow(/24 bytes/);
  });
});
