import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFileHeader } from '../pcap/format.js';
import { makeTempDir, removeTempDir } from '../../test/support/pcap-tools.js';
import type { ByteOrder } from '../pcap/types.js';
import { encodeRecord } from '../pcap/writer.js';
import { RingCapture } from './ring-capture.js';

const START_MS = 1_700_000_000_000;

function header(byteOrder: ByteOrder): Buffer {
  return encodeFileHeader({
    byteOrder,
    precision: 'micro',
    versionMajor: 2,
    versionMinor: 4,
    snaplen: 262144,
    linkType: 1,
  });
}

/** A record of `length` bytes stamped `offsetMs` after the start. */
function record(byteOrder: ByteOrder, offsetMs: number, length = 100): Buffer {
  const us = (START_MS + offsetMs) * 1000;
  return encodeRecord(
    {
      tsSec: Math.floor(us / 1_000_000),
      tsFrac: us % 1_000_000,
      originalLength: length,
      data: Buffer.alloc(length, 7),
    },
    { byteOrder },
  );
}

/** The stream cut into pieces of `size` bytes, as a pipe might hand it over. */
function pieces(stream: Buffer, size: number): AsyncIterable<Buffer> {
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
  return Readable.from(chunks);
}

describe('RingCapture', () => {
  let dir: string;
  beforeEach(async () => (dir = await makeTempDir()));
  afterEach(() => removeTempDir(dir));

  it('tells a stream that ended inside a record (tcpdump stopped while writing) from a whole one', async () => {
    const records = [record('LE', 1), record('LE', 2)];
    const stream = Buffer.concat([header('LE'), ...records]);
    const options = {
      ring: { fileCount: 2, fileSizeInBytes: 10_000, sessionTimeLimitInSeconds: 60 },
    };
    const whole = new RingCapture({ filePath: path.join(dir, 'whole.pcap'), ...options });
    await whole.consume(pieces(stream, 50), () => true);
    await whole.close();
    expect([whole.packets, whole.cutShort]).toEqual([2, false]);
    const cut = new RingCapture({ filePath: path.join(dir, 'cut.pcap'), ...options });
    await cut.consume(pieces(stream.subarray(0, stream.length - 30), 50), () => true);
    await cut.close();
    expect([cut.packets, cut.cutShort]).toEqual([1, true]);
  });

  for (const byteOrder of ['LE', 'BE'] as const) {
    it(`writes whole records split anywhere across files (${byteOrder})`, async () => {
      const records = Array.from({ length: 20 }, (_, i) => record(byteOrder, i));
      const ring = new RingCapture({
        filePath: path.join(dir, 'cap.pcap'),
        ring: { fileCount: 10, fileSizeInBytes: 24 + 3 * 116, sessionTimeLimitInSeconds: 60 },
      });
      ring.startUs = START_MS * 1000;
      expect(ring.bytesWritten).toBeUndefined();
      await ring.consume(pieces(Buffer.concat([header(byteOrder), ...records]), 37), () => true);
      const files = await ring.close();
      expect(ring.packets).toBe(20);
      expect(ring.outsideWindow).toBe(0);
      expect(files).toHaveLength(7);
      const contents = await Promise.all(files!.map((f) => readFile(f)));
      expect(Buffer.concat(contents.map((c) => c.subarray(24)))).toEqual(Buffer.concat(records));
    });
  }

  it('leaves out leading records stamped just before the start and those after the end', async () => {
    const ring = new RingCapture({
      filePath: path.join(dir, 'cap.pcap'),
      ring: { fileCount: 2, fileSizeInBytes: 1 << 20, sessionTimeLimitInSeconds: 60 },
    });
    ring.startUs = START_MS * 1000;
    ring.endUs = (START_MS + 5) * 1000;
    const stream = Buffer.concat([
      header('LE'),
      record('LE', -10),
      record('LE', 1),
      record('LE', -20), // not leading: kept
      record('LE', 5),
      record('LE', 6),
    ]);
    await ring.consume(pieces(stream, 1000), () => true);
    await ring.close();
    expect(ring.packets).toBe(3);
    expect(ring.outsideWindow).toBe(2);
  });

  it('drains without writing while writing() is false, and never opens a ring', async () => {
    const ring = new RingCapture({
      filePath: path.join(dir, 'cap.pcap'),
      ring: { fileCount: 2, fileSizeInBytes: 1 << 20, sessionTimeLimitInSeconds: 60 },
    });
    await ring.consume(pieces(Buffer.concat([header('LE'), record('LE', 0)]), 10), () => false);
    expect(await ring.close()).toBeUndefined();
    expect(ring.packets).toBe(0);
  });
});
