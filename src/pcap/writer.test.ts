import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readPcapFile, openPcapFile } from './reader.js';
import { ethernet, ip4, ipv4, udp } from '../../test/support/pcap-frames.js';
import { makeTempDir, removeTempDir, tsharkFields } from '../../test/support/pcap-tools.js';
import { createPcapWriter, encodeRecord } from './writer.js';
import type { PcapRecordInput } from './writer.js';
import { LinkType } from './types.js';

function frame(size: number): Buffer {
  const payload = Buffer.alloc(Math.max(0, size - 42), 0x61);
  return ethernet(
    0x0800,
    ipv4({
      src: ip4(10, 0, 0, 1),
      dst: ip4(10, 0, 0, 2),
      protocol: 17,
      payload: udp(1, 2, payload),
    }),
  );
}

function sampleRecords(precision: 'micro' | 'nano'): PcapRecordInput[] {
  const fracMax = precision === 'nano' ? 999_999_999 : 999_999;
  return [
    { tsSec: 1_700_000_000, tsFrac: 0, data: frame(60) },
    { tsSec: 1_700_000_000, tsFrac: 1, data: frame(100) },
    { tsSec: 1_700_000_001, tsFrac: fracMax, data: frame(1514) }, // cut to the snaplen
    { tsSec: 1_700_000_002, tsFrac: 123_456, originalLength: 9000, data: frame(64) },
    { tsSec: 4_000_000_000, tsFrac: 42, data: frame(42) }, // past 2038: unsigned seconds
  ];
}

function epoch(sec: number, frac: number, precision: 'micro' | 'nano'): string {
  const ns = precision === 'nano' ? frac : frac * 1000;
  return `${sec}.${String(ns).padStart(9, '0')}`;
}

describe('createPcapWriter', () => {
  let dir: string | undefined;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it.each([
    ['LE', 'micro'],
    ['LE', 'nano'],
    ['BE', 'micro'],
    ['BE', 'nano'],
  ] as const)('writes %s %s files that tshark reads', async (byteOrder, precision) => {
    const file = join(dir ?? '', `out-${byteOrder}-${precision}.pcap`);
    const snaplen = 1000;
    const writer = createPcapWriter(createWriteStream(file), {
      linkType: LinkType.ETHERNET,
      snaplen,
      precision,
      byteOrder,
    });
    const records = sampleRecords(precision);
    for (const r of records) await writer.write(r);
    await writer.close();
    await writer.close();
    expect(writer.recordsWritten).toBe(records.length);

    const rows = await tsharkFields(file, ['frame.time_epoch', 'frame.len', 'frame.cap_len']);
    expect(rows).toEqual(
      records.map((r) => [
        epoch(r.tsSec, r.tsFrac, precision),
        String(Math.max(r.originalLength ?? 0, r.data.length)),
        String(Math.min(r.data.length, snaplen)),
      ]),
    );

    const reader = await openPcapFile(file);
    expect(reader.header).toMatchObject({ byteOrder, precision, snaplen, linkType: 1 });
    const back = [];
    for await (const r of reader.records) back.push(r);
    expect(reader.truncatedBytes()).toBe(0);
    expect(back.map((r) => [r.tsSec, r.tsFrac, r.data])).toEqual(
      records.map((r) => [r.tsSec, r.tsFrac, r.data.subarray(0, snaplen)]),
    );
  });

  /** An output of 256 bytes' highWaterMark that takes a while over each write. */
  function slowOutput(): { slow: Writable; chunks: Buffer[] } {
    const chunks: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 256,
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        setTimeout(callback, 1);
      },
    });
    return { slow, chunks };
  }

  it('waits for the output to drain and never lets it buffer more than one record', async () => {
    const { slow, chunks } = slowOutput();
    let maxBuffered = 0;
    const writer = createPcapWriter(slow, { linkType: 1, snaplen: 65535 });
    const record = { tsSec: 1, tsFrac: 2, data: frame(200) };
    for (let i = 0; i < 50; i++) {
      await writer.write(record);
      maxBuffered = Math.max(maxBuffered, slow.writableLength);
    }
    await writer.close();
    expect(maxBuffered).toBeLessThanOrEqual(256 + 16 + 200);
    expect(chunks.length).toBe(51);
    expect(writer.bytesWritten).toBe(24 + 50 * 216);
    await expect(writer.write(record)).rejects.toThrow(/after close/);
  });

  it('keeps up to 4 batches in flight when it batches, and no more', async () => {
    const { slow, chunks } = slowOutput();
    let maxBuffered = 0;
    const writer = createPcapWriter(slow, { linkType: 1, snaplen: 65535, batchBytes: 1024 });
    const record = { tsSec: 1, tsFrac: 2, data: frame(200) };
    for (let i = 0; i < 200; i++) {
      await writer.write(record);
      maxBuffered = Math.max(maxBuffered, slow.writableLength);
    }
    await writer.close();
    // The output writes one batch while the next ones are gathered (far past its 256 bytes),
    // and the writer waits once 4 batches are buffered: the one that crossed is the last.
    expect(maxBuffered).toBeGreaterThan(2 * 1024);
    expect(maxBuffered).toBeLessThanOrEqual(5 * 1024);
    expect(chunks.slice(1, -1).every((c) => c.length > 1024 - 216 && c.length <= 1024)).toBe(true);
    expect(Buffer.concat(chunks).length).toBe(24 + 200 * 216);
  });

  it('reports an output error on the next write or close', async () => {
    const failing = new Writable({
      write(_chunk, _encoding, callback) {
        callback(new Error('disk full'));
      },
    });
    const writer = createPcapWriter(failing, { linkType: 1, snaplen: 65535 });
    await new Promise((resolve) => setImmediate(resolve));
    await expect(writer.write({ tsSec: 0, tsFrac: 0, data: frame(60) })).rejects.toThrow(
      'disk full',
    );
    await expect(writer.close()).rejects.toThrow('disk full');
  });

  it('rejects impossible options', () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    expect(() => createPcapWriter(sink, { linkType: 1, snaplen: 0 })).toThrow(RangeError);
    expect(() => createPcapWriter(sink, { linkType: -1, snaplen: 100 })).toThrow(RangeError);
  });

  it('streams files through readPcapFile', async () => {
    const file = join(dir ?? '', 'stream.pcap');
    const writer = createPcapWriter(createWriteStream(file), { linkType: 1, snaplen: 262144 });
    for (let i = 0; i < 3000; i++)
      await writer.write({ tsSec: i, tsFrac: 0, data: frame(60 + (i % 1400)) });
    await writer.close();
    let n = 0;
    for await (const r of readPcapFile(file, { chunkSize: 4096 })) {
      expect(r.tsSec).toBe(n);
      expect(r.capturedLength).toBe(60 + (n % 1400));
      n++;
    }
    expect(n).toBe(3000);
  });
});

describe('encodeRecord', () => {
  it('cuts data to the snaplen and keeps the original length', () => {
    const buf = encodeRecord(
      { tsSec: 5, tsFrac: 6, data: Buffer.alloc(100, 1) },
      { byteOrder: 'LE', snaplen: 10 },
    );
    expect(buf.length).toBe(26);
    expect(buf.readUInt32LE(8)).toBe(10);
    expect(buf.readUInt32LE(12)).toBe(100);
  });
});
